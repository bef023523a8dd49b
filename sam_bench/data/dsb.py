"""Data Science Bowl 2018 layout: ``<root>/<id>/images/<id>.png`` + ``<root>/<id>/masks/*.png``.

Each mask file is one instance: a pixel belongs to it when its value is > 0 (some DSB-style
masks, e.g. the ``gnf_dna-*`` ones, are anti-aliased with values between 0 and 255). Masks are
taken in sorted file-name order; overlapping masks stay overlapping (each is its own RLE); an
all-zero mask file is skipped. Samples are listed sorted by ``<id>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig
from sam_bench.data.base import GroundTruth, ImageRef, Sample
from sam_bench.data.images import read_image
from sam_bench.data.registry import compute_fingerprint
from sam_bench.errors import DatasetError, SampleError


class DsbDataset:
    """A DSB2018-style folder of samples, one folder per image.

    Args:
        root: Folder holding the ``<id>/`` sample folders (e.g. ``stage1_train``).
        name: Name recorded with results.
        limit: Keep the first N samples in id order.

    Raises:
        DatasetError: ``root`` is missing or holds no ``<id>/images/`` folder.
    """

    kind = "dsb"
    provides: tuple[str, ...] = ("instances",)

    def __init__(self, root: Path | str, *, name: str = "dsb", limit: int | None = None) -> None:
        self.name = name
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"DSB root folder not found: {self.root}")
        ids = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not any((self.root / i / "images").is_dir() for i in ids):
            nested = [i for i in ids if any((self.root / i).glob("*/images"))]
            hint = f" (did you mean {self.root / nested[0]}?)" if nested else ""
            raise DatasetError(
                f"no <id>/images/<id>.png sample folder in DSB root {self.root}{hint}"
            )
        if limit is not None:
            ids = ids[:limit]
        self._refs = [ImageRef(image_id=i, path=self.root / i / "images" / f"{i}.png") for i in ids]

    def refs(self) -> list[ImageRef]:
        """Samples sorted by id, ``limit`` applied."""
        return list(self._refs)

    def mask_files(self, ref: ImageRef) -> list[Path]:
        """Sorted ``masks/*.png`` of a sample.

        Raises:
            SampleError: the sample has no ``masks`` folder.
        """
        folder = self.root / ref.image_id / "masks"
        if not folder.is_dir():
            raise SampleError(folder, "masks folder not found")
        return _mask_files(folder)

    def load(self, ref: ImageRef) -> Sample:
        """Read one image and its mask files.

        Raises:
            SampleError: missing image or masks folder, unreadable file, or a mask whose size
                differs from the image's.
        """
        if not ref.path.is_file():
            raise SampleError(ref.path, "image file not found (expected <id>/images/<id>.png)")
        masks = self.mask_files(ref)
        raw = read_image(ref.path)
        h, w = raw.pixels.shape[:2]
        rles: list[dict[str, Any]] = []
        for m in masks:
            px = read_image(m).pixels
            if px.ndim == 3:  # colour mask: any colour channel set (alpha ignored)
                px = px[:, :, : 3 if px.shape[2] >= 3 else 1].max(axis=2)
            if px.shape != (h, w):
                raise SampleError(m, f"mask is {px.shape[1]}x{px.shape[0]} but image is {w}x{h}")
            binary = np.asfortranarray(px > 0, dtype=np.uint8)
            if binary.any():
                rles.append(mask_utils.encode(binary))
        gt = GroundTruth(rles=rles, iscrowd=[False] * len(rles), height=h, width=w)
        return Sample(ref=ref, raw=raw, gt=gt)

    def fingerprint(self) -> str:
        """See :mod:`sam_bench.data.registry` for exactly what is hashed."""
        images = [(r.image_id, f"{r.image_id}/images/{r.image_id}.png", r.path) for r in self._refs]
        annotations: list[tuple[str, Path | None]] = []
        for r in self._refs:
            folder = self.root / r.image_id / "masks"
            files = _mask_files(folder) if folder.is_dir() else []
            if not files:
                annotations.append((f"{r.image_id}/masks/<none>", None))
            annotations.extend((f"{r.image_id}/masks/{p.name}", p) for p in files)
        return compute_fingerprint(self.kind, images, annotations)


def _mask_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def from_config(cfg: DatasetConfig, base_dir: Path) -> DsbDataset:
    """``dataset.format=dsb`` (relative paths taken from ``base_dir``)."""
    from sam_bench.data.registry import config_path

    return DsbDataset(config_path(cfg, "root", base_dir), name=cfg.name, limit=cfg.limit)
