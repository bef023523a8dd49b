"""Where a dataset setting points: :func:`config_path` (relative paths are taken from the
directory the command was launched from)."""

from __future__ import annotations

from pathlib import Path

from sam_bench.config import DatasetConfig
from sam_bench.errors import DatasetError


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
