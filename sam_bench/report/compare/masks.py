"""Mask-level comparison of two runs of a configuration, when both saved their outputs.

**Instance masks** (``predictions.json``, COCO results with RLE masks, written with
``save_predictions=true``), in the spirit of pytorch/ao's AMG server check (a faster variant's
masks against the baseline's): per image, the current masks are matched one to one with the
baseline's by IoU (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``); the
image's mIoU is the sum of the matched IoUs over the larger of the two mask counts (a mask
without a partner counts 0; two empty images count 1). Reported: the mean over images, the
same mean over the images whose mask count did not change (torchao's figure, which leaves
the others out), the images whose mask count changed, and how many images have identical
masks (the same RLEs) or changed ones.

**Label images** (video: ``predictions/<sequence>/<frame>.png``, DAVIS layout, pixel value =
object id, 0 background, 255 void): J (IoU) of every object in every frame against the
baseline's frame (1 when the object is absent from both, as in the DAVIS toolkit), averaged
per object over the frames, then over the objects of all sequences. Every frame either side
wrote is compared, a missing one as an empty frame (no first / last frame is dropped: this is
agreement, not accuracy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

#: Images listed by name in the outputs (the worst first).
MAX_LISTED = 20


class MaskFileError(ValueError):
    """A predictions file or label folder that cannot be read."""


@dataclass
class ImageAgreement:
    image_id: str
    n_baseline: int
    n_current: int
    miou: float
    identical: bool


@dataclass
class MaskComparison:
    """Agreement of one configuration's current masks with its baseline masks."""

    n_images: int
    identical: int
    changed: int
    miou: float
    """Mean over images of the per-image mIoU against the baseline masks."""
    miou_same_count: float | None
    """The same mean over the images whose mask count did not change (``None``: none)."""
    min_miou: float
    count_changed: list[tuple[str, int, int]] = field(default_factory=list)
    """``(image_id, baseline count, current count)``."""
    worst: list[tuple[str, float]] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["n_count_changed"] = len(self.count_changed)
        d["count_changed"] = [list(c) for c in self.count_changed[:MAX_LISTED]]
        d["worst"] = [list(w) for w in self.worst[:MAX_LISTED]]
        return d


def _rle(seg: Any, where: str) -> dict[str, Any]:
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise MaskFileError(f"{where}: segmentation is not an RLE ({{size, counts}})")
    h, w = (int(v) for v in seg["size"])
    counts = seg["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(seg, h, w)  # type: ignore[no-any-return]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def read_predictions(path: Path) -> dict[str, list[dict[str, Any]]]:
    """RLE masks per image id of a COCO results file (a list, or sam_bench's
    ``{"source": ..., "predictions": [...]}``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MaskFileError(f"{path}: cannot read it ({e})") from None
    if isinstance(data, dict):
        data = data.get("predictions")
    if not isinstance(data, list):
        raise MaskFileError(f"{path}: expected a list of COCO results")
    out: dict[str, list[dict[str, Any]]] = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "image_id" not in entry:
            raise MaskFileError(f"{path}: entry {i} has no image_id")
        out.setdefault(str(entry["image_id"]), []).append(
            _rle(entry.get("segmentation"), f"{path}: entry {i}")
        )
    return out


def image_agreement(
    image_id: str, base: list[dict[str, Any]], cur: list[dict[str, Any]]
) -> ImageAgreement:
    """One image's agreement (see the module docstring)."""
    nb, nc = len(base), len(cur)
    same_set = nb == nc and sorted(r["counts"] for r in base) == sorted(r["counts"] for r in cur)
    if nb == 0 or nc == 0:
        return ImageAgreement(image_id, nb, nc, 1.0 if nb == nc else 0.0, nb == nc)
    sizes = {tuple(r["size"]) for r in (*base, *cur)}
    if len(sizes) > 1:  # masks of other image sizes cannot overlap
        return ImageAgreement(image_id, nb, nc, 0.0, False)
    ious = np.asarray(mask_utils.iou(cur, base, [0] * nb), dtype=float).reshape(nc, nb)
    rows, cols = linear_sum_assignment(-ious)
    miou = float(ious[rows, cols].sum()) / max(nb, nc)
    return ImageAgreement(image_id, nb, nc, 1.0 if same_set else miou, same_set)


def compare_predictions(baseline: Path, current: Path, progress: bool = False) -> MaskComparison:
    """Agreement of the masks of two ``predictions.json`` files, over the images both cover
    (an image without entries in a file has no masks there)."""
    from tqdm.auto import tqdm

    base, cur = read_predictions(baseline), read_predictions(current)
    ids = sorted(set(base) | set(cur))
    rows = [
        image_agreement(i, base.get(i, []), cur.get(i, []))
        for i in tqdm(ids, desc="masks", unit="img", disable=not progress, leave=False)
    ]
    return summarise(rows)


def summarise(rows: list[ImageAgreement]) -> MaskComparison:
    """The comparison of per-image agreements."""
    if not rows:
        return MaskComparison(0, 0, 0, 1.0, None, 1.0)
    same_count = [r.miou for r in rows if r.n_baseline == r.n_current]
    worst = sorted(rows, key=lambda r: r.miou)
    return MaskComparison(
        n_images=len(rows),
        identical=sum(r.identical for r in rows),
        changed=sum(not r.identical for r in rows),
        miou=float(np.mean([r.miou for r in rows])),
        miou_same_count=float(np.mean(same_count)) if same_count else None,
        min_miou=worst[0].miou,
        count_changed=[
            (r.image_id, r.n_baseline, r.n_current) for r in rows if r.n_baseline != r.n_current
        ],
        worst=[(r.image_id, r.miou) for r in worst if not r.identical],
    )


# --------------------------------------------------------------------------------------------
# label images (video)


@dataclass
class LabelComparison:
    """Agreement of one configuration's current label images with its baseline's."""

    n_sequences: int
    n_frames: int
    identical_frames: int
    changed_frames: int
    j_mean: float
    """Mean over objects (of all sequences) of J against the baseline, over frames."""
    per_sequence: list[tuple[str, int, float]] = field(default_factory=list)
    """``(sequence, frames compared, J mean over its objects)``."""
    frames_only_baseline: int = 0
    frames_only_current: int = 0
    sequences_only_baseline: list[str] = field(default_factory=list)
    sequences_only_current: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["per_sequence"] = [list(s) for s in self.per_sequence]
        return d


VOID = 255


def read_labels(path: Path) -> np.ndarray:
    """A label PNG as an integer array (palette indices or gray values; RGB colours are
    packed into one integer per pixel)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L", "I", "I;16", "1"):
                return np.asarray(im).astype(np.int64)
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    except OSError as e:
        raise MaskFileError(f"{path}: cannot read it ({e})") from None
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed


def _frames(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == ".png"}


def frame_j(base: np.ndarray, cur: np.ndarray, objects: list[int]) -> dict[int, float]:
    """J of every object in one frame (1 when absent from both)."""
    out = {}
    for k in objects:
        a, b = base == k, cur == k
        union = np.logical_or(a, b).sum()
        out[k] = 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
    return out


def compare_label_folders(baseline: Path, current: Path) -> LabelComparison:
    """Agreement of two ``predictions/`` folders of per-frame label PNGs (see the module
    docstring). A frame or sequence only one side wrote counts as an empty frame on the other
    side (J 0 for every object it shows)."""
    seq_b = {p.name: p for p in sorted(Path(baseline).iterdir()) if p.is_dir()}
    seq_c = {p.name: p for p in sorted(Path(current).iterdir()) if p.is_dir()}
    per_sequence = []
    object_means: list[float] = []
    n_frames = identical = only_b = only_c = 0
    for name in sorted(set(seq_b) | set(seq_c)):
        fb = _frames(seq_b[name]) if name in seq_b else {}
        fc = _frames(seq_c[name]) if name in seq_c else {}
        only_b += len(set(fb) - set(fc))
        only_c += len(set(fc) - set(fb))
        pairs = []
        for f in sorted(set(fb) | set(fc)):
            b = read_labels(fb[f]) if f in fb else None
            c = read_labels(fc[f]) if f in fc else None
            if b is None and c is not None:
                b = np.zeros_like(c)
            if c is None and b is not None:
                c = np.zeros_like(b)
            if b is not None and c is not None:
                pairs.append((b, c, f in fb and f in fc))
        objects = sorted(
            {int(v) for b, c, _ in pairs for v in (*np.unique(b), *np.unique(c))} - {0, VOID}
        )
        scores: dict[int, list[float]] = {k: [] for k in objects}
        for b, c, both in pairs:
            n_frames += 1
            if b.shape != c.shape:
                for k in objects:
                    scores[k].append(0.0)
                continue
            identical += bool(both and np.array_equal(b, c))
            for k, j in frame_j(b, c, objects).items():
                scores[k].append(j)
        means = [float(np.mean(v)) for v in scores.values() if v]
        object_means.extend(means)
        per_sequence.append((name, len(pairs), float(np.mean(means)) if means else 1.0))
    return LabelComparison(
        n_sequences=len(per_sequence),
        n_frames=n_frames,
        identical_frames=identical,
        changed_frames=n_frames - identical,
        j_mean=float(np.mean(object_means)) if object_means else 1.0,
        per_sequence=per_sequence,
        frames_only_baseline=only_b,
        frames_only_current=only_c,
        sequences_only_baseline=sorted(set(seq_b) - set(seq_c)),
        sequences_only_current=sorted(set(seq_c) - set(seq_b)),
    )
