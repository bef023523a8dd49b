"""Build the dataset a :class:`DatasetConfig` names, and compute dataset fingerprints.

Formats: ``synthetic`` (COCO layout, the embedded set by default), ``coco``,
``instance_folder`` and ``dsb``. Relative paths in the config are taken from ``base_dir``
(the directory the command was launched from).

Fingerprint
-----------
Every dataset's :meth:`fingerprint` is :func:`compute_fingerprint`: the hex sha256 of this
UTF-8 byte stream, in order:

1. ``"sam_bench-dataset-fingerprint-v1\\n"``
2. ``"format\\t<kind>\\n"`` with kind ``coco`` (also for ``synthetic``), ``instance_folder``
   or ``dsb``;
3. for each image listed by ``refs()`` (the stable order, after ``scenes`` and ``limit``):
   ``"image\\t<image_id>\\t<file name>\\t<size in bytes>\\n"``; the file name is relative to
   the dataset (COCO ``file_name``; ``<name>`` in the images folder; DSB
   ``<id>/images/<id>.png``); size ``-1`` for a missing file, an unsafe COCO ``file_name``
   or a file refused by ``dataset.external_links=skip`` (never touched);
4. for each annotation file: ``"annotation\\t<name>\\t<size in bytes>\\n"`` followed by the
   file's bytes (size ``-1`` and no bytes when missing or refused by
   ``dataset.external_links=skip``). Annotation files are: COCO, the whole
   instances JSON (name: its base name); ``instance_folder``, the label file of each listed
   image, in image order (name: relative to the labels folder); ``dsb``, every
   ``<id>/masks/*.png`` of each listed image, in image order then sorted by name.

Moving a dataset elsewhere keeps its fingerprint; changing any pixel file's size, any
annotation byte, the image list or its order changes it. Image pixel bytes are not hashed
(sizes only), which keeps fingerprinting cheap for large image sets.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sam_bench import registry
from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.base import Dataset
from sam_bench.errors import ConfigError, DatasetError

FINGERPRINT_VERSION = "sam_bench-dataset-fingerprint-v1"


def compute_fingerprint(
    kind: str,
    images: Iterable[tuple[str, str, Path | None]],
    annotations: Iterable[tuple[str, Path | None]],
) -> str:
    """sha256 (hex) over an image list and annotation files, as described in this module.

    Args:
        kind: Loader kind (``coco``, ``instance_folder``, ``dsb``).
        images: ``(image_id, relative file name, path or None)`` in the dataset's stable order;
            ``None`` (or a missing file) hashes as size ``-1``.
        annotations: ``(relative name, path or None)`` of each annotation file, in order.
    """
    h = hashlib.sha256()
    h.update(f"{FINGERPRINT_VERSION}\nformat\t{kind}\n".encode())
    for image_id, name, path in images:
        size = _size(path)
        h.update(f"image\t{image_id}\t{name}\t{size}\n".encode())
    for name, path in annotations:
        size = _size(path)
        h.update(f"annotation\t{name}\t{size}\n".encode())
        if path is not None and size >= 0:
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _size(path: Path | None) -> int:
    if path is None:
        return -1
    try:
        return path.stat().st_size if path.is_file() else -1
    except OSError:
        return -1


def embedded_synthetic_root() -> Path:
    """Folder of the synthetic dataset shipped inside the package (``images/`` +
    ``annotations.json``)."""
    from importlib.resources import files

    return Path(str(files("sam_bench") / "datasets" / "synthetic"))


def build_dataset(
    cfg: DatasetConfig, base_dir: Path, *, limits: LimitsConfig | None = None
) -> Dataset:
    """Create the loader for ``cfg`` (the builder registered for ``cfg.format`` in
    :mod:`sam_bench.registry`).

    Args:
        cfg: Dataset options (see :class:`DatasetConfig`).
        base_dir: Directory relative paths in ``cfg`` are taken from.
        limits: The job's ``limits`` settings (``max_image_pixels``), passed to builders
            that take a ``limits`` keyword; ``None``: their defaults.

    Returns:
        A :class:`Dataset` whose ``refs()`` already honour ``cfg.limit`` (first N images in
        the stable order) and, for ``synthetic``, ``cfg.scenes``.

    Raises:
        DatasetError: unknown format, missing folder or annotation file, unknown scene...
    """
    try:
        builder = registry.load("dataset", cfg.format)
    except ConfigError as e:
        raise DatasetError(str(e)) from None
    if limits is not None and _takes_limits(builder):
        return builder(cfg, Path(base_dir), limits=limits)
    return builder(cfg, Path(base_dir))


def _takes_limits(builder: Any) -> bool:
    """Whether a registered builder accepts ``limits=`` (older and plugin builders may not)."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return False
    return "limits" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def config_path(cfg: DatasetConfig, key: str, base_dir: Path) -> Path:
    """The path the dataset setting ``key`` names, relative ones taken from ``base_dir``.

    Raises:
        DatasetError: the setting is empty.
    """
    value = getattr(cfg, key)
    if not value:
        raise DatasetError(f"dataset.{key} is required for dataset.format={cfg.format}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def build_synthetic(
    cfg: DatasetConfig, base_dir: Path, *, limits: LimitsConfig | None = None
) -> Dataset:
    """``dataset.format=synthetic``: the embedded scenes, or ``dataset.root``."""
    root = config_path(cfg, "root", base_dir) if cfg.root else embedded_synthetic_root()
    return _build_synthetic(cfg, root, limits or LimitsConfig())


def _build_synthetic(cfg: DatasetConfig, root: Path, limits: LimitsConfig) -> Dataset:
    from sam_bench.data.coco import CocoDataset

    if not root.is_dir():
        raise DatasetError(f"synthetic dataset folder not found: {root}")
    wanted = set(cfg.scenes) if cfg.scenes is not None else None

    def keep(entry: dict[str, Any]) -> bool:
        return wanted is None or entry.get("scene") in wanted

    ds = CocoDataset(
        root / "annotations.json",
        root / "images",
        name=cfg.name,
        limit=cfg.limit,
        keep=keep,
        max_image_pixels=limits.max_image_pixels,
        external_links=cfg.external_links,
    )
    if wanted is not None:
        available = sorted({str(e.get("scene")) for e in ds.image_entries() if "scene" in e})
        unknown = sorted(wanted - set(available))
        if unknown:
            hints = []
            for s in unknown:
                close = difflib.get_close_matches(s, available, n=1)
                hints.append(f"{s!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise DatasetError(
                f"unknown synthetic scene(s) {', '.join(hints)} in {root}; "
                f"available: {', '.join(available) or 'none'}"
            )
    return ds
