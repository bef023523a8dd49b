"""Where results go besides the job directory.

A :class:`Tracker` is told when a sweep starts, when each job has written its record, and when
the sweep ends. ``tracking=none`` is :class:`NullTracker` (records only); ``tracking=mlflow``
is :class:`sam_bench.tracking.mlflow.MlflowTracker` (MLflow parent run per sweep, child run per
job). Trackers never decide a job's outcome: a tracking error is logged and the record on disk
stays authoritative. But it is never silent: each failure is noted in the sweep folder
(:func:`note_failure`), and the sweep ends saying what was not tracked, with a non-zero exit
unless ``tracking.required=false``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Objective:
    """The metric a sweep optimises (``objective.metric``, else its task's default)."""

    metric: str
    greater_is_better: bool


@dataclass(frozen=True)
class Best:
    """The best value of one metric over a sweep's ``ok`` jobs, and the job that has it."""

    metric: str
    value: float
    job: str
    """The job's folder name (its number)."""
    label: str
    """``#3 amg.points_per_side=8 ...``: the job and its swept values (its child run's name)."""
    greater_is_better: bool


@dataclass
class SweepOutcome:
    """What the sweep's end hands the tracker besides the summary rows (computed by the
    launcher from the records: trackers import no report code)."""

    best: list[Best] = field(default_factory=list)
    """The best job of each headline metric (and of the objective), in display order."""
    objective: Objective | None = None
    untrained: bool = False
    """Whether a job ran with random weights (its accuracy figures are meaningless)."""


class Tracker(Protocol):
    """Receives a sweep's lifecycle events."""

    def sweep_start(self, sweep_dir: Path, config: Any, objective: Objective | None = None) -> None:
        """Before the first job of a multirun (``config``: the sweep's composed config;
        ``objective``: what it optimises, when the launcher could tell)."""
        ...

    def job_end(self, record: dict[str, Any], job_dir: Path, sweep_dir: Path | None) -> None:
        """After a job wrote ``result.json`` (also for failed jobs). ``sweep_dir`` is ``None``
        for a single run."""
        ...

    def sweep_end(
        self,
        sweep_dir: Path,
        rows: list[dict[str, Any]],
        files: list[Path],
        outcome: SweepOutcome | None = None,
    ) -> None:
        """After the summary (and plots / report files) were written."""
        ...

    def where(self, sweep_dir: Path) -> list[str]:
        """Lines saying where the sweep is tracked and how to open it (none: nothing)."""
        ...

    def sweep_interrupted(self, sweep_dir: Path) -> None:
        """The sweep was stopped (Ctrl-C, SIGTERM) before its end: close what is open as
        killed (``resume=true`` continues it)."""
        ...


class NullTracker:
    """``tracking=none``: nothing beyond the result records."""

    def sweep_start(self, sweep_dir: Path, config: Any, objective: Objective | None = None) -> None:
        return None

    def job_end(self, record: dict[str, Any], job_dir: Path, sweep_dir: Path | None) -> None:
        return None

    def sweep_end(
        self,
        sweep_dir: Path,
        rows: list[dict[str, Any]],
        files: list[Path],
        outcome: SweepOutcome | None = None,
    ) -> None:
        return None

    def where(self, sweep_dir: Path) -> list[str]:
        return []

    def sweep_interrupted(self, sweep_dir: Path) -> None:
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


def safely(what: str, fn: Any, *args: Any) -> str | None:
    """Call a tracker hook; log (never raise) its errors; returns the error's text, or
    ``None`` when it worked."""
    try:
        fn(*args)
    except Exception as e:
        text = failure_text(what, e)
        log.warning("tracking: %s", text)
        return text
    return None


def failure_text(what: str, e: BaseException) -> str:
    """How a failed tracker hook is reported (``logging the job failed: OSError: ...``)."""
    return f"{what} failed: {type(e).__name__}: {e}"


#: Tracking failures of a sweep, one JSON line each (jobs append from their processes).
FAILURES_FILE = ".sam_bench_tracking_failures.jsonl"


def note_failure(sweep_dir: Path, text: str) -> None:
    """Record that something of the sweep in ``sweep_dir`` was not tracked (one short line
    appended at once, so concurrent jobs do not interleave)."""
    line = (json.dumps({"error": text}) + "\n").encode("utf-8")
    fd = os.open(Path(sweep_dir) / FAILURES_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def failures(sweep_dir: Path) -> list[str]:
    """What :func:`note_failure` recorded for the sweep in ``sweep_dir``."""
    try:
        lines = (Path(sweep_dir) / FAILURES_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(str(json.loads(line)["error"]))
        except (ValueError, KeyError, TypeError):
            out.append(line)
    return out


def required(tracking_cfg: Any) -> bool:
    """Whether a tracking failure fails the command (``tracking.required``, default true)."""
    if tracking_cfg is None or getattr(tracking_cfg, "name", "none") == "none":
        return False
    get = getattr(tracking_cfg, "get", None)
    value = get("required", True) if callable(get) else getattr(tracking_cfg, "required", True)
    return bool(value)
