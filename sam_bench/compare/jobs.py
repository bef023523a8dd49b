"""What the comparison reads of a side: its jobs (a record, and the folder of each job's
per-item rows and declared outputs when there is one) and the error that stops a comparison.

Shared by the readers of a side (:mod:`.sources`: sweep directories and ``summary.csv``;
:mod:`.mlflow_source`: MLflow runs) and by every later step.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam_bench.layout import PER_ITEM_FILE as PER_IMAGE_FILE
from sam_bench.layout import JobLayout


class CompareError(Exception):
    """The comparison cannot be made (exit status 2); the message says why."""


@dataclass
class Job:
    """One job of a side: its record (or what a summary row / MLflow run says of it) and the
    folder holding its per-image rows and saved predictions, when there is one."""

    record: dict[str, Any]
    name: str
    """Job folder name (the job number), or the MLflow run name."""
    job_dir: Path | None = None
    origin: str = "record"
    """``record`` (result.json), ``summary`` (a summary.csv row) or ``mlflow``."""
    _rows: list[dict[str, str]] | None = field(default=None, repr=False)
    _rows_read: bool = field(default=False, repr=False)

    @property
    def config_id(self) -> str | None:
        cid = self.record.get("config_id")
        return str(cid) if cid else None

    @property
    def status(self) -> str:
        return str(self.record.get("status") or "unknown")

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "partial")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics") or {}

    @property
    def overrides(self) -> list[str]:
        return [str(o) for o in self.record.get("overrides") or []]

    def per_image(self) -> list[dict[str, str]] | None:
        """Rows of the job's ``per_image.csv`` (``None`` when there is none or it is
        unreadable)."""
        if not self._rows_read:
            self._rows_read = True
            path = self.job_dir / PER_IMAGE_FILE if self.job_dir is not None else None
            if path is not None and path.is_file():
                try:
                    with path.open(newline="", encoding="utf-8") as f:
                        self._rows = list(csv.DictReader(f))
                except (OSError, UnicodeDecodeError, csv.Error):
                    self._rows = None
        return self._rows

    @property
    def layout(self) -> JobLayout | None:
        """The job folder's files, when there is a folder."""
        return JobLayout(self.job_dir) if self.job_dir is not None else None


@dataclass
class Side:
    """What one argument of the command names."""

    role: str
    """``baseline`` or ``current``."""
    spec: str
    """The argument as given."""
    kind: str
    """``sweep_dir``, ``summary_csv`` or ``mlflow``."""
    location: str
    """The resolved path or ``runs:/<id>`` with its tracking URI."""
    jobs: list[Job]
    notes: list[str] = field(default_factory=list)
    """Things the reader should know about how this side was read."""
    warnings: list[str] = field(default_factory=list)
    """Things that may make the comparison other than the user meant (printed)."""
    folder: Path | None = None
    """The side's folder (default output place of the current side)."""


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (``ValueError`` when it is something else)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def parse_bool(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text.strip().lower())
