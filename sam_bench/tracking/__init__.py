"""Where results go besides the job directory.

A :class:`Tracker` is told when a sweep starts, when each job has written its record, and when
the sweep ends. ``tracking=none`` is :class:`NullTracker` (records only); ``tracking=mlflow``
is :class:`sam_bench.tracking.mlflow.MlflowTracker` (MLflow parent run per sweep, child run per
job). Trackers never decide a job's outcome: a tracking error is logged and the record on disk
stays authoritative.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """Receives a sweep's lifecycle events."""

    def sweep_start(self, sweep_dir: Path, config: Any) -> None:
        """Before the first job of a multirun (``config``: the sweep's composed config)."""
        ...

    def job_end(self, record: dict[str, Any], job_dir: Path, sweep_dir: Path | None) -> None:
        """After a job wrote ``result.json`` (also for failed jobs). ``sweep_dir`` is ``None``
        for a single run."""
        ...

    def sweep_end(self, sweep_dir: Path, rows: list[dict[str, Any]], files: list[Path]) -> None:
        """After the summary (and plots / report files) were written."""
        ...


class NullTracker:
    """``tracking=none``: nothing beyond the result records."""

    def sweep_start(self, sweep_dir: Path, config: Any) -> None:
        return None

    def job_end(self, record: dict[str, Any], job_dir: Path, sweep_dir: Path | None) -> None:
        return None

    def sweep_end(self, sweep_dir: Path, rows: list[dict[str, Any]], files: list[Path]) -> None:
        return None


def build_tracker(tracking_cfg: Any) -> Tracker:
    """The tracker named by ``tracking.name`` (a DictConfig or TrackingConfig)."""
    name = getattr(tracking_cfg, "name", "none") if tracking_cfg is not None else "none"
    if name == "none":
        return NullTracker()
    if name == "mlflow":
        from sam_bench.tracking.mlflow import MlflowTracker  # imports mlflow lazily itself

        return MlflowTracker(tracking_cfg)
    raise ValueError(f"unknown tracker {name!r}")


def safely(what: str, fn: Any, *args: Any) -> None:
    """Call a tracker hook; log (never raise) its errors."""
    try:
        fn(*args)
    except Exception as e:
        log.warning("tracking: %s failed: %s: %s", what, type(e).__name__, e)
