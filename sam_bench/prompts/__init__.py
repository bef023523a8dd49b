"""Prompts derived from ground truth, for the prompted task (and any task that needs a click
or a box from a mask, e.g. the video task's first-frame prompts).

* :mod:`sam_bench.prompts.clicks`: the click a simulated user makes -- the pixel farthest from
  the boundary of an instance (the first click) or of the larger error region (RITM's next
  click).
* :mod:`sam_bench.prompts.boxes`: tight ground-truth boxes, seeded jitter, detector boxes read
  from a COCO results JSON and matched to ground truth by box IoU.
* :mod:`sam_bench.prompts.decoder`: ``SAM2ImagePredictor`` prompted for many instances at once
  on one image embedding (the encoder runs once per image).
* :mod:`sam_bench.prompts.protocols`: the prompted task's protocols on one image.
* :mod:`sam_bench.prompts.figures`: the prompted task's per-job figures.

``clicks`` and ``boxes`` (imported here) are pure NumPy / OpenCV; ``decoder`` and ``protocols``
import torch and sam2 and are imported on their own.
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
