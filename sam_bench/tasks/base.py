"""What every task receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from sam_bench.config import Config
from sam_bench.data.base import Dataset, ImageRef
from sam_bench.models.build import WeightsInfo


@dataclass
class JobContext:
    """Everything a task needs for one job (built by :mod:`sam_bench.run`)."""

    cfg: Config
    device: torch.device
    model: torch.nn.Module
    weights: WeightsInfo
    dataset: Dataset
    refs: list[ImageRef]
    job_dir: Path
    cache_dir: Path | None = None
    """The validated, absolute ``cache.dir`` (encoder cache); ``None``: off."""


@dataclass
class TaskResult:
    """What a task measured."""

    rows: list[dict[str, Any]]
    """One row per image (``per_image.csv``), with an ``error`` column."""
    metrics: dict[str, float]
    """Aggregate metrics (``result.json`` ``metrics``, summary columns)."""
    image_errors: list[dict[str, str]] = field(default_factory=list)
    """``{image_id, path, error}`` for every image that could not be processed."""
    info: dict[str, Any] = field(default_factory=dict)
    """Task-specific facts recorded as ``task_info``."""


class Task(Protocol):
    """A benchmark task."""

    name: str

    def __init__(self, ctx: JobContext) -> None: ...

    def run(self) -> TaskResult:
        """Process every image of ``ctx.refs`` and aggregate."""
        ...
