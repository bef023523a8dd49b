"""The sweep report: ``report.md`` and a self-contained ``report.html`` in the sweep directory.

Contents: caveat banners (untrained weights, shared-machine latency, failures), an overview,
for a tuning sweep (``sweep=tune``, Optuna) the best configuration by objective and the
penalised trials, the best configuration per metric, the Pareto set of each task (its declared
accuracy metric against its cost metric), the plots (the sweep's and the figures jobs drew),
the full table, what failed, the definitions of the metrics shown and the environment. Built
from the jobs' records only; which metrics exist, their direction, labels and definitions come
from the records' catalogue entries (:mod:`sam_bench.report.view`).
"""

from __future__ import annotations

import json
import math
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sam_bench
from sam_bench.metrics.catalogue import CATALOGUE, METRICS_DOC
from sam_bench.record import atomic_write_text
from sam_bench.report.analysis import (
    OPTUNA_RESULTS_FILE,
    SweepFacts,
    Tuning,
    best_configuration,
    job_label,
    num,
    ok_rows,
    pareto_front,
    sweep_facts,
    tuning,
    values_of,
)
from sam_bench.report.plots import PLOTS_DIR, SKIPPED_FILE, caption, make_plots
from sam_bench.report.render import Bullets, Figure, Section, Table, Text, to_html, to_markdown
from sam_bench.report.summary import collect, override_dict, split_overrides, write_summary
from sam_bench.report.view import MetricView

__all__ = ["best_configuration", "build_report", "write_report"]

from sam_bench.layout import REPORT_HTML, REPORT_MD

ENV_KEYS = (
    "device", "device_name", "cpu_model", "cpu_count", "torch_threads", "dtype",
    "cuda_version", "cuda_extension", "python", "sam_bench", "torch", "torchvision", "sam2",
    "numpy", "pycocotools", "platform", "git_commit", "git_dirty", "concurrent_jobs",
)  # fmt: skip

GENERAL_NOTES = [
    "Best values and the Pareto sets consider jobs with status ok only.",
    "Accuracy metrics are meaningless for jobs that ran with random weights (marked "
    "untrained); latency and memory are real.",
]


def fmt(value: Any, spec: str = "{:.4g}") -> str:
    """A metric for a table: ``-`` when missing or NaN."""
    v = num(value)
    if math.isnan(v):
        return "-" if value in (None, "") else str(value)
    return spec.format(v)


def _s(value: Any) -> str:
    """Text for a table cell: ``-`` for a missing value."""
    return "-" if value is None or value == "" else str(value)


def _config(row: dict[str, Any], facts: SweepFacts) -> str:
    return job_label(row, facts.varying).partition(" ")[2] or "(all jobs alike)"


def _banners(rows: list[dict[str, Any]], facts: SweepFacts) -> list[Text]:
    out = []
    if facts.untrained:
        out.append(
            Text(
                f"UNTRAINED MODEL: {len(facts.untrained_jobs)} of {facts.n_jobs} jobs ran with "
                "random weights (no checkpoint). Their accuracy figures are meaningless; only "
                "latency and memory are real.",
                "warn",
            )
        )
    if facts.concurrent_jobs:
        jobs = ", ".join(f"#{j}" for j in facts.concurrent_jobs)
        out.append(
            Text(
                f"SHARED MACHINE: latency was measured while up to {facts.max_concurrency} jobs "
                f"ran at once (jobs {jobs}). Latency and throughput are inflated and not "
                "comparable with a run on a dedicated machine.",
                "warn",
            )
        )
    bad = [r for r in rows if r.get("status") != "ok"]
    if bad:
        out.append(
            Text(
                f"{len(bad)} of {len(rows)} jobs did not finish cleanly: see 'What failed'.", "warn"
            )
        )
    for r in rows:
        why = facts.view.empty_result(r)
        if why is not None:
            out.append(Text(f"EMPTY RESULT: job #{r.get('job')} {why}.", "warn"))
    return out


def _overview(sweep_dir: Path, rows: list[dict[str, Any]], facts: SweepFacts) -> list[str]:
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("ok", "partial", "failed")}
    other = len(rows) - sum(counts.values())
    status = ", ".join(f"{n} {s}" for s, n in counts.items()) + (f", {other} other" * bool(other))
    data = {
        f"{d.get('name')} ({d.get('n_images')} items)"
        for rec in facts.records.values()
        if (d := rec.get("dataset"))
    }
    items = [
        f"Sweep directory: {sweep_dir}",
        f"Jobs: {len(rows)} ({status})",
        "Models: " + (", ".join(sorted({str(r["model"]) for r in rows if r.get("model")})) or "-"),
        "Dataset: " + (", ".join(sorted(data)) or "unknown"),
    ]
    for key in facts.varying:
        vals = values_of(rows, key)
        items.append(f"Swept {key}: {', '.join(v or '(unset)' for v in vals)}")
    if facts.fixed:
        items.append("All jobs: " + " ".join(f"{k}={v}" for k, v in facts.fixed.items()))
    return items


def metrics_doc() -> Path | None:
    """The repository's metric definitions (``docs/metrics.md`` beside the package), or
    ``None`` when this installation has none (a wheel)."""
    path = Path(sam_bench.__file__).resolve().parents[1] / METRICS_DOC
    return path if path.is_file() else None


def metric_link(name: str, doc: Path | None) -> str | None:
    """``file:///.../docs/metrics.md#<anchor>`` of ``name``'s definition, or ``None``."""
    anchor = CATALOGUE.anchor(name)
    if doc is None or anchor is None:
        return None
    return f"{doc.as_uri()}#{anchor}"


def _link_metrics(table: Table, column: int = 0) -> Table:
    """Link the metric names of ``column`` to their definitions."""
    doc = metrics_doc()
    for r, row in enumerate(table.rows):
        url = metric_link(row[column], doc)
        if url is not None:
            table.links[(r, column)] = url
    return table


def _best_table(rows: list[dict[str, Any]], facts: SweepFacts) -> Table:
    view = facts.view
    table = Table(["metric", "goal", "best", "job", "model", "configuration"], [], {2})
    for metric in view.best_metrics():
        row = best_configuration(rows, metric, view=view)
        if row is None:
            continue
        value = fmt(row.get(metric), view.fmt(metric))
        if view.is_accuracy(metric) and str(row.get("job")) in facts.untrained_jobs:
            value += " (untrained)"
        goal = "higher" if view.direction(metric) else "lower"
        table.rows.append(
            [metric, goal, value, f"#{row.get('job')}", _s(row.get("model")), _config(row, facts)]
        )
    return _link_metrics(table)


#: Trials listed in the tuning section's ranking.
TOP_TRIALS = 5


def _tuning(t: Tuning, rows: list[dict[str, Any]], facts: SweepFacts) -> list[Any]:
    """The "Tuning" section: the objective, the best configuration, the top trials and the
    penalised ones (with the reason recorded in ``task_info.objective``)."""
    view = facts.view
    goal = f"minimise {t.metric} (objective = -{t.metric})" if t.negated else f"maximise {t.metric}"
    if t.latency_budget_ms is not None:
        goal += f" with a p50 latency of at most {fmt(t.latency_budget_ms, '{:.0f}')} ms"
    penalty = t.penalty if t.penalty is not None else (-1e9 if t.negated else -1.0)
    blocks: list[Any] = [
        Text(
            f"Objective: {goal}. A failed trial, a trial whose {t.metric} is not a number or one "
            f"over the budget scores the penalty {penalty:g}. {len(rows)} trials, "
            f"{len(t.penalised)} penalised; every trial's value is the objective column of "
            "summary.csv."
        )
    ]
    best = t.best
    if best is None:
        blocks.append(Text("No trial finished cleanly: there is no best configuration.", "warn"))
    else:
        job = str(best.get("job"))
        value = fmt(best.get("objective"))
        why = (facts.records.get(job, {}).get("task_info") or {}).get("objective") or t.metric
        if why not in (t.metric, f"-{t.metric}"):
            blocks.append(
                Text(
                    "The best objective is the penalty: no trial met the objective's "
                    "conditions (see 'Penalised trials'), the configuration named is only the "
                    "first of the penalised ones.",
                    "warn",
                )
            )
        elif view.is_accuracy(t.metric) and job in facts.untrained_jobs:
            why += ", untrained"
        blocks.append(
            Text(
                f"Best configuration: job #{job}, objective {value} ({why}): {_config(best, facts)}"
            )
        )
        ties = [r for r in ok_rows(rows) if num(r.get("objective")) == num(best.get("objective"))]
        if len(ties) > 1:
            jobs = ", ".join(f"#{r.get('job')}" for r in ties)
            blocks.append(
                Text(
                    f"{len(ties)} trials tie at this objective ({jobs}); the first is named.",
                    "note",
                )
            )
        overrides = split_overrides(str(best.get("overrides") or ""))
        command = " ".join(["python -m sam_bench hydra.mode=RUN", *map(shlex.quote, overrides)])
        blocks.append(Text(f"Run it alone: {command}"))
    if t.optuna and "best_value" in t.optuna:
        params = t.optuna.get("best_params") or {}
        listed = " ".join(f"{k}={v}" for k, v in params.items()) or "-"
        blocks.append(
            Text(
                f"Optuna's study ({OPTUNA_RESULTS_FILE}): best value "
                f"{fmt(t.optuna.get('best_value'))} with {listed}.",
                "note",
            )
        )
    ranked = sorted(
        (r for r in ok_rows(rows) if math.isfinite(num(r.get("objective")))),
        key=lambda r: -num(r.get("objective")),
    )  # stable: ties keep job order
    if ranked:
        cost = view.main_cost() or "latency_ms_p50"
        top = Table(
            ["job", "objective", t.metric, view.label(cost), "configuration"], [], {1, 2, 3}
        )
        for r in ranked[:TOP_TRIALS]:
            top.rows.append(
                [
                    f"#{r.get('job')}",
                    fmt(r.get("objective")),
                    fmt(r.get(t.metric), view.fmt(t.metric)),
                    fmt(r.get(cost), view.fmt(cost)),
                    _config(r, facts),
                ]
            )
        blocks += [Text(f"Top {len(top.rows)} trials by objective:"), top]
    if t.penalised:
        table = Table(["job", "objective", "reason", "configuration"], [], {1})
        for r, reason in t.penalised:
            table.rows.append(
                [f"#{r.get('job')}", fmt(r.get("objective")), reason, _config(r, facts)]
            )
        blocks += [Text("Penalised trials:"), table]
    else:
        blocks.append(Text("No trial was penalised."))
    return blocks


#: Metric columns per part of the "All jobs" table: a page-wide table, never cut off.
TABLE_METRICS = 9


def _full_table(rows: list[dict[str, Any]], facts: SweepFacts) -> list[Table | Text]:
    """The "All jobs" table, in parts of at most :data:`TABLE_METRICS` metric columns (each
    part repeats the job, its swept values and its model), so that it fits the page."""
    view = facts.view
    columns = [(view.label(m), m, view.fmt(m)) for m in view.table_metrics()]
    chunks = [columns[i : i + TABLE_METRICS] for i in range(0, len(columns), TABLE_METRICS)]
    out: list[Table | Text] = []
    for n, chunk in enumerate(chunks or [[]]):
        last = n == len(chunks) - 1 or not chunks
        headers = ["job", *facts.varying, "model", *(h for h, _, _ in chunk)]
        headers += ["weights", "status"] if last else []
        first_metric = 2 + len(facts.varying)
        table = Table(headers, [], set(range(first_metric, first_metric + len(chunk))))
        for r in rows:
            ov = override_dict(split_overrides(str(r.get("overrides") or "")))
            weights = str(r.get("weights") or "-")
            cells = [
                str(r.get("job")),
                *(ov.get(k, "") for k in facts.varying),
                _s(r.get("model")),
                *(fmt(r.get(key), spec) for _, key, spec in chunk),
            ]
            if last:
                cells += [
                    weights if weights == "random" else weights[:12],
                    str(r.get("status")) + (" (EMPTY)" if view.empty_result(r) else ""),
                ]
            table.rows.append(cells)
        if len(chunks) > 1:
            out.append(Text(f"Part {n + 1} of {len(chunks)}:", "p"))
        out.append(table)
    return out


def _failures(rows: list[dict[str, Any]], facts: SweepFacts) -> list[Text | Table]:
    bad = [r for r in rows if r.get("status") != "ok"]
    table = Table(["job", "status", "configuration", "error"], [])
    for r in bad:
        why = str(r.get("error") or "some images failed (see per_image.csv)")
        table.rows.append([f"#{r.get('job')}", str(r.get("status")), _config(r, facts), why])
    for job, rec in facts.records.items():
        for err in (rec.get("item_errors") or rec.get("image_errors") or [])[:5]:
            table.rows.append(
                [
                    f"#{job}",
                    "image failed",
                    str(err.get("path") or err.get("image_id")),
                    str(err.get("error")),
                ]
            )
    return [table] if table.rows else [Text("Every job finished cleanly.")]


def _environment(facts: SweepFacts) -> Table:
    table = Table(["key", "value"], [])
    envs = [rec.get("environment") or {} for rec in facts.records.values()]
    for key in ENV_KEYS:
        vals = sorted({str(e[key]) for e in envs if e.get(key) is not None})
        if vals:
            table.rows.append([key, " | ".join(vals)])
    return table


#: Jobs whose own figures (``result.json`` ``figures``) the report shows.
MAX_JOB_FIGURES = 12


def _job_figures(facts: SweepFacts) -> list[Figure]:
    """Figures a task drew for its jobs (``figures``: ``[{path, caption}]``, paths relative to
    the job directory), for the first :data:`MAX_JOB_FIGURES` jobs that have any."""
    out: list[Figure] = []
    jobs = 0
    for job, rec in facts.records.items():
        figures = [f for f in rec.get("figures") or [] if isinstance(f, dict) and f.get("path")]
        job_dir = Path(str((rec.get("job") or {}).get("dir") or ""))
        figures = [f for f in figures if (job_dir / str(f["path"])).is_file()]
        if not figures:
            continue
        jobs += 1
        if jobs > MAX_JOB_FIGURES:
            break
        for f in figures:
            out.append(Figure(job_dir / str(f["path"]), f"job #{job}: {f.get('caption') or ''}"))
    return out


def _plots(sweep_dir: Path, plots: list[Path], facts: SweepFacts) -> list[Figure | Text | Bullets]:
    blocks: list[Figure | Text | Bullets] = []
    for path in plots:
        blocks.append(Figure(path, caption(path.stem, facts.view)))
    skipped_file = Path(sweep_dir) / PLOTS_DIR / SKIPPED_FILE
    try:
        skipped = json.loads(skipped_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        skipped = {}
    drawn = {p.stem for p in plots}
    blocks.extend(_job_figures(facts))
    notes = [f"{name}: {why}" for name, why in skipped.items() if name not in drawn]
    if notes:
        blocks.append(Text("Plots not drawn:", "note"))
        blocks.append(Bullets(notes))
    return blocks or [Text("No plots.", "note")]


def _pareto_blocks(rows: list[dict[str, Any]], facts: SweepFacts) -> list[Any]:
    """One Pareto table per task: its accuracy metric (higher) against its cost metric."""
    view = facts.view
    blocks: list[Any] = []
    axes = view.pareto_axes()
    for task, x, y in axes:
        mine = [r for r in rows if r.get("task") in (task, None, "")] if len(axes) > 1 else rows
        front = pareto_front(mine, x, y)
        extra = _count_metric(view, (x, y))
        headers = ["job", "model", "configuration", view.label(y), view.label(x)]
        if extra:
            headers.append(view.label(extra))
        table = Table(headers, [], set(range(3, len(headers))))
        for r in front:
            cells = [f"#{r.get('job')}", _s(r.get("model")), _config(r, facts),
                     fmt(r.get(y), view.fmt(y)), fmt(r.get(x), view.fmt(x))]  # fmt: skip
            if extra:
                cells.append(fmt(r.get(extra), view.fmt(extra)))
            table.rows.append(cells)
        prefix = f"Task {task}: j" if len(axes) > 1 else "J"
        blocks.append(
            Text(
                f"{prefix}obs that no other job beats on both {view.label(y)} (higher) and "
                f"{view.label(x)} (lower)."
            )
        )
        blocks.append(
            table
            if front
            else Text(f"No ok job has both {view.label(y)} and {view.label(x)}.", "note")
        )
    return blocks or [Text("No task in this sweep declares Pareto axes.", "note")]


def _count_metric(view: MetricView, skip: tuple[str, ...]) -> str | None:
    """The first headline metric of kind ``count`` (shown beside a Pareto set)."""
    for name in view.headline():
        m = view.get(name)
        if name not in skip and m is not None and m.kind == "count":
            return name
    return None


def _metric_notes(facts: SweepFacts) -> list[Any]:
    """Definitions of the metrics shown: the records' catalogue entries."""
    view = facts.view
    table = Table(["metric", "label", "goal", "definition", "reference"], [])
    for name in view.columns():
        m = view.get(name)
        if m is None:
            continue
        goal = {"higher": "higher", "lower": "lower"}.get(m.direction, "-")
        unit = f" [{m.unit}]" if m.unit else ""
        table.rows.append([name, m.label + unit, goal, m.description, m.reference])
    doc = metrics_doc()
    notes = list(GENERAL_NOTES)
    if doc is not None:
        notes.append(f"Each metric name links to its definition in {doc}.")
    return [Bullets(notes), _link_metrics(table)]


def report_sections(
    sweep_dir: Path, rows: list[dict[str, Any]], plots: list[Path]
) -> list[Section]:
    """The report's sections (shared by the Markdown and HTML renderings)."""
    facts = sweep_facts(rows)
    pareto_blocks = _pareto_blocks(rows, facts)
    tuned = tuning(sweep_dir, rows, facts)
    tuning_sections = (
        [] if tuned is None else [Section("Tuning", _tuning(tuned, rows, facts), "tuning")]
    )
    return [
        Section("", [*_banners(rows, facts)], "caveats"),
        Section("Overview", [Bullets(_overview(sweep_dir, rows, facts))], "overview"),
        *tuning_sections,
        Section("Best configuration per metric", [_best_table(rows, facts)], "best"),
        Section("Pareto set (accuracy vs cost)", pareto_blocks, "pareto"),
        Section("Plots", [*_plots(sweep_dir, plots, facts)], "plots"),
        Section("All jobs", [Text("Every column: summary.csv."), *_full_table(rows, facts)], "all"),
        Section("What failed", [*_failures(rows, facts)], "failed"),
        Section("About the metrics", _metric_notes(facts), "metrics"),
        Section("Environment", [_environment(facts)], "environment"),
    ]


def write_report(sweep_dir: Path, rows: list[dict[str, Any]], plots: list[Path]) -> list[Path]:
    """Write ``report.md`` and ``report.html`` in ``sweep_dir``; returns both paths."""
    sweep_dir = Path(sweep_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"sam_bench sweep report: {sweep_dir.name} ({stamp})"
    sections = report_sections(sweep_dir, rows, plots)
    md, page = sweep_dir / REPORT_MD, sweep_dir / REPORT_HTML
    atomic_write_text(md, to_markdown(title, sections, sweep_dir))
    atomic_write_text(page, to_html(title, sections))
    for path in (md, page):
        path.chmod(0o644)  # readable like any other report (the temporary file was 0600)
    return [md, page]


def build_report(sweep_dir: Path) -> list[Path]:
    """Collect the jobs' records, write ``summary.csv``, the plots and the report; returns
    every file written (summary, PNGs, report.md, report.html)."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    summary = write_summary(sweep_dir, rows)
    plots = make_plots(sweep_dir, rows)
    return [summary, *plots, *write_report(sweep_dir, rows, plots)]
