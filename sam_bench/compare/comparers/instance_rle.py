"""Comparer of ``instance_rle`` outputs: the instance masks of two runs of a configuration.

**Instance masks** (``predictions.json``, COCO results with RLE masks, written with
``save_predictions=true``), in the spirit of pytorch/ao's AMG server check (a faster variant's
masks against the baseline's): per image, the current masks are matched one to one with the
baseline's by IoU (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``); the
image's mIoU is the sum of the matched IoUs over the larger of the two mask counts (a mask
without a partner counts 0; two empty images count 1). Reported: the mean over images, the
same mean over the images whose mask count did not change (torchao's figure, which leaves
the others out), the images whose mask count changed, and how many images have identical
masks (the same RLEs) or changed ones.

Output kind ``instance_rle`` (:data:`sam_bench.layout.KINDS`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from sam_bench.compare.comparers.common import MAX_LISTED, Comparer, MaskFileError


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

    @property
    def n_items(self) -> int:
        return self.n_images

    @property
    def n_identical(self) -> int:
        return self.identical

    @property
    def agreement(self) -> float:
        return self.miou

    def missing(self) -> tuple[list[str], list[str]]:
        """None: an image without entries in a file has no masks there (compared as such)."""
        return self.only_baseline, self.only_current

    def note(self) -> str:
        text = f"{self.identical} of {self.n_images} images identical"
        if self.count_changed:
            text += f"; mask count changed in {len(self.count_changed)}"
        return text

    def details(self) -> list[str]:
        m = self
        items = [
            f"{m.n_images} images: {m.identical} identical, {m.changed} changed; mIoU of the "
            f"current masks against the baseline's {m.miou:.4f} (lowest image {m.min_miou:.4f})",
            "mIoU over the images whose mask count did not change: "
            + ("-" if m.miou_same_count is None else f"{m.miou_same_count:.4f}"),
            f"mask count changed in {len(m.count_changed)} images"
            + (": " + ", ".join(f"{i} ({a} -> {b})" for i, a, b in m.count_changed[:10])
               if m.count_changed else ""),
        ]  # fmt: skip
        if m.worst:
            items.append("least similar: " + ", ".join(f"{i} ({v:.3f})" for i, v in m.worst[:10]))
        return items

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        return None


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


COMPARER = Comparer(
    kind="instance_rle",
    run=compare_predictions,
    metric="mask_miou",
    label="mIoU vs baseline masks",
    unit="images",
    tolerance="masks",
    title="Saved masks (predictions.json):",
    method="Saved masks: per image, current masks matched one to one with the baseline's by "
    "IoU (Hungarian); unmatched masks count 0; mean over images (1.0 = identical).",
)
