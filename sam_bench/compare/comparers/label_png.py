"""Comparer of ``label_png`` outputs: one class-index PNG per item (semantic jobs'
``predictions/<item stem>.png``; pixel value = class index, any other file such as
``SOURCE.json`` left out).

Per image, the current map against the baseline's map of the same file stem:

* **pixel agreement** -- the fraction of pixels with the same value;
* **mean class IoU** -- the IoU of every value present in either map (the "unlabelled" value
  counts like a class: a pixel that lost its class is a change), averaged over those values;
  1.0 when both maps are identical. Maps of different sizes agree nowhere (0 and 0).

Reported: the mean of each over the images (the mean class IoU is the judged figure), how many
images are identical, the least similar images and the images only one side wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_bench.compare.comparers.common import (
    MAX_LISTED,
    Comparer,
    png_files,
    read_labels,
)


@dataclass
class MapAgreement:
    """One image's agreement."""

    image: str
    pixel_agreement: float
    class_miou: float
    identical: bool


def map_agreement(image: str, base: np.ndarray, cur: np.ndarray) -> MapAgreement:
    """Pixel agreement and mean class IoU of two label maps (see the module docstring)."""
    if base.shape != cur.shape:
        return MapAgreement(image, 0.0, 0.0, False)
    if np.array_equal(base, cur):
        return MapAgreement(image, 1.0, 1.0, True)
    ious = []
    for value in np.union1d(np.unique(base), np.unique(cur)):
        a, b = base == value, cur == value
        ious.append(float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum()))
    return MapAgreement(image, float(np.mean(base == cur)), float(np.mean(ious)), False)


@dataclass
class LabelMapComparison:
    """Agreement of one configuration's current label maps with its baseline's."""

    n_images: int
    identical: int
    changed: int
    pixel_agreement: float
    """Mean over images of the fraction of pixels with the same class."""
    class_miou: float
    """Mean over images of the mean IoU over the classes present in either map."""
    min_class_miou: float
    worst: list[tuple[str, float, float]] = field(default_factory=list)
    """``(image, mean class IoU, pixel agreement)`` of the changed images, least similar
    first."""
    only_baseline: list[str] = field(default_factory=list)
    only_current: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
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
        return self.class_miou

    def missing(self) -> tuple[list[str], list[str]]:
        return self.only_baseline, self.only_current

    def note(self) -> str:
        return f"{self.identical} of {self.n_images} images identical"

    def details(self) -> list[str]:
        items = [
            f"{self.n_images} images: {self.identical} identical, {self.changed} changed; mean "
            f"class IoU against the baseline's maps {self.class_miou:.4f} (lowest image "
            f"{self.min_class_miou:.4f}); pixel agreement {self.pixel_agreement:.4f}",
        ]
        if self.worst:
            items.append(
                "least similar: "
                + ", ".join(f"{i} (IoU {v:.3f}, pixels {p:.3f})" for i, v, p in self.worst[:10])
            )
        return items

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        return None


def compare_label_maps(baseline: Path, current: Path, progress: bool = False) -> LabelMapComparison:
    """Agreement of two folders of label PNGs, over the images both wrote (see the module
    docstring); the images only one side wrote are listed, not compared."""
    from tqdm.auto import tqdm

    fb, fc = png_files(Path(baseline)), png_files(Path(current))
    both = sorted(set(fb) & set(fc))
    rows = [
        map_agreement(s, read_labels(fb[s]), read_labels(fc[s]))
        for s in tqdm(both, desc="label maps", unit="img", disable=not progress, leave=False)
    ]
    only_b, only_c = sorted(set(fb) - set(fc)), sorted(set(fc) - set(fb))
    if not rows:
        return LabelMapComparison(0, 0, 0, 1.0, 1.0, 1.0, [], only_b, only_c)
    worst = sorted((r for r in rows if not r.identical), key=lambda r: r.class_miou)
    return LabelMapComparison(
        n_images=len(rows),
        identical=sum(r.identical for r in rows),
        changed=sum(not r.identical for r in rows),
        pixel_agreement=float(np.mean([r.pixel_agreement for r in rows])),
        class_miou=float(np.mean([r.class_miou for r in rows])),
        min_class_miou=min(r.class_miou for r in rows),
        worst=[(r.image, r.class_miou, r.pixel_agreement) for r in worst],
        only_baseline=only_b,
        only_current=only_c,
    )


COMPARER = Comparer(
    kind="label_png",
    run=compare_label_maps,
    metric="label_miou",
    label="class IoU vs baseline label maps",
    unit="images",
    tolerance="labels",
    title="Label maps (one class-index PNG per image):",
    method="Label maps: per image, the IoU of every class present in either map, averaged "
    "over those classes, then over images (1.0 = identical); pixel agreement shown beside it.",
)
