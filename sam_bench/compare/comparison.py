"""The comparison of two loaded sides: is the current sweep worse than a baseline beyond
noise? (The command: :mod:`.cli`.)

Each side is a sweep directory, a ``summary.csv`` or an MLflow run (``runs:/<id>``, or a run
id with ``--tracking-uri``). Configurations are matched by ``config_id`` (then by resolved
settings; never by job number); unmatched ones are listed. What differs between the sides is
shown first; a difference that makes the comparison meaningless (dataset, weights, model,
device, dtype) stops it. Every matched configuration gets a verdict per metric of its task
(directions from the catalogue entries the records carry, tolerances from
``conf/regression/default.yaml`` and ``--tol``), timing and memory from its per-image figures
with a paired bootstrap, and the saved outputs compared by output kind (:mod:`.declared`).

Exit status of a comparison: 0 no regression, 1 regression, 2 could not compare (the reason on
stderr), 3 saved outputs not compared (a prediction kind on one side only, items on one side
only, nothing compared, a kind without comparer; each named). 2 wins over 3, 3 over 1.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from sam_bench.compare.comparers import COMPARERS, ItemComparison
from sam_bench.compare.declared import KindResult, compare_outputs
from sam_bench.compare.fairness import (
    Difference,
    assess,
    nothing_matched_reason,
    pair_flags,
)
from sam_bench.compare.jobs import Job, Side
from sam_bench.compare.judge import (
    MetricResult,
    judge_metric,
    judge_status,
    metrics_to_judge,
    point_verdict,
    unknown_metrics,
)
from sam_bench.compare.matching import (
    Pair,
    closest_pair,
    identity_of,
    match,
    resolve_across,
)
from sam_bench.compare.tolerances import Settings
from sam_bench.report.summary import override_dict
from sam_bench.report.view import MetricView

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_NOT_COMPARED = 0, 1, 2, 3


@dataclass
class ConfigResult:
    """The verdicts of one matched configuration."""

    label: str
    pair: Pair
    rows: list[MetricResult] = field(default_factory=list)
    outputs: list[KindResult] = field(default_factory=list)
    """The saved outputs compared, one per output kind."""
    problems: list[str] = field(default_factory=list)
    """Why saved outputs were not (fully) compared (exit 3)."""
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def output(self, kind: str) -> ItemComparison | None:
        """The comparison of the outputs of ``kind``, when both sides had them."""
        return next((r.comparison for r in self.outputs if r.kind == kind), None)

    @property
    def config_id(self) -> str:
        return self.pair.cur.config_id or self.pair.base.config_id or "-"

    def regressions(self) -> list[MetricResult]:
        return [r for r in self.rows if r.verdict == "regression"]

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.rows)


@dataclass
class Comparison:
    """Everything the outputs show."""

    baseline: Side
    current: Side
    settings: Settings
    across: list[str]
    differences: list[Difference]
    configs: list[ConfigResult]
    baseline_only: list[tuple[str, Job]]
    current_only: list[tuple[str, Job]]
    notes: list[str]
    untrained: bool
    stop_reason: str | None = None

    def regressions(self) -> list[tuple[ConfigResult, MetricResult]]:
        return [(c, r) for c in self.configs for r in c.regressions()]

    def problems(self) -> list[tuple[ConfigResult, str]]:
        """Saved outputs not compared, by configuration (exit 3)."""
        return [(c, p) for c in self.configs for p in c.problems]

    @property
    def exit_code(self) -> int:
        if self.stop_reason:
            return EXIT_ERROR
        if self.problems():
            return EXIT_NOT_COMPARED
        return EXIT_REGRESSION if self.regressions() else EXIT_OK

    @property
    def outcome(self) -> str:
        return {
            EXIT_OK: "no regression",
            EXIT_REGRESSION: "regression",
            EXIT_NOT_COMPARED: "outputs not compared",
        }.get(self.exit_code, "not comparable")


# --------------------------------------------------------------------------------------------
# the comparison


def labels_for(jobs: list[Job]) -> dict[int, str]:
    """A short label per job: the overrides whose values vary among ``jobs`` (both sides),
    else the ``config_id``."""
    maps = {id(j): override_dict(j.overrides) for j in jobs}
    keys: list[str] = []
    for m in maps.values():
        keys.extend(k for k in m if k not in keys)
    varying = [k for k in keys if len({m.get(k) for m in maps.values()}) > 1]
    out = {}
    for j in jobs:
        m = maps[id(j)]
        text = " ".join(f"{k}={m[k]}" for k in varying if k in m)
        out[id(j)] = text or f"config {j.config_id or j.name}"
    return out


def _view(baseline: Side, current: Side) -> MetricView:
    with contextlib.suppress(ImportError):  # entries for records without them; no torch
        import sam_bench.metrics.instance  # noqa: F401
    return MetricView.from_records(
        [*(j.record for j in current.jobs), *(j.record for j in baseline.jobs)]
    )


def _per_s(job: Job) -> str | None:
    spec = job.record.get("task_spec") or {}
    return spec.get("per_s") if isinstance(spec, dict) else None


def judge_pair(
    pair: Pair, label: str, view: MetricView, settings: Settings, progress: bool
) -> ConfigResult:
    """Status, metrics and saved outputs of one matched configuration."""
    result = ConfigResult(label, pair)
    b, c = pair.base, pair.cur
    status = judge_status(b, c)
    result.rows.append(status)
    if not (b.succeeded and c.succeeded):
        return result
    flags = pair_flags(pair)
    per_s = _per_s(c) or _per_s(b)
    for name in metrics_to_judge(view, (b, c)):
        entry = view.get(name)
        assert entry is not None
        result.rows.append(
            judge_metric(
                name, entry, (b, c), settings, per_s=per_s, outputs_comparable=flags["outputs"]
            )
        )
    result.unknown = unknown_metrics(view, (b, c))
    result.outputs, result.problems = compare_outputs(b, c, progress)
    for kr in result.outputs:
        comparer = COMPARERS[kr.kind]
        tol = getattr(settings, comparer.tolerance)
        result.rows.append(_agreement_row(
            comparer.metric, comparer.label, kr.comparison.agreement, tol, flags["outputs"],
            kr.comparison.note(), kr.kind,
        ))  # fmt: skip
    return result


def _agreement_row(
    name: str, label: str, value: float, tol: Any, comparable: bool, note: str, output: str
) -> MetricResult:
    """The row of one output kind's agreement with the baseline (1.0 = identical)."""
    row = MetricResult(
        metric=name, label=label, kind="masks", direction="higher", baseline=1.0,
        current=value, delta=value - 1.0, ratio=None, interval=None, n_images=None,
        tolerance=tol.describe(), verdict="not judged", note=note, fmt="{:.4f}",
        band=tol.band(1.0) if tol.judge else None, output=output,
    )  # fmt: skip
    if not comparable:
        row.note += "; weights differ: not judged"
    elif tol.judge:
        row.verdict, why = point_verdict(1.0, value, "higher", tol, exact=True)
        row.note = f"{row.note}; {why}" if why else row.note
    return row


def compare(
    baseline: Side,
    current: Side,
    settings: Settings,
    across: list[str] | None = None,
    progress: bool = False,
) -> Comparison:
    """Compare two loaded sides (see the module docstring)."""
    across = list(across or [])
    docs = [d for j in [*baseline.jobs, *current.jobs] if (d := identity_of(j)) is not None]
    paths = resolve_across(across, docs)
    matching = match(baseline.jobs, current.jobs, paths)
    order = {id(j): i for i, j in enumerate(current.jobs)}
    pairs = sorted(matching.pairs, key=lambda p: order[id(p.cur)])
    labels = labels_for([*baseline.jobs, *current.jobs])
    pair_labels = {id(p): labels[id(p.cur)] for p in pairs}
    allowed = ["dataset" if a == "data" else a for a in across]
    diffs = assess(baseline.jobs, current.jobs, pairs, pair_labels, allowed)
    untrained = any(j.record.get("untrained") is True for j in [*baseline.jobs, *current.jobs])
    comp = Comparison(
        baseline=baseline,
        current=current,
        settings=settings,
        across=across,
        differences=diffs,
        configs=[],
        baseline_only=[(labels[id(j)], j) for j in matching.baseline_only],
        current_only=[(labels[id(j)], j) for j in matching.current_only],
        notes=list(matching.notes),
        untrained=untrained,
    )
    stops = [d for d in diffs if d.severity == "stop"]
    if stops:
        comp.stop_reason = "the comparison is meaningless: " + "; ".join(
            f"{d.label} differs (baseline: {', '.join(d.baseline) or '?'}; current: "
            f"{', '.join(d.current) or '?'}): {d.effect}"
            for d in stops
        ) + f". To compare anyway: --across {','.join(d.name for d in stops)}"  # fmt: skip
        return comp
    if not pairs:
        comp.stop_reason = nothing_matched_reason(
            diffs, len(baseline.jobs), len(current.jobs), closest_pair(baseline.jobs, current.jobs)
        )
        return comp
    view = _view(baseline, current)
    for p in pairs:
        comp.configs.append(judge_pair(p, pair_labels[id(p)], view, settings, progress))
    return comp
