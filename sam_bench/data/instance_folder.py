"""Images folder + labels folder of instance-id maps, matched by file stem.

A label map is a single-channel integer image the size of its image (8- or 16-bit PNG, palette
PNG (the indices are the ids), TIFF of any integer type): ``0`` is background and each other
value one instance. Instances are listed in increasing id order; none is a crowd region.
Images are listed sorted by file name (hidden files skipped).

:meth:`InstanceFolderDataset.warnings` reports label files that match no image (orphan
labels, over the whole folder), listed images or label files that resolve outside their folder
through symbolic links (read or refused per ``dataset.external_links``), and links that point
nowhere (left out). Images and label maps with more pixels than ``max_image_pixels`` are
refused from their header (an image error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.base import GroundTruth, ImageRef, RawImage, Sample
from sam_bench.data.checks import LinkGuard
from sam_bench.data.fingerprint import compute_fingerprint
from sam_bench.data.folders import broken, files_by_stem, folder_warnings, images_by_stem, orphans
from sam_bench.data.images import DEFAULT_MAX_IMAGE_PIXELS, check_size, read_image
from sam_bench.errors import DatasetError, SampleError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
"""Files of the images folder that are listed (case-insensitive)."""
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
"""Files of the labels folder that are matched (case-insensitive)."""


class InstanceFolderDataset:
    """Images matched to instance-id label maps by file stem.

    Args:
        images: Folder of images.
        labels: Folder of label maps (``<stem>.png`` / ``.tif`` / ``.tiff``).
        name: Name recorded with results.
        limit: Keep the first N images in file-name order.
        max_image_pixels: Refuse larger images and label maps (an image error); ``None``:
            no limit.
        external_links: ``follow`` or ``skip`` files that resolve outside their folder (see
            :class:`~sam_bench.config.DatasetConfig`).

    Raises:
        DatasetError: a folder is missing, the images folder holds no image, or two images
            share a stem.
    """

    kind = "instance_folder"
    provides: tuple[str, ...] = ("instances",)

    def __init__(
        self,
        images: Path | str,
        labels: Path | str,
        *,
        name: str = "instance_folder",
        limit: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        external_links: str = "follow",
    ) -> None:
        self.name = name
        self.images_dir = Path(images)
        self.labels_dir = Path(labels)
        self.max_image_pixels = max_image_pixels
        self.links = LinkGuard(external_links)
        for what, folder in (("images", self.images_dir), ("labels", self.labels_dir)):
            if not folder.is_dir():
                raise DatasetError(f"instance_folder {what} folder not found: {folder}")
        files = images_by_stem(self.images_dir, IMAGE_SUFFIXES)
        self._labels = files_by_stem(self.labels_dir, LABEL_SUFFIXES)
        self._orphans = orphans(self._labels, files)
        self._broken = broken(
            [(self.images_dir, IMAGE_SUFFIXES), (self.labels_dir, LABEL_SUFFIXES)]
        )
        if limit is not None:
            files = files[:limit]
        self._refs = [ImageRef(image_id=f.stem, path=f) for f in files]

    def refs(self) -> list[ImageRef]:
        """Images sorted by file name, ``limit`` applied."""
        return list(self._refs)

    def label_path(self, ref: ImageRef) -> Path:
        """The label file of ``ref``. Raises :class:`SampleError` when there is none or several."""
        found = self._labels.get(ref.image_id, [])
        if not found:
            raise SampleError(
                ref.path, f"no label file {ref.image_id}.png/.tif/.tiff in {self.labels_dir}"
            )
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise SampleError(ref.path, f"several label files match: {names}")
        return found[0]

    def load(self, ref: ImageRef) -> Sample:
        """Read one image and split its label map into instances.

        Raises:
            SampleError: missing label, unreadable image or label, label not a single-channel
                integer map, or label size different from the image's.
        """
        label_file = self.label_path(ref)
        self.links.check(ref.path, self.images_dir, "image file")
        self.links.check(label_file, self.labels_dir, "label file")
        raw, labels = read_image_and_labels(ref.path, label_file, self.max_image_pixels)
        h, w = labels.shape
        rles = label_map_to_rles(labels)
        gt = GroundTruth(rles=rles, iscrowd=[False] * len(rles), height=h, width=w)
        return Sample(ref=ref, raw=raw, gt=gt)

    def fingerprint(self) -> str:
        """See :mod:`sam_bench.data.fingerprint` for exactly what is hashed."""
        images = [
            (r.image_id, r.path.name, None if self._skipped(r.path, self.images_dir) else r.path)
            for r in self._refs
        ]
        annotations: list[tuple[str, Path | None]] = []
        for r in self._refs:
            found = self._labels.get(r.image_id, [])
            if not found:
                annotations.append((f"{r.image_id}.<missing>", None))
            annotations.extend(
                (p.name, None if self._skipped(p, self.labels_dir) else p) for p in found
            )
        return compute_fingerprint(self.kind, images, annotations)

    def _skipped(self, path: Path, root: Path) -> bool:
        return self.links.skipped(path, root)

    def warnings(self) -> list[dict[str, Any]]:
        """What was found suspicious (see :mod:`sam_bench.data.checks`): orphan label files
        (whole folder), listed images and their label files that resolve outside their folder,
        and broken links."""
        found = folder_warnings(self._orphans, self.labels_dir, self.images_dir, [])
        files = []
        for r in self._refs:
            files.append((r.path, self.images_dir))
            files.extend((p, self.labels_dir) for p in self._labels.get(r.image_id, []))
        links = self.links.warning(files)
        if links:
            found.append(links)
        found.extend(folder_warnings([], self.labels_dir, self.images_dir, self._broken))
        return found


def read_image_and_labels(
    image: Path, label_file: Path, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[RawImage, np.ndarray]:
    """An image and its label map (:func:`read_label_map`), which must have the image's size.

    Raises:
        SampleError: either file unreadable, or the sizes differ.
    """
    raw = read_image(image, max_pixels=max_pixels)
    labels = read_label_map(label_file, max_pixels=max_pixels)
    h, w = raw.pixels.shape[:2]
    if labels.shape != (h, w):
        raise SampleError(
            label_file,
            f"label is {labels.shape[1]}x{labels.shape[0]} but image {image.name} is {w}x{h}",
        )
    return raw, labels


def read_label_map(path: Path, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an instance-id map as a 2-D non-negative integer array.

    Palette PNGs give their indices (not the colours); 1-bit images give 0/1; float TIFFs are
    accepted when every value is a non-negative integer.

    Raises:
        SampleError: unreadable, not single-channel, not integer ids, or more pixels than
            ``max_pixels`` (checked from the header).
    """
    if path.suffix.lower() == ".png":
        try:
            with Image.open(path) as im:
                check_size(path, im.width, im.height, max_pixels)
                if im.mode == "P":
                    im.load()
                    return np.array(im)
        except SampleError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise SampleError(path, f"cannot decode label map: {e}") from None
    px = read_image(path, max_pixels=max_pixels).pixels
    if px.ndim == 3 and px.shape[2] == 1:
        px = px[:, :, 0]
    if px.ndim != 2:
        raise SampleError(
            path, f"label map must be single-channel instance ids, got shape {px.shape}"
        )
    if px.dtype == bool:
        return px.astype(np.uint8)
    if px.dtype.kind == "f":
        if not (np.isfinite(px).all() and (px == np.round(px)).all()):
            raise SampleError(path, "float label map has non-integer values")
        px = px.astype(np.int64)
    if px.dtype.kind not in "ui":
        raise SampleError(path, f"label map has dtype {px.dtype}, expected integers")
    if px.dtype.kind == "i" and (px < 0).any():
        raise SampleError(path, "label map has negative ids")
    return px


def label_map_to_rles(labels: np.ndarray) -> list[dict[str, Any]]:
    """One compressed RLE per non-zero id of ``labels``, in increasing id order."""
    h, w = labels.shape
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if not len(ids):
        return []
    # relabel to 1..n so find_objects gives one bounding slice per instance
    dense = np.searchsorted(ids, labels).astype(np.int64) + 1
    dense[labels == 0] = 0
    rles = []
    for k, sl in enumerate(ndimage.find_objects(dense), start=1):
        mask = np.zeros((h, w), dtype=np.uint8, order="F")
        mask[sl] = dense[sl] == k
        rles.append(mask_utils.encode(mask))
    return rles


def from_config(
    cfg: DatasetConfig, base_dir: Path, *, limits: LimitsConfig | None = None
) -> InstanceFolderDataset:
    """``dataset.format=instance_folder`` (relative paths taken from ``base_dir``;
    ``limits``: the job's ``limits`` settings, default :class:`LimitsConfig`'s)."""
    from sam_bench.data.paths import config_path

    return InstanceFolderDataset(
        config_path(cfg, "images", base_dir),
        config_path(cfg, "labels", base_dir),
        name=cfg.name,
        limit=cfg.limit,
        max_image_pixels=(limits or LimitsConfig()).max_image_pixels,
        external_links=cfg.external_links,
    )
