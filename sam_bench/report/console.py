"""Readable console output: the sweep table and a single job's result."""

from __future__ import annotations

import math
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from sam_bench.report.summary import override_dict

#: Wide enough for a sweep table when stdout is not a terminal (rich would assume 80 columns).
_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)

#: (header, summary key, format) of the printed table.
TABLE_COLUMNS = (
    ("mIoU", "miou", "{:.3f}"),
    ("mSA", "msa", "{:.3f}"),
    ("AR@1000", "ar1000", "{:.3f}"),
    ("masks/img", "mask_count_mean", "{:.1f}"),
    ("p50 ms", "latency_ms_p50", "{:.0f}"),
    ("p90 ms", "latency_ms_p90", "{:.0f}"),
    ("GPU MB", "peak_gpu_mem_mb", "{:.0f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
)


def _fmt(value: Any, fmt: str) -> str:
    if value is None or value == "":
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if math.isnan(v) else fmt.format(v)


def _weights(label: Any) -> str:
    label = str(label or "-")
    return label if label in ("random", "-") else label[:12]


def varying_keys(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Override keys whose value differs between jobs, and the overrides all jobs share."""
    dicts = [override_dict(str(r.get("overrides") or "").split()) for r in rows]
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys)
    varying = [k for k in keys if len({d.get(k) for d in dicts}) > 1]
    fixed = {k: str(dicts[0][k]) for k in keys if k not in varying and k in dicts[0]}
    return varying, fixed


def print_summary(rows: list[dict[str, Any]], title: str) -> None:
    """The sweep table: one line per job, its swept values, main metrics and status."""
    swept, fixed = varying_keys(rows)
    if fixed:
        title += "\nall jobs: " + " ".join(f"{k}={v}" for k, v in fixed.items())
    table = Table(title=title, title_justify="left")
    table.add_column("job", justify="right")
    for key in swept:
        table.add_column(key)
    for header, _, _ in TABLE_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("weights")
    table.add_column("status")
    for r in rows:
        ov = override_dict(str(r.get("overrides") or "").split())
        status = str(r.get("status"))
        table.add_row(
            str(r.get("job")),
            *[ov.get(k, "") for k in swept],
            *[_fmt(r.get(key), fmt) for _, key, fmt in TABLE_COLUMNS],
            _weights(r.get("weights")),
            status if status == "ok" else f"[bold red]{status}[/]",
        )
    _console.print(table)


def print_job(record: dict[str, Any]) -> None:
    """A single (non-multirun) job's result, as a two-column table."""
    if record.get("banner"):
        _console.print(f"[bold yellow]{record['banner']}[/]")
    job_dir = record.get("job", {}).get("dir")
    if record.get("status") == "failed":
        _console.print(f"[bold red]job failed[/] (record: {job_dir}/result.json)")
        return
    m = record.get("metrics", {})
    table = Table(title=f"sam_bench result: {job_dir}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", justify="right")
    table.add_row("overrides", " ".join(record.get("overrides", [])) or "(none)")
    for header, key, fmt in TABLE_COLUMNS:
        table.add_row(header, _fmt(m.get(key), fmt))
    table.add_row("weights", _weights(record.get("weights", {}).get("label")))
    table.add_row("status", str(record.get("status")))
    _console.print(table)
    for err in record.get("image_errors", []):
        _console.print(f"[red]image failed[/] {err['path']}: {err['error']}")
