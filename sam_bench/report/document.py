"""The sweep report: ``report.md`` and a self-contained ``report.html`` in the sweep directory.

Contents: caveat banners (untrained weights, shared-machine latency, failures), an overview,
for a tuning sweep (``sweep=tune``, Optuna) the best configuration by objective and the
penalised trials, the best configuration per metric, the Pareto set (mIoU vs p50 latency), the
plots, the full table, what failed, notes on the metrics and the environment. Built from the
jobs' records only.
"""

from __future__ import annotations

import json
import math
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sam_bench.record import atomic_write_text
from sam_bench.report.analysis import (
    ACCURACY_METRICS,
    METRIC_DIRECTIONS,
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
from sam_bench.report.plots import CAPTIONS, PLOTS_DIR, SKIPPED_FILE, make_plots
from sam_bench.report.render import Bullets, Figure, Section, Table, Text, to_html, to_markdown
from sam_bench.report.summary import collect, override_dict, write_summary

__all__ = ["best_configuration", "build_report", "write_report"]

REPORT_MD = "report.md"
REPORT_HTML = "report.html"

#: Metrics of the "best configuration" table, in order.
BEST_METRICS = (
    "miou", "miou_image", "recall50", "recall75", "msa", "ar1000", "ar1000_small",
    "ar1000_medium", "ar1000_large", "latency_ms_p50", "latency_ms_p90", "images_per_s",
    "peak_gpu_mem_mb", "peak_rss_mb",
)  # fmt: skip

#: (header, summary key, format) of the full table.
TABLE_COLUMNS = (
    ("mIoU", "miou", "{:.3f}"), ("mIoU/img", "miou_image", "{:.3f}"),
    ("R@50", "recall50", "{:.3f}"), ("R@75", "recall75", "{:.3f}"), ("mSA", "msa", "{:.3f}"),
    ("AR@100", "ar100", "{:.3f}"), ("AR@1000", "ar1000", "{:.3f}"),
    ("AR small", "ar1000_small", "{:.3f}"), ("AR medium", "ar1000_medium", "{:.3f}"),
    ("AR large", "ar1000_large", "{:.3f}"), ("masks/img", "mask_count_mean", "{:.1f}"),
    ("coverage", "coverage", "{:.3f}"), ("overlap", "overlap", "{:.3f}"),
    ("p50 ms", "latency_ms_p50", "{:.0f}"), ("p90 ms", "latency_ms_p90", "{:.0f}"),
    ("img/s", "images_per_s", "{:.3g}"), ("encoder ms", "encoder_ms_mean", "{:.0f}"),
    ("decoder ms", "decoder_ms_mean", "{:.0f}"), ("post ms", "postprocess_ms_mean", "{:.0f}"),
    ("GPU MB", "peak_gpu_mem_mb", "{:.0f}"), ("RSS MB", "peak_rss_mb", "{:.0f}"),
)  # fmt: skip
_FORMATS = {key: fmt for _, key, fmt in TABLE_COLUMNS}

ENV_KEYS = (
    "device", "device_name", "cpu_model", "cpu_count", "torch_threads", "dtype",
    "cuda_version", "cuda_extension", "python", "sam_bench", "torch", "torchvision", "sam2",
    "numpy", "pycocotools", "platform", "git_commit", "git_dirty", "concurrent_jobs",
)  # fmt: skip

METRIC_NOTES = [
    "mIoU: best-match mask IoU of every ground-truth object, averaged over objects; it ignores "
    "extra masks, so more masks never lower it.",
    "mSA (segmentation accuracy TP/(TP+FP+FN), one-to-one matching) punishes every predicted "
    "mask that matches no ground-truth object, including masks on real but unlabelled objects: "
    "it is harsh on partially labelled data such as COCO.",
    "AR: class-agnostic COCO average recall with masks ranked by predicted IoU; small/medium/"
    "large = ground-truth area < 32², < 96², larger (pixels).",
    "Latency: preprocess + image encoder + mask decoder + post-processing per image (metrics "
    "excluded); p50/p90 over the sweep's images.",
    "Best values and the Pareto set consider jobs with status ok only.",
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
                "random weights (no checkpoint). Their accuracy figures (mIoU, mSA, recall, AR) "
                "are meaningless; only latency and memory are real.",
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
    return out


def _overview(sweep_dir: Path, rows: list[dict[str, Any]], facts: SweepFacts) -> list[str]:
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("ok", "partial", "failed")}
    other = len(rows) - sum(counts.values())
    status = ", ".join(f"{n} {s}" for s, n in counts.items()) + (f", {other} other" * bool(other))
    data = {
        f"{d.get('name')} ({d.get('n_images')} images)"
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


def _best_table(rows: list[dict[str, Any]], facts: SweepFacts) -> Table:
    table = Table(["metric", "goal", "best", "job", "model", "configuration"], [], {2})
    for metric in BEST_METRICS:
        row = best_configuration(rows, metric)
        if row is None:
            continue
        value = fmt(row.get(metric), _FORMATS.get(metric, "{:.4g}"))
        if metric in ACCURACY_METRICS and str(row.get("job")) in facts.untrained_jobs:
            value += " (untrained)"
        goal = "higher" if METRIC_DIRECTIONS[metric] else "lower"
        table.rows.append(
            [metric, goal, value, f"#{row.get('job')}", _s(row.get("model")), _config(row, facts)]
        )
    return table


#: Trials listed in the tuning section's ranking.
TOP_TRIALS = 5


def _tuning(t: Tuning, rows: list[dict[str, Any]], facts: SweepFacts) -> list[Any]:
    """The "Tuning" section: the objective, the best configuration, the top trials and the
    penalised ones (with the reason recorded in ``task_info.objective``)."""
    goal = f"maximise {t.metric}"
    if t.latency_budget_ms is not None:
        goal += f" with a p50 latency of at most {fmt(t.latency_budget_ms, '{:.0f}')} ms"
    blocks: list[Any] = [
        Text(
            f"Objective: {goal}. A failed trial, a trial whose {t.metric} is not a number or one "
            f"over the budget scores the penalty {t.penalty:g}. {len(rows)} trials, "
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
        if why != t.metric:
            blocks.append(
                Text(
                    "The best objective is the penalty: no trial met the objective's "
                    "conditions (see 'Penalised trials'), the configuration named is only the "
                    "first of the penalised ones.",
                    "warn",
                )
            )
        elif t.metric in ACCURACY_METRICS and job in facts.untrained_jobs:
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
        overrides = str(best.get("overrides") or "").split()
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
        top = Table(["job", "objective", t.metric, "p50 ms", "configuration"], [], {1, 2, 3})
        for r in ranked[:TOP_TRIALS]:
            top.rows.append(
                [
                    f"#{r.get('job')}",
                    fmt(r.get("objective")),
                    fmt(r.get(t.metric), _FORMATS.get(t.metric, "{:.4g}")),
                    fmt(r.get("latency_ms_p50"), "{:.0f}"),
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


def _full_table(rows: list[dict[str, Any]], facts: SweepFacts) -> Table:
    headers = [
        "job",
        *facts.varying,
        "model",
        *(h for h, _, _ in TABLE_COLUMNS),
        "weights",
        "status",
    ]
    first_metric = 2 + len(facts.varying)
    table = Table(headers, [], set(range(first_metric, first_metric + len(TABLE_COLUMNS))))
    for r in rows:
        ov = override_dict(str(r.get("overrides") or "").split())
        weights = str(r.get("weights") or "-")
        table.rows.append(
            [
                str(r.get("job")),
                *(ov.get(k, "") for k in facts.varying),
                _s(r.get("model")),
                *(fmt(r.get(key), spec) for _, key, spec in TABLE_COLUMNS),
                weights if weights == "random" else weights[:12],
                str(r.get("status")),
            ]
        )
    return table


def _failures(rows: list[dict[str, Any]], facts: SweepFacts) -> list[Text | Table]:
    bad = [r for r in rows if r.get("status") != "ok"]
    table = Table(["job", "status", "configuration", "error"], [])
    for r in bad:
        why = str(r.get("error") or "some images failed (see per_image.csv)")
        table.rows.append([f"#{r.get('job')}", str(r.get("status")), _config(r, facts), why])
    for job, rec in facts.records.items():
        for err in (rec.get("image_errors") or [])[:5]:
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


def _plots(sweep_dir: Path, plots: list[Path]) -> list[Figure | Text | Bullets]:
    blocks: list[Figure | Text | Bullets] = []
    for path in plots:
        key = next((k for k in CAPTIONS if path.stem.startswith(k)), "")
        blocks.append(Figure(path, CAPTIONS.get(key, path.stem)))
    skipped_file = Path(sweep_dir) / PLOTS_DIR / SKIPPED_FILE
    try:
        skipped = json.loads(skipped_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        skipped = {}
    drawn = {p.stem for p in plots}
    notes = [f"{name}: {why}" for name, why in skipped.items() if name not in drawn]
    if notes:
        blocks.append(Text("Plots not drawn:", "note"))
        blocks.append(Bullets(notes))
    return blocks or [Text("No plots.", "note")]


def report_sections(
    sweep_dir: Path, rows: list[dict[str, Any]], plots: list[Path]
) -> list[Section]:
    """The report's sections (shared by the Markdown and HTML renderings)."""
    facts = sweep_facts(rows)
    front = pareto_front(rows)
    pareto = Table(["job", "model", "configuration", "mIoU", "p50 ms", "masks/img"], [], {3, 4, 5})
    for r in front:
        pareto.rows.append(
            [
                f"#{r.get('job')}",
                _s(r.get("model")),
                _config(r, facts),
                fmt(r.get("miou"), "{:.3f}"),
                fmt(r.get("latency_ms_p50"), "{:.0f}"),
                fmt(r.get("mask_count_mean"), "{:.1f}"),
            ]
        )
    pareto_blocks: list[Any] = [
        Text("Jobs that no other job beats on both mIoU (higher) and p50 latency (lower)."),
        pareto if front else Text("No ok job has both mIoU and latency.", "note"),
    ]
    tuned = tuning(sweep_dir, rows, facts)
    tuning_sections = (
        [] if tuned is None else [Section("Tuning", _tuning(tuned, rows, facts), "tuning")]
    )
    return [
        Section("", [*_banners(rows, facts)], "caveats"),
        Section("Overview", [Bullets(_overview(sweep_dir, rows, facts))], "overview"),
        *tuning_sections,
        Section("Best configuration per metric", [_best_table(rows, facts)], "best"),
        Section("Pareto set (accuracy vs latency)", pareto_blocks, "pareto"),
        Section("Plots", [*_plots(sweep_dir, plots)], "plots"),
        Section("All jobs", [Text("Every column: summary.csv."), _full_table(rows, facts)], "all"),
        Section("What failed", [*_failures(rows, facts)], "failed"),
        Section("About the metrics", [Bullets(METRIC_NOTES)], "metrics"),
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
