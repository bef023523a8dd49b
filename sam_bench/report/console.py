"""Readable console output: the sweep table and a single job's result. Columns are the tasks'
headline metrics (``task_spec.headline`` of the records), labelled and formatted as the
catalogue declares them."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sam_bench.metrics.catalogue import format_value as _fmt
from sam_bench.report.summary import override_dict, split_overrides
from sam_bench.report.view import MetricView

#: Wide enough for a sweep table when stdout is not a terminal (rich would assume 80 columns).
_console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def table_columns(view: MetricView) -> list[tuple[str, str, str]]:
    """(header, summary key, format) of the printed table: the headline metrics."""
    return [(view.label(m), m, view.fmt(m)) for m in view.headline() if view.get(m) is not None]


def _weights(label: Any) -> str:
    """``random``, a checkpoint's sha256 cut to 12 digits, or ``predictions:<8 digits>``."""
    label = str(label or "-")
    kind, sep, digest = label.rpartition(":")
    if sep:
        return f"{kind}:{digest[:8]}"
    return label if label in ("random", "-") else label[:12]


def varying_keys(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """Override keys whose value differs between jobs, and the overrides all jobs share."""
    dicts = [override_dict(split_overrides(str(r.get("overrides") or ""))) for r in rows]
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys)
    varying = [k for k in keys if len({d.get(k) for d in dicts}) > 1]
    fixed = {k: str(dicts[0][k]) for k in keys if k not in varying and k in dicts[0]}
    return varying, fixed


def print_summary(rows: list[dict[str, Any]], title: str, view: MetricView) -> None:
    """The sweep table: one line per job, its swept values, headline metrics and status."""
    columns = table_columns(view)
    swept, fixed = varying_keys(rows)
    if fixed:
        title += "\nall jobs: " + " ".join(f"{k}={v}" for k, v in fixed.items())
    title = escape(title)
    table = Table(title=title, title_justify="left")
    table.add_column("job", justify="right")
    for key in swept:
        table.add_column(key)
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_column("weights")
    table.add_column("status")
    empty: list[tuple[str, str]] = []
    for r in rows:
        ov = override_dict(split_overrides(str(r.get("overrides") or "")))
        status = str(r.get("status"))
        cell = status if status == "ok" else f"[bold red]{status}[/]"
        why = view.empty_result(r)
        if why is not None:
            empty.append((str(r.get("job")), why))
            cell += " [bold yellow]EMPTY[/]"
        table.add_row(
            str(r.get("job")),
            *[escape(ov.get(k, "")) for k in swept],
            *[_fmt(r.get(key), fmt) for _, key, fmt in columns],
            _weights(r.get("weights")),
            cell,
        )
    _console.print(table)
    for job, why in empty:
        _console.print(f"[bold yellow]WARNING[/] job #{escape(job)} {escape(why)}")


def print_job(record: dict[str, Any]) -> None:
    """A single (non-multirun) job's result, as a two-column table."""
    if record.get("banner"):
        _console.print(f"[bold yellow]{escape(str(record['banner']))}[/]")
    job_dir = record.get("job", {}).get("dir")
    if record.get("status") == "failed":
        why = escape(str(record.get("error") or "no reason recorded"))
        _console.print(f"[bold red]job failed[/]: {why} (record: {job_dir}/result.json)")
        return
    m = record.get("metrics", {})
    view = MetricView.from_records([record])
    table = Table(title=f"sam_bench result: {job_dir}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value", justify="right")
    table.add_row("overrides", escape(" ".join(record.get("overrides", [])) or "(none)"))
    table.add_row("config_id", str(record.get("config_id") or "-"))
    for header, key, fmt in table_columns(view):
        table.add_row(header, _fmt(m.get(key), fmt))
    table.add_row("weights", _weights(record.get("weights", {}).get("label")))
    table.add_row("status", str(record.get("status")))
    _console.print(table)
    empty = view.empty_result({**m, "status": record.get("status"), "task": record.get("task")})
    if empty is not None:
        _console.print(f"[bold yellow]WARNING[/] this job {escape(empty)}")
    for err in record.get("item_errors") or record.get("image_errors") or []:
        _console.print(
            f"[red]item failed[/] {escape(str(err['path']))}: {escape(str(err['error']))}"
        )
