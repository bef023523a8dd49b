"""The sweep summary: one row per job, read from the jobs' ``result.json`` files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sam_bench.record import RESULT_FILE, write_rows_csv

SUMMARY_FILE = "summary.csv"

#: Metric columns of ``summary.csv``, in order (missing ones are left empty).
METRIC_COLUMNS = (
    "miou", "miou_image", "recall50", "recall75", "msa", "sa50", "sa75",
    "ar100", "ar1000", "ar1000_small", "ar1000_medium", "ar1000_large",
    "mask_count_mean", "mask_count_min", "mask_count_max", "coverage", "overlap",
    "latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "images_per_s",
    "preprocess_ms_mean", "encoder_ms_mean", "decoder_ms_mean", "postprocess_ms_mean",
    "metrics_ms_mean", "peak_gpu_mem_mb", "peak_rss_mb", "model_build_s",
    "n_images_ok", "n_image_errors", "marginal_ms_mean", "objective",
)  # fmt: skip


def find_records(sweep_dir: Path) -> list[Path]:
    """Job directories of a sweep that hold a ``result.json``, in job-number order."""
    dirs = [p.parent for p in sweep_dir.glob(f"*/{RESULT_FILE}")]

    def key(d: Path) -> tuple[int, str]:
        return (int(d.name), d.name) if d.name.isdigit() else (1 << 30, d.name)

    return sorted(dirs, key=key)


def override_dict(overrides: list[str]) -> dict[str, str]:
    """``["a.b=1", "+c=2"]`` -> ``{"a.b": "1", "c": "2"}``."""
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out


def summary_row(record: dict[str, Any], job_dir: Path) -> dict[str, Any]:
    """The summary row of one job."""
    cfg = record.get("config", {})
    env = record.get("environment", {})
    metrics = record.get("metrics", {})
    overrides = record.get("overrides", [])
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides)}
    row.update(override_dict(overrides))
    row.update({k: metrics.get(k) for k in METRIC_COLUMNS})
    row.update(
        model=cfg.get("model", {}).get("name"),
        weights=record.get("weights", {}).get("label") or cfg.get("model", {}).get("weights"),
        untrained=record.get("untrained"),
        device=env.get("device"),
        dtype=env.get("dtype") or cfg.get("dtype"),
        engine=cfg.get("engine"),
        status=record.get("status"),
        error=record.get("error"),
        job_dir=str(job_dir),
    )
    return row


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Summary rows of every job in ``sweep_dir`` (a job with an unreadable record is a
    failed row saying so)."""
    rows = []
    for job_dir in find_records(sweep_dir):
        try:
            record = json.loads((job_dir / RESULT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            record = {"status": "failed", "error": f"unreadable {RESULT_FILE}: {e}"}
        rows.append(summary_row(record, job_dir))
    return rows


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``summary.csv`` in the sweep directory."""
    path = sweep_dir / SUMMARY_FILE
    write_rows_csv(path, rows)
    return path
