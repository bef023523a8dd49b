"""The sweep summary: one row per job, read from the jobs' ``result.json`` files.

Columns: ``job``, ``overrides`` and one column per override key, every metric the records
report (in catalogue order, :class:`~sam_bench.report.view.MetricView`), then the job's
identity and provenance: ``config_id``, ``task``, ``model``, ``weights``, ``weights_hash``,
``dataset_fingerprint``, ``untrained``, ``device``, ``dtype``, ``engine``, ``status``,
``error``, ``job_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sam_bench.layout import (
    RESULT_FILE,
    SUMMARY_FILE,
)
from sam_bench.record import write_rows_csv
from sam_bench.report.view import MetricView


def find_records(sweep_dir: Path) -> list[Path]:
    """Job directories of a sweep that hold a ``result.json``, in job-number order."""
    dirs = [p.parent for p in sweep_dir.glob(f"*/{RESULT_FILE}")]

    def key(d: Path) -> tuple[int, str]:
        return (int(d.name), d.name) if d.name.isdigit() else (1 << 30, d.name)

    return sorted(dirs, key=key)


def split_overrides(text: str) -> list[str]:
    """The overrides of a ``summary.csv`` row (joined by spaces) as a list again, a quoted
    value with spaces kept whole (``sweep_name='café ü'`` is one override)."""
    out: list[str] = []
    token, quote = "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if token:
                out.append(token)
            token = ""
            continue
        token += ch
    if quote:  # an unbalanced quote: spaces alone
        return text.split()
    return [*out, token] if token else out


def override_dict(overrides: list[str]) -> dict[str, str]:
    """``["a.b=1", "+c=2"]`` -> ``{"a.b": "1", "c": "2"}``."""
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out


def summary_row(
    record: dict[str, Any], job_dir: Path, metric_columns: list[str] | None = None
) -> dict[str, Any]:
    """The summary row of one job (``metric_columns``: the sweep's metric columns; default:
    this record's own metrics)."""
    cfg = record.get("config", {})
    env = record.get("environment", {})
    metrics = record.get("metrics", {})
    weights = record.get("weights") or {}
    overrides = record.get("overrides", [])
    columns = metric_columns if metric_columns is not None else MetricView.from_records(
        [record]
    ).columns()  # fmt: skip
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides)}
    row.update(override_dict(overrides))
    row.update({k: metrics.get(k) for k in columns})
    row.update(
        config_id=record.get("config_id"),
        task=record.get("task") or (cfg.get("task") or {}).get("name"),
        model=cfg.get("model", {}).get("name"),
        weights=weights.get("label") or cfg.get("model", {}).get("weights"),
        weights_hash=weights.get("hash") or weights.get("sha256"),
        dataset_fingerprint=(record.get("dataset") or {}).get("fingerprint"),
        untrained=record.get("untrained"),
        device=env.get("device"),
        dtype=env.get("dtype") or cfg.get("dtype"),
        engine=cfg.get("engine"),
        status=record.get("status"),
        error=record.get("error"),
        job_dir=str(job_dir),
    )
    return row


def read_records(sweep_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(job_dir, record)`` of every job (an unreadable record is a failed job saying so)."""
    out = []
    for job_dir in find_records(sweep_dir):
        try:
            record = json.loads((job_dir / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            record = {"status": "failed", "error": f"unreadable {RESULT_FILE}: {e}"}
        out.append((job_dir, record))
    return out


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Summary rows of every job in ``sweep_dir``, all with the same columns."""
    records = read_records(sweep_dir)
    columns = MetricView.from_records(r for _, r in records).columns()
    return [summary_row(record, job_dir, columns) for job_dir, record in records]


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``summary.csv`` in the sweep directory."""
    path = sweep_dir / SUMMARY_FILE
    write_rows_csv(path, rows)
    return path
