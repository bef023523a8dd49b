"""Prompts derived from ground truth, shared by the tasks that need a click or a box from a
mask: the prompted task (:mod:`sam_bench.tasks.prompted`) and the video task's first-frame
prompts.

* :mod:`sam_bench.prompts.clicks`: the click a simulated user makes -- the pixel farthest from
  the boundary of an instance (the first click) or of the larger error region (RITM's next
  click).
* :mod:`sam_bench.prompts.boxes`: tight ground-truth boxes, seeded jitter, detector boxes read
  from a COCO results JSON and matched to ground truth by box IoU.

Both are pure NumPy / OpenCV. The prompted task's decoder, protocols and figures live in its
package.
"""

from sam_bench.prompts.boxes import (
    Detections,
    box_iou,
    jitter_box,
    match_detections,
    read_detections,
    tight_box,
)
from sam_bench.prompts.clicks import Click, farthest_point, first_click, next_click

__all__ = [
    "Click",
    "Detections",
    "box_iou",
    "farthest_point",
    "first_click",
    "jitter_box",
    "match_detections",
    "next_click",
    "read_detections",
    "tight_box",
]
