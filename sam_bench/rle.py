"""COCO segmentations as masks: shared by the tasks that draw their saved examples and the
report's overlays (a lower module: it imports neither ``tasks`` nor ``report``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (RLE with str/bytes/list counts, or polygons) as a bool HxW mask."""
    if isinstance(seg, dict):
        counts = seg["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, *seg["size"])
        else:
            rle = {
                "size": seg["size"],
                "counts": counts.encode() if isinstance(counts, str) else counts,
            }
    else:  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    return np.asarray(mask_utils.decode(rle), dtype=bool)
