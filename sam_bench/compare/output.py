"""Outputs of a comparison: ``regression.md``, a self-contained ``regression.html``,
``regression.json`` and the lines printed on stdout (the plots: :mod:`.plots`).

The documents are built from the report's blocks (:mod:`sam_bench.report.render`): the verdict
first, then what differs between the sides, the regressions, an overview of the matched
configurations, the plots (cost ratios with their bootstrap intervals; accuracy, count and
mask-agreement deltas with their tolerance bands), one table per configuration, the
unmatched configurations and the method.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam_bench.compare.comparers import COMPARERS
from sam_bench.compare.comparers.common import count
from sam_bench.compare.declared import to_dict as output_dict
from sam_bench.compare.judge import MetricResult
from sam_bench.compare.plots import make_plots
from sam_bench.metrics.catalogue import format_value
from sam_bench.record import atomic_write_text, write_json
from sam_bench.report.render import Bullets, Figure, Section, Table, Text, to_html, to_markdown

if TYPE_CHECKING:
    from sam_bench.compare.comparison import Comparison, ConfigResult

REPORT_MD = "regression.md"
REPORT_HTML = "regression.html"
REPORT_JSON = "regression.json"
SCHEMA_VERSION = 1
UNTRAINED_TEXT = (
    "UNTRAINED MODEL (random weights) on at least one side: accuracy figures measure nothing "
    "but the harness. Their changes still show whether the outputs changed (same weights, same "
    "data), not whether quality did; latency and memory are real."
)


# --------------------------------------------------------------------------------------------
# formatting


def value(v: float | None, spec: str = "{:.4g}") -> str:
    return format_value(v, spec)


def delta_text(row: MetricResult) -> str:
    if row.delta is None:
        return "-"
    if row.delta == 0:
        return "0"
    text = format_value(abs(row.delta), row.fmt)
    if text.strip("0.") == "":  # too small for the metric's format
        text = f"{abs(row.delta):.2g}"
    return ("+" if row.delta > 0 else "-") + text


def ratio_text(row: MetricResult) -> str:
    if row.ratio is None or not math.isfinite(row.ratio):
        return "-"
    text = f"x{row.ratio:.3f}"
    if row.interval is not None:
        text += f" [{row.interval[0]:.3f}, {row.interval[1]:.3f}]"
    return text


def summary_line(label: str, row: MetricResult) -> str:
    """The one line printed for a regression."""
    if row.metric == "status":
        return f"REGRESSION [{label}] status: {row.note}"
    head = f"REGRESSION [{label}] {row.metric}: {value(row.baseline, row.fmt)} -> "
    head += value(row.current, row.fmt)
    if row.interval is not None:
        how = f"x{row.ratio:.2f}, interval [{row.interval[0]:.2f}, {row.interval[1]:.2f}]"
    else:
        how = delta_text(row)
    return f"{head} ({how}; tolerance {row.tolerance})"


# --------------------------------------------------------------------------------------------
# stdout


def print_summary(comp: Comparison, files: list[Path]) -> None:
    """What a CI log needs: the sides, the unfair differences, one line per regression, the
    outcome and where the report is. The reason a comparison stopped goes to stderr."""
    import sys

    for side in (comp.baseline, comp.current):
        n = len(side.jobs)
        print(f"{side.role + ':':9} {side.location} ({side.kind}, {n} job{'s' * (n != 1)})")
        for w in side.warnings:
            print(f"WARNING: {side.role}: {w}")
    for d in comp.differences:
        if d.severity in ("stop", "allowed", "warn"):
            tag = {"stop": "UNFAIR", "allowed": "UNFAIR (allowed)", "warn": "WARNING"}[d.severity]
            print(f"{tag}: {d.label}: {_vals(d.baseline)} -> {_vals(d.current)}: {d.effect}")
    for d in comp.differences:
        if d.severity == "context":
            print(f"context: {d.label}: {_vals(d.baseline)} -> {_vals(d.current)}")
    if comp.untrained:
        print("UNTRAINED MODEL (random weights): accuracy changes show output changes only")
    for config in comp.configs:
        for kr in config.outputs:
            print(compared_line(config.label, kr.kind, kr.comparison))
    for config, row in comp.regressions():
        print(summary_line(config.label, row))
    for config, problem in comp.problems():
        print(f"NOT COMPARED [{config.label}] {problem}")
    n_un = len(comp.baseline_only) + len(comp.current_only)
    if comp.stop_reason:
        print(f"error: {comp.stop_reason}", file=sys.stderr)
        print(f"result: not comparable (exit 2); {n_un} unmatched configurations")
    elif comp.problems():
        n = len(comp.problems())
        print(
            f"error: saved outputs not compared ({n} problem{'s' * (n != 1)}, listed above)",
            file=sys.stderr,
        )
        print(f"result: outputs not compared (exit 3); {headline(comp)}")
    else:
        print(f"result: {headline(comp)}")
    if files:
        html = next((f for f in files if f.name == REPORT_HTML), files[0])
        print(f"report: {html} ({', '.join(f.name for f in files if f != html)})")


def compared_line(label: str, kind: str, comparison: Any) -> str:
    """The line printed for one output kind compared: how many items, how many identical."""
    comparer = COMPARERS[kind]
    return (
        f"compared [{label}] {kind}: {count(comparison.n_items, comparer.unit)} "
        f"({comparison.n_identical} identical); {comparer.metric} {comparison.agreement:.4f}"
    )


def _vals(values: list[str]) -> str:
    return ", ".join(values) if values else "?"


def headline(comp: Comparison) -> str:
    regs = comp.regressions()
    n = len(comp.configs)
    un = f"; unmatched: {len(comp.baseline_only)} baseline, {len(comp.current_only)} current"
    if regs:
        hit = len({id(c) for c, _ in regs})
        return (
            f"{len(regs)} regression{'s' * (len(regs) != 1)} in {hit} of {n} matched "
            f"configuration{'s' * (n != 1)}{un}"
        )
    counts = {
        v: sum(c.count(v) for c in comp.configs)
        for v in ("better", "worse", "changed", "inconclusive")
    }
    extra = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    text = f"no regression in {n} matched configuration{'s' * (n != 1)}"
    return text + (f" ({extra})" if extra else "") + un


# --------------------------------------------------------------------------------------------
# documents


def _row_cells(row: MetricResult) -> list[str]:
    n = "" if row.n_images is None else str(row.n_images)
    if row.metric == "status":
        base = cur = "-"
    else:
        base, cur = value(row.baseline, row.fmt), value(row.current, row.fmt)
    return [
        row.metric, row.label, base, cur, delta_text(row), ratio_text(row), n, row.tolerance,
        row.verdict, row.note,
    ]  # fmt: skip


METRIC_HEADERS = [
    "metric", "label", "baseline", "current", "delta", "ratio [interval]", "images",
    "tolerance", "verdict", "note",
]  # fmt: skip


def _banner(comp: Comparison) -> Text:
    if comp.stop_reason:
        return Text(f"NOT COMPARABLE (exit 2): {comp.stop_reason}", "warn")
    if comp.problems():
        return Text(
            "SAVED OUTPUTS NOT COMPARED (exit 3): "
            + "; ".join(f"[{c.label}] {p}" for c, p in comp.problems()),
            "warn",
        )
    if comp.regressions():
        return Text(f"REGRESSION (exit 1): {headline(comp)}", "warn")
    return Text(f"No regression (exit 0): {headline(comp)}", "note")


def _sides(comp: Comparison) -> Section:
    rows = [
        [s.role, s.location, s.kind, str(len(s.jobs)), "; ".join([*s.warnings, *s.notes]) or "-"]
        for s in (comp.baseline, comp.current)
    ]
    return Section(
        "Sides", [Table(["side", "source", "kind", "jobs", "notes"], rows, {3})], "sides"
    )


def _differences(comp: Comparison) -> Section:
    if not comp.differences:
        return Section(
            "Differences between the sides",
            [Text("None: the same dataset, weights, model, device, dtype, engine, versions "
                  "and hardware on both sides (as far as the records tell).")],
            "differences",
        )  # fmt: skip
    rows = [
        [d.severity, d.label, _vals(d.baseline), _vals(d.current), d.effect,
         ", ".join(d.pairs[:5]) + (" ..." if len(d.pairs) > 5 else "") or "-"]
        for d in comp.differences
    ]  # fmt: skip
    blocks: list[Any] = [
        Text("Shown before any verdict. stop: makes the comparison meaningless (exit 2); "
             "allowed: a stop named by --across; warn: limits what is judged; context: what "
             "the comparison measures.", "note"),
        Table(["severity", "field", "baseline", "current", "effect", "configurations"], rows),
    ]  # fmt: skip
    return Section("Differences between the sides", blocks, "differences")


def _overview(comp: Comparison) -> Section:
    rows = []
    for c in comp.configs:
        status = next((r for r in c.rows if r.metric == "status"), None)
        agreement = [r for r in c.rows if r.output is not None]
        rows.append([
            c.label, c.config_id, c.pair.matched_by,
            f"{c.pair.base.status} -> {c.pair.cur.status}",
            str(c.count("regression")), str(c.count("worse")), str(c.count("better")),
            str(c.count("inconclusive")),
            ", ".join(f"{r.output} {value(r.current, '{:.4f}')}" for r in agreement) or "-",
            status.verdict if status else "-",
        ])  # fmt: skip
    headers = ["configuration", "config_id", "matched by", "status", "regressions", "worse",
               "better", "inconclusive", "output agreement", "status verdict"]  # fmt: skip
    return Section("Configurations", [Table(headers, rows, {4, 5, 6, 7, 8})], "configurations")


def _config_section(c: ConfigResult) -> Section:
    p = c.pair
    facts = [
        f"config_id: baseline {p.base.config_id or '-'} (job {p.base.name}), current "
        f"{p.cur.config_id or '-'} (job {p.cur.name}); matched by {p.matched_by}"
        + (f"; differs in {', '.join(p.differs)}" if p.differs else "")
        + ("; ambiguous (paired in job order)" if p.ambiguous else ""),
        "overrides: " + (" ".join(p.cur.overrides) or "(none)"),
    ]
    blocks: list[Any] = [Bullets(facts)]
    blocks.append(Table(METRIC_HEADERS, [_row_cells(r) for r in c.rows], {2, 3, 4, 6}))
    for kr in c.outputs:
        blocks.append(Text(f"{COMPARERS[kr.kind].title} ({kr.kind})"))
        table = kr.comparison.table()
        if table is not None:
            headers, rows = table
            blocks.append(Table(headers, rows, set(range(1, len(headers)))))
        blocks.append(Bullets(kr.comparison.details()))
    if c.problems:
        blocks.append(Text("Saved outputs not compared (exit 3):", "warn"))
        blocks.append(Bullets(list(c.problems)))
    notes = list(c.notes)
    if c.unknown:
        notes.append("no catalogue entry (not judged): " + ", ".join(c.unknown))
    if notes:
        blocks.append(Bullets(notes))
    return Section(f"Configuration: {c.label}", blocks)


def _unmatched(comp: Comparison) -> Section | None:
    rows = [
        [side, label, j.config_id or "-", j.name, j.status]
        for side, items in (("baseline", comp.baseline_only), ("current", comp.current_only))
        for label, j in items
    ]
    if not rows:
        return None
    return Section(
        "Unmatched configurations",
        [
            Text("Configurations measured on one side only (not compared)."),
            Table(["side", "configuration", "config_id", "job", "status"], rows),
        ],
        "unmatched",
    )


def _method(comp: Comparison) -> Section:
    s = comp.settings
    t = s.timing
    kinds = ", ".join(f"{k} {v.describe()}" for k, v in s.kinds.items())
    own = ", ".join(f"{k} {v.describe()}" for k, v in s.metrics.items())
    items = [
        "Configurations are matched by config_id, then by resolved settings (identity without "
        "data, weights and engine), then by overrides; never by job number."
        + (f" Compared across: {', '.join(comp.across)}." if comp.across else ""),
        "Directions come from the metric catalogue entries the records carry. Verdicts: "
        "regression (bad direction, beyond the tolerance: exit 1), worse (bad direction, within "
        "it), same, better, changed (no direction), inconclusive (too few images), not judged.",
        f"Tolerances from {s.source}" + (f", overridden by --tol {' '.join(s.overrides)}"
                                          if s.overrides else "") + f": {kinds}"
        + (f"; per metric: {own}" if own else "")
        + f"; masks {s.masks.describe()}; labels {s.labels.describe()}; video "
        f"{s.video.describe()}.",
        "Accuracy and count metrics are deterministic for a fixed model, data and code: any "
        "change beyond floating-point noise is worse / better, and a regression beyond the "
        "tolerance.",
        "Timing and GPU memory are judged from per_image.csv: the metric's statistic (mean, "
        "median, 90th percentile, maximum) recomputed on bootstrap resamples of the images, "
        "paired by image id, and the ratio current / baseline taken on each "
        f"({t.resamples} resamples, seed {t.seed}, {t.confidence * 100:g}% percentile "
        "interval). A regression needs the whole interval beyond 1 + tolerance (statistical "
        "evidence of a change larger than the tolerance); an interval that contains 1 is "
        f"'same'. Fewer than {t.min_images} paired images: inconclusive, never a regression.",
        "A configuration that succeeded in the baseline and fails now, or loses items that "
        "worked, is a regression.",
        "Saved outputs are compared by the kind their job declares, whatever the task: "
        + " ".join(c.method for c in COMPARERS.values())
        + " A prediction output on one side only, items on one side only, nothing compared "
        "or a kind without comparer: outputs not compared (exit 3), never a pass.",
    ]  # fmt: skip
    return Section("Method", [Bullets(items)], "method")


def build_sections(comp: Comparison, plots: list[tuple[Path, str]]) -> list[Section]:
    sections = [Section("", [_banner(comp)])]
    if comp.untrained:
        sections[0].blocks.append(Text(UNTRAINED_TEXT, "warn"))
    sections.append(_differences(comp))
    regs = comp.regressions()
    if regs:
        sections.append(Section(
            "Regressions", [Bullets([summary_line(c.label, r) for c, r in regs])], "regressions"
        ))  # fmt: skip
    sections.append(_sides(comp))
    if comp.configs:
        sections.append(_overview(comp))
    if plots:
        sections.append(Section("Plots", [Figure(p, cap) for p, cap in plots], "plots"))
    sections.extend(_config_section(c) for c in comp.configs)
    unmatched = _unmatched(comp)
    if unmatched is not None:
        sections.append(unmatched)
    if comp.notes:
        sections.append(Section("Notes", [Bullets(comp.notes)], "notes"))
    sections.append(_method(comp))
    return sections


def title_of(comp: Comparison) -> str:
    return f"sam_bench regression check: {comp.outcome}"


# --------------------------------------------------------------------------------------------
# JSON


def to_json(comp: Comparison) -> dict[str, Any]:
    def side(s: Any) -> dict[str, Any]:
        return {"role": s.role, "spec": s.spec, "kind": s.kind, "location": s.location,
                "jobs": len(s.jobs), "notes": s.notes, "warnings": s.warnings}  # fmt: skip

    def job(label: str, j: Any) -> dict[str, Any]:
        return {"label": label, "config_id": j.config_id, "job": j.name, "status": j.status}

    return {
        "schema_version": SCHEMA_VERSION,
        "outcome": comp.outcome,
        "exit_code": comp.exit_code,
        "stop_reason": comp.stop_reason,
        "summary": headline(comp) if not comp.stop_reason else comp.stop_reason,
        "baseline": side(comp.baseline),
        "current": side(comp.current),
        "untrained": comp.untrained,
        "across": comp.across,
        "differences": [d.to_dict() for d in comp.differences],
        "output_problems": [
            {"configuration": c.label, "config_id": c.config_id, "problem": p}
            for c, p in comp.problems()
        ],
        "regressions": [
            {
                "configuration": c.label,
                "config_id": c.config_id,
                "metric": r.metric,
                "line": summary_line(c.label, r),
            }
            for c, r in comp.regressions()
        ],
        "configurations": [
            {
                "label": c.label,
                "config_id": c.config_id,
                "baseline_config_id": c.pair.base.config_id,
                "current_config_id": c.pair.cur.config_id,
                "baseline_job": c.pair.base.name,
                "current_job": c.pair.cur.name,
                "matched_by": c.pair.matched_by,
                "differs": c.pair.differs,
                "ambiguous": c.pair.ambiguous,
                "metrics": [r.to_dict() for r in c.rows],
                "masks": _kind_dict(c, "instance_rle"),
                "video": _kind_dict(c, "palette_png_sequence"),
                "outputs": {kr.kind: output_dict(kr) for kr in c.outputs},
                "output_problems": c.problems,
                "unknown_metrics": c.unknown,
                "notes": c.notes,
            }
            for c in comp.configs
        ],
        "unmatched": {
            "baseline": [job(lbl, j) for lbl, j in comp.baseline_only],
            "current": [job(lbl, j) for lbl, j in comp.current_only],
        },
        "settings": comp.settings.to_dict(),
        "notes": comp.notes,
    }


def _kind_dict(c: ConfigResult, kind: str) -> dict[str, Any] | None:
    comparison = c.output(kind)
    return comparison.to_dict() if comparison is not None else None


def write_outputs(comp: Comparison, out_dir: Path) -> list[Path]:
    """Write the report files; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        plots = make_plots(comp, out_dir)
    except Exception as e:  # a plotting problem must not lose the verdicts
        comp.notes.append(f"plots not drawn: {type(e).__name__}: {e}")
        plots = []
    sections = build_sections(comp, plots)
    title = title_of(comp)
    md, html, js = out_dir / REPORT_MD, out_dir / REPORT_HTML, out_dir / REPORT_JSON
    atomic_write_text(md, to_markdown(title, sections, out_dir))
    atomic_write_text(html, to_html(title, sections))
    write_json(js, to_json(comp))
    return [html, md, js]
