"""Box prompts: tight ground-truth boxes, seeded jitter, and a detector's boxes.

* **Tight box** of a mask: ``[x0, y0, x1, y1]`` in pixels with ``x1``/``y1`` one past the last
  column / row (the extent of the pixels, as COCO's ``bbox`` [x, y, w, h] describes it:
  ``x1 = x + w``). A 1-pixel instance at (x, y) has the box ``[x, y, x + 1, y + 1]``.
* **Jitter** (``prompt.box_jitter = f``): each side moves by Gaussian noise whose standard
  deviation is ``f`` times the box's width (x0, x1) or height (y0, y1) -- the noisy-box
  protocol of the SAM paper, without its 20-pixel cap -- then the box is clipped to the image
  and kept at least one pixel wide and high. The noise comes from a generator seeded by
  (``seed``, image id, instance index), so a box never depends on the order of computation.
* **Detector boxes** (``prompt.boxes``): a COCO results JSON (a list of ``{image_id, bbox
  [x, y, w, h], score}``; other keys are ignored), as any COCO-style detector writes it.
  Matching to ground truth follows COCO's greedy rule: detections in descending score (ties
  in file order), each takes the still unmatched ground-truth instance with the highest box
  IoU >= ``prompt.box_match_iou`` (ties: the first instance).
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_bench.errors import ConfigError


def tight_box(mask: np.ndarray) -> np.ndarray | None:
    """``[x0, y0, x1, y1]`` (float64, ``x1``/``y1`` exclusive) of a HxW bool mask; ``None`` when
    the mask is empty."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def instance_rng(seed: int, image_id: str, index: int) -> np.random.Generator:
    """The generator of one instance's random prompt: seeded by (seed, image id, index)."""
    return np.random.default_rng([int(seed) % 2**32, zlib.crc32(image_id.encode()), int(index)])


def jitter_box(
    box: np.ndarray, fraction: float, rng: np.random.Generator, width: int, height: int
) -> np.ndarray:
    """``box`` with each side moved by N(0, fraction x side length), clipped to the image
    (``width`` x ``height``) and at least one pixel wide and high (see the module docstring)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    noise = rng.normal(0.0, 1.0, size=4) * fraction * np.array([w, h, w, h])
    a = np.array([x0, y0, x1, y1]) + noise
    nx0, nx1 = sorted((float(np.clip(a[0], 0, width)), float(np.clip(a[2], 0, width))))
    ny0, ny1 = sorted((float(np.clip(a[1], 0, height)), float(np.clip(a[3], 0, height))))
    if nx1 - nx0 < 1.0:
        nx0 = min(nx0, width - 1.0)
        nx1 = nx0 + 1.0
    if ny1 - ny0 < 1.0:
        ny0 = min(ny0, height - 1.0)
        ny1 = ny0 + 1.0
    return np.array([nx0, ny0, nx1, ny1], dtype=np.float64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (N x M) of xyxy boxes ``a`` (N x 4) and ``b`` (M x 4); 0 where both boxes
    have no area."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.asarray(out, dtype=np.float64)


def match_detections(
    det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, iou_thresh: float
) -> np.ndarray:
    """For every ground-truth box, the index of the detection matched to it, or -1 (greedy
    COCO matching, see the module docstring)."""
    n_gt = len(gt_boxes)
    match = np.full(n_gt, -1, dtype=np.int64)
    if n_gt == 0 or len(det_boxes) == 0:
        return match
    ious = box_iou(det_boxes, gt_boxes)
    order = np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable")
    for d in order:
        cand = np.where((match < 0) & (ious[d] >= iou_thresh), ious[d], -1.0)
        g = int(np.argmax(cand))
        if cand[g] >= 0.0 and cand[g] >= iou_thresh:
            match[g] = int(d)
    return match


@dataclass
class Detections:
    """A detector's boxes by image id (text, as :class:`~sam_bench.data.base.ImageRef` ids)."""

    path: Path
    sha256: str
    by_image: dict[str, list[tuple[np.ndarray, float]]] = field(default_factory=dict)
    """Image id -> ``(xyxy box, score)`` in file order."""
    n_total: int = 0

    def for_image(
        self, image_id: str, min_score: float = -math.inf
    ) -> list[tuple[np.ndarray, float]]:
        """The image's detections scoring at least ``min_score`` (file order)."""
        return [(b, s) for b, s in self.by_image.get(image_id, []) if s >= min_score]

    def info(self) -> dict[str, Any]:
        """``task_info.prompts.boxes``: where they came from."""
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "n_detections": self.n_total,
            "n_images": len(self.by_image),
        }


def read_detections(path: Path | str, key: str = "prompt.boxes") -> Detections:
    """Read a COCO results JSON of boxes (see the module docstring). Raises
    :class:`ConfigError` naming ``key``, the file and the first bad entry."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(key, f"file not found: {path}") from None
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ConfigError(key, f"{path} is not JSON: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("predictions"), list):
        data = data["predictions"]
    if not isinstance(data, list):
        raise ConfigError(key, f"{path}: expected a list of COCO results {{image_id, bbox, score}}")
    dets = Detections(path=path, sha256=hashlib.sha256(raw).hexdigest())
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "image_id" not in entry or "bbox" not in entry:
            raise ConfigError(key, f"{where} has no image_id / bbox")
        bbox = entry["bbox"]
        if (
            not isinstance(bbox, list | tuple)
            or len(bbox) != 4
            or not all(_finite(v) for v in bbox)
        ):
            raise ConfigError(key, f"{where}: bbox must be 4 finite numbers [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise ConfigError(key, f"{where}: bbox width and height must be >= 0, got {bbox}")
        score = entry.get("score", 1.0)
        if not _finite(score):
            raise ConfigError(key, f"{where}: score must be a finite number, got {score!r}")
        box = np.array([x, y, x + w, y + h], dtype=np.float64)
        dets.by_image.setdefault(str(entry["image_id"]), []).append((box, float(score)))
        dets.n_total += 1
    return dets


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
