"""Data Science Bowl 2018 layout: ``<root>/<id>/images/<id>.png`` + ``<root>/<id>/masks/*.png``.

Each mask file is one instance: a pixel belongs to it when its value is > 0 (some DSB-style
masks, e.g. the ``gnf_dna-*`` ones, are anti-aliased with values between 0 and 255). Masks are
taken in sorted file-name order; overlapping masks stay overlapping (each is its own RLE); an
all-zero mask file is skipped. Samples are listed sorted by ``<id>``.

:meth:`DsbDataset.warnings` reports sample folders whose masks have no image (orphan labels;
they are listed, and fail as image errors), non-PNG files in ``masks/`` (not read), and image
or mask files that resolve outside the root through symbolic links (read or refused per
``dataset.external_links``). Images and masks with more pixels than ``max_image_pixels`` are
refused from their header (an image error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.base import GroundTruth, ImageRef, Sample
from sam_bench.data.checks import LinkGuard, dataset_warning
from sam_bench.data.fingerprint import compute_fingerprint
from sam_bench.data.images import DEFAULT_MAX_IMAGE_PIXELS, read_image
from sam_bench.errors import DatasetError, SampleError


class DsbDataset:
    """A DSB2018-style folder of samples, one folder per image.

    Args:
        root: Folder holding the ``<id>/`` sample folders (e.g. ``stage1_train``).
        name: Name recorded with results.
        limit: Keep the first N samples in id order.
        max_image_pixels: Refuse larger images and masks (an image error); ``None``: no limit.
        external_links: ``follow`` or ``skip`` files that resolve outside ``root`` (see
            :class:`~sam_bench.config.DatasetConfig`).

    Raises:
        DatasetError: ``root`` is missing or holds no ``<id>/images/`` folder.
    """

    kind = "dsb"
    provides: tuple[str, ...] = ("instances",)

    def __init__(
        self,
        root: Path | str,
        *,
        name: str = "dsb",
        limit: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        external_links: str = "follow",
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.max_image_pixels = max_image_pixels
        self.links = LinkGuard(external_links)
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
        self._all_ids = ids
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
        self.links.check(ref.path, self.root, "image file")
        for m in masks:
            self.links.check(m, self.root, "mask file")
        raw = read_image(ref.path, max_pixels=self.max_image_pixels)
        h, w = raw.pixels.shape[:2]
        rles: list[dict[str, Any]] = []
        for m in masks:
            px = read_image(m, max_pixels=self.max_image_pixels).pixels
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
        """See :mod:`sam_bench.data.fingerprint` for exactly what is hashed."""
        images = [
            (
                r.image_id,
                f"{r.image_id}/images/{r.image_id}.png",
                None if self.links.skipped(r.path, self.root) else r.path,
            )
            for r in self._refs
        ]
        annotations: list[tuple[str, Path | None]] = []
        for r in self._refs:
            folder = self.root / r.image_id / "masks"
            files = _mask_files(folder) if folder.is_dir() else []
            if not files:
                annotations.append((f"{r.image_id}/masks/<none>", None))
            annotations.extend(
                (f"{r.image_id}/masks/{p.name}", None if self.links.skipped(p, self.root) else p)
                for p in files
            )
        return compute_fingerprint(self.kind, images, annotations)

    def warnings(self) -> list[dict[str, Any]]:
        """What was found suspicious (see :mod:`sam_bench.data.checks`): sample folders with
        masks but no image (whole root), and, for the listed samples, non-PNG files in
        ``masks/`` and image or mask files that resolve outside the root."""
        found = []
        orphans = []
        for i in self._all_ids:
            masks = self.root / i / "masks"
            has_image = (self.root / i / "images" / f"{i}.png").is_file()
            if not has_image and masks.is_dir() and _mask_files(masks):
                orphans.append(i)
        if orphans:
            found.append(
                dataset_warning(
                    "orphan_labels",
                    f"{len(orphans)} sample folder(s) of {self.root} have masks but no "
                    f"images/<id>.png; each is an image error",
                    orphans,
                )
            )
        ignored: list[str] = []
        files: list[tuple[Path, Path]] = []
        for r in self._refs:
            files.append((r.path, self.root))
            folder = self.root / r.image_id / "masks"
            if not folder.is_dir():
                continue
            files.extend((p, self.root) for p in _mask_files(folder))
            ignored.extend(
                f"{r.image_id}/masks/{p.name}"
                for p in sorted(folder.iterdir(), key=lambda p: p.name)
                if p.suffix.lower() != ".png" and not p.name.startswith(".")
            )
        if ignored:
            found.append(
                dataset_warning(
                    "ignored_files",
                    f"{len(ignored)} file(s) in masks/ folders of {self.root} are not PNG; "
                    f"they are not read (each DSB mask is a PNG)",
                    ignored,
                )
            )
        links = self.links.warning(files)
        if links:
            found.append(links)
        return found


def _mask_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def from_config(
    cfg: DatasetConfig, base_dir: Path, *, limits: LimitsConfig | None = None
) -> DsbDataset:
    """``dataset.format=dsb`` (relative paths taken from ``base_dir``; ``limits``: the job's
    ``limits`` settings, default :class:`LimitsConfig`'s)."""
    from sam_bench.data.paths import config_path

    return DsbDataset(
        config_path(cfg, "root", base_dir),
        name=cfg.name,
        limit=cfg.limit,
        max_image_pixels=(limits or LimitsConfig()).max_image_pixels,
        external_links=cfg.external_links,
    )
