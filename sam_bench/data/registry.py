"""Build the dataset a :class:`DatasetConfig` names.

Formats: ``synthetic`` (COCO layout, the embedded set by default), ``coco``,
``instance_folder`` and ``dsb``. Relative paths in the config are taken from ``base_dir``
(the directory the command was launched from).

Dataset fingerprints: :mod:`sam_bench.data.fingerprint` (``compute_fingerprint`` is
re-exported here); relative paths: :func:`sam_bench.data.paths.config_path`.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

from sam_bench import registry
from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.base import Dataset
from sam_bench.data.fingerprint import compute_fingerprint
from sam_bench.data.paths import config_path
from sam_bench.errors import ConfigError, DatasetError

__all__ = [
    "build_dataset",
    "build_synthetic",
    "compute_fingerprint",
    "config_path",
    "embedded_synthetic_root",
]


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
