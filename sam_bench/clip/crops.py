"""The image CLIP sees for one mask (``semantic.crop``, ``padding``, ``square``, ``blur_sigma``).

1. The mask's box (XYWH) grows by ``padding`` times its width on the left and right and its
   height on the top and bottom; with ``square`` (default) the shorter side then grows about
   the centre to the longer one, so CLIP's centre crop cuts nothing of the mask off. The box is
   rounded outwards to whole pixels.
2. Pixels of the box outside the image are the fill colour (the CLIP model's normalisation
   mean, which normalises to zero).
3. Inside the image, by ``crop``:
   ``box``: the pixels as they are;
   ``blank``: pixels outside the mask become the fill colour (only the object remains);
   ``blur``: pixels outside the mask come from a Gaussian blur (``blur_sigma`` pixels) of the
   box, keeping the context but not its detail.

Crops are taken from the model input (after ``preprocess``), at full resolution; the CLIP
backend then resizes them its own way.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CROP_MODES = ("box", "blank", "blur")


def crop_box(
    bbox: list[float] | tuple[float, ...], padding: float, square: bool
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (exclusive ends, may lie outside the image) of a mask's crop."""
    x, y, w, h = (float(v) for v in bbox)
    w, h = max(w, 1.0), max(h, 1.0)
    x0, x1 = x - padding * w, x + w + padding * w
    y0, y1 = y - padding * h, y + h + padding * h
    if square:
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1 = cx - side / 2, cx + side / 2
        y0, y1 = cy - side / 2, cy + side / 2
    return math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)


def make_crop(
    image: np.ndarray,
    mask: np.ndarray,
    bbox: list[float] | tuple[float, ...],
    *,
    mode: str = "blank",
    padding: float = 0.1,
    square: bool = True,
    blur_sigma: float = 8.0,
    fill: tuple[int, int, int] = (123, 117, 104),
) -> np.ndarray:
    """The crop of ``image`` (HxWx3 uint8) for the boolean ``mask`` (HxW) whose box is
    ``bbox`` (see the module docstring)."""
    if mode not in CROP_MODES:
        raise ValueError(f"crop mode must be one of {CROP_MODES}, got {mode!r}")
    h, w = image.shape[:2]
    x0, y0, x1, y1 = crop_box(bbox, padding, square)
    out = np.empty((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    out[:] = np.asarray(fill, dtype=np.uint8)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    region = image[iy0:iy1, ix0:ix1]
    if mode == "box":
        part = region
    else:
        inside = mask[iy0:iy1, ix0:ix1].astype(bool)
        if mode == "blank":
            part = np.where(inside[..., None], region, np.asarray(fill, dtype=np.uint8))
        else:
            blurred = cv2.GaussianBlur(
                np.ascontiguousarray(region), (0, 0), sigmaX=blur_sigma, sigmaY=blur_sigma,
                borderType=cv2.BORDER_REFLECT,
            )  # fmt: skip
            part = np.where(inside[..., None], region, blurred)
    out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = part
    return out
