"""Where a simulated user clicks: the first click on an instance and the next click on the
error of a prediction (the RITM / SimpleClick interactive-segmentation protocol).

Definitions (written for sam_bench from the protocol's description, RITM's
``isegm/inference/clicker.py``, Sofiiuk et al. 2022, which SimpleClick and SAM's interactive
evaluations follow):

* **distance to the boundary** of a region: for each pixel of the region, the Euclidean
  distance to the nearest pixel outside it, where everything beyond the image border counts
  as outside (the region is padded with one ring of background pixels). Every choice is
  made on the **integer squared distance** ``dy**2 + dx**2`` to the nearest outside pixel,
  so two pixels exactly as far from the boundary always compare equal and no choice depends
  on float rounding: OpenCV's exact Euclidean transform (``DIST_L2``, precise mask) gives
  the distance in float32, squared and rounded to that integer (exact below
  :data:`EXACT_FLOAT_DISTANCE` pixels; farther, scipy's exact feature transform).
* **farthest point** of a region: the pixel with the largest distance to the boundary; ties
  go to the smallest row, then the smallest column (the first in raster order). Pixels
  already clicked are never chosen again (RITM's "not clicked" map).
* **first click** on an instance: positive, at the instance's farthest point.
* **next click** given the ground truth and the current binary prediction: the false-negative
  region (``gt & ~pred``) and the false-positive region (``~gt & pred``) each get their
  farthest point; the click goes to the region whose farthest point is farther from its
  boundary -- positive in a false-negative region, negative in a false-positive one. On a tie
  (equal squared distances) the click is negative, as in RITM.
* When no error pixel is left (the prediction equals the ground truth, or every error pixel
  was clicked already), there is no next click (``None``): sam_bench then keeps the
  prediction for the remaining clicks. RITM would place a negative click at pixel (0, 0)
  there; with real masks it practically never happens.

Clicks are pixel indices (``x`` column, ``y`` row), given to SAM 2 as point coordinates
``(x, y)`` in the image's pixel frame, as SAM's own examples pass them.

The distance transform is computed on the region's bounding box plus a one-pixel ring (the
ring is background, exactly as on the whole padded image: the nearest background pixel of any
pixel in the box is inside the ring or nearer), so a click costs in proportion to its region,
not the image. RITM computes the same distance in float32 with OpenCV; on exact ties its
choice can follow rounding (about 1 click in 11,600 on real masks), sam_bench's does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Click:
    """One click: pixel column ``x``, row ``y``, and whether it is positive (foreground)."""

    x: int
    y: int
    positive: bool

    @property
    def label(self) -> int:
        """SAM 2's point label: 1 positive, 0 negative."""
        return 1 if self.positive else 0

    def as_list(self) -> list[int]:
        """``[x, y, label]`` (as written in ``per_instance.csv``)."""
        return [self.x, self.y, self.label]


def _bbox(region: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) inclusive bounds of the True pixels, or ``None`` when there are none."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def boundary_distance(region: np.ndarray) -> np.ndarray:
    """Distance of every pixel of ``region`` (HxW bool) to the nearest pixel outside it, the
    image border counting as outside; 0 outside the region (float32, full image size)."""
    region = np.asarray(region, dtype=bool)
    out = np.zeros(region.shape, dtype=np.float32)
    box = _bbox(region)
    if box is None:
        return out
    y0, y1, x0, x1 = box
    out[y0 : y1 + 1, x0 : x1 + 1] = np.sqrt(_crop_squared_distance(region, box))
    return out


#: Below this distance (pixels) OpenCV's float32 distance, squared and rounded, is the exact
#: integer squared distance (float32 keeps ``d**2`` within 0.5 of it); a region whose pixels
#: lie farther from its boundary takes scipy's exact (slower) feature transform.
EXACT_FLOAT_DISTANCE = 2048.0


def _crop_squared_distance(region: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The squared distance (int64) of every pixel of ``region`` inside ``box`` to its nearest
    outside pixel (see the module docstring)."""
    y0, y1, x0, x1 = box
    padded = np.pad(region[y0 : y1 + 1, x0 : x1 + 1], 1)
    dist = cv2.distanceTransform(padded.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    if float(dist.max()) < EXACT_FLOAT_DISTANCE:
        return np.rint(np.square(dist[1:-1, 1:-1], dtype=np.float64)).astype(np.int64)
    nearest = ndimage.distance_transform_edt(padded, return_distances=False, return_indices=True)
    rows, cols = np.indices(padded.shape)
    dy = rows - np.asarray(nearest[0], dtype=np.int64)
    dx = cols - np.asarray(nearest[1], dtype=np.int64)
    return (dy * dy + dx * dx)[1:-1, 1:-1]


def _farthest(region: np.ndarray, allowed: np.ndarray | None = None) -> tuple[int, int, int] | None:
    """``(y, x, squared distance)`` of the farthest allowed pixel (ties: smallest row, then
    column), ``None`` when no allowed pixel of the region is left."""
    region = np.asarray(region, dtype=bool)
    box = _bbox(region)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    sq = _crop_squared_distance(region, box)
    if allowed is not None:
        sq = sq * np.asarray(allowed[y0 : y1 + 1, x0 : x1 + 1], dtype=bool)
    flat = int(np.argmax(sq))  # the first maximum in raster order (crop order = image order)
    best = int(sq.flat[flat])
    if best <= 0:
        return None
    dy, dx = divmod(flat, sq.shape[1])
    return y0 + dy, x0 + dx, best


def farthest_point(
    region: np.ndarray, allowed: np.ndarray | None = None
) -> tuple[int, int, float] | None:
    """``(y, x, distance)`` of the pixel of ``region`` farthest from its boundary (ties: the
    smallest row, then column), among the ``allowed`` pixels (default: all); ``None`` when no
    allowed pixel of the region is left."""
    found = _farthest(region, allowed)
    if found is None:
        return None
    y, x, sq = found
    return y, x, float(np.sqrt(sq))


def first_click(gt: np.ndarray) -> Click | None:
    """The positive click at the instance's farthest point; ``None`` for an empty mask."""
    found = farthest_point(gt)
    if found is None:
        return None
    y, x, _ = found
    return Click(x=x, y=y, positive=True)


def next_click(
    gt: np.ndarray, pred: np.ndarray, clicked: list[Click] | None = None
) -> Click | None:
    """RITM's next click on the error of ``pred`` against ``gt`` (both HxW bool), never on a
    pixel of ``clicked``; ``None`` when no error pixel is left (see the module docstring)."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    allowed = None
    if clicked:
        allowed = np.ones(gt.shape, dtype=bool)
        for c in clicked:
            allowed[c.y, c.x] = False
    fn = _farthest(gt & ~pred, allowed)
    fp = _farthest(~gt & pred, allowed)
    if fn is None and fp is None:
        return None
    if fn is not None and (fp is None or fn[2] > fp[2]):  # a tie goes to the negative click
        return Click(x=fn[1], y=fn[0], positive=True)
    assert fp is not None
    return Click(x=fp[1], y=fp[0], positive=False)
