"""Sweep analysis shared by the plots and the report: best configurations, the Pareto set and
the caveats (untrained weights, shared-machine latency) that every figure must carry.

Works on the summary rows of :func:`sam_bench.report.summary.collect` (values may be numbers,
``None`` or, for rows read back from ``summary.csv``, strings) and on the jobs' ``result.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam_bench.layout import RESULT_FILE
from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.report.console import varying_keys
from sam_bench.report.summary import override_dict, split_overrides
from sam_bench.report.view import MetricView

UNTRAINED_NOTE = "UNTRAINED (random weights): accuracy is meaningless"

#: What Hydra's Optuna sweeper writes in the sweep directory at the end of a study.
OPTUNA_RESULTS_FILE = "optimization_results.yaml"


class SkipPlot(Exception):
    """Raised by a plot that does not apply to this sweep; the message says why."""


def num(value: Any) -> float:
    """A metric value as a float; missing, empty or non-numeric values are NaN."""
    if value is None or value == "" or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_untrained(row: dict[str, Any]) -> bool:
    """Whether a row's job ran with random weights (``True`` or the CSV string ``"True"``)."""
    value = row.get("untrained")
    return value is True or str(value).lower() == "true" or row.get("weights") == "random"


def ok_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of jobs that finished cleanly (status ``ok``)."""
    return [r for r in rows if r.get("status") == "ok"]


def best_configuration(
    rows: list[dict[str, Any]],
    metric: str,
    maximize: bool | None = None,
    view: MetricView | None = None,
) -> dict[str, Any] | None:
    """The ``ok`` row with the best finite ``metric``, or ``None`` when no row has one.

    ``maximize`` defaults to the metric's catalogue direction in ``view`` (else in this
    process's catalogue; ``KeyError`` for a metric without one). Ties go to the first row
    (lowest job number).
    """
    if maximize is None:
        entry = CATALOGUE.get(metric)
        maximize = view.direction(metric) if view is not None else None
        if maximize is None and entry is not None:
            maximize = entry.higher_is_better
        if maximize is None:
            raise KeyError(f"metric {metric!r} has no direction")
    best: dict[str, Any] | None = None
    for row in ok_rows(rows):
        v = num(row.get(metric))
        if math.isnan(v):
            continue
        if best is None or (v > num(best[metric]) if maximize else v < num(best[metric])):
            best = row
    return best


def pareto_front(rows: list[dict[str, Any]], x: str, y: str) -> list[dict[str, Any]]:
    """``ok`` rows not dominated on (minimum ``x``, maximum ``y``), sorted by ``x``.

    A row is dominated when another is at least as good on both and better on one; rows
    with a missing ``x`` or ``y`` take no part. Equal points are all kept.
    """
    points = [(num(r.get(x)), num(r.get(y)), r) for r in ok_rows(rows)]
    points = [p for p in points if not (math.isnan(p[0]) or math.isnan(p[1]))]
    front = [
        (px, py, r)
        for px, py, r in points
        if not any(qx <= px and qy >= py and (qx < px or qy > py) for qx, qy, _ in points)
    ]
    return [r for _, _, r in sorted(front, key=lambda p: (p[0], -p[1]))]


def value_key(value: str) -> tuple[int, float, str]:
    """Sort override values: numbers numerically first, then anything else alphabetically."""
    v = num(value)
    return (0, v, "") if not math.isnan(v) else (1, 0.0, str(value))


def override_value(row: dict[str, Any], key: str) -> str:
    """A row's value of the override ``key`` (``""`` when the job did not set it)."""
    return override_dict(split_overrides(str(row.get("overrides") or ""))).get(key, "")


def values_of(rows: list[dict[str, Any]], key: str) -> list[str]:
    """The distinct values of the override ``key`` across ``rows``, sorted by :func:`value_key`."""
    return sorted({override_value(r, key) for r in rows}, key=value_key)


def job_label(row: dict[str, Any], keys: list[str]) -> str:
    """``"#3 amg.points_per_side=8 ..."``: a job and its values of the swept ``keys``."""
    ov = override_dict(split_overrides(str(row.get("overrides") or "")))
    parts = [f"{k}={ov[k]}" for k in keys if k in ov]
    return " ".join([f"#{row.get('job')}", *parts])


def load_record(row: dict[str, Any]) -> dict[str, Any]:
    """The ``result.json`` of a row's job, or ``{}`` when it cannot be read."""
    try:
        return json.loads((Path(str(row.get("job_dir"))) / RESULT_FILE).read_text("utf-8"))
    except (OSError, ValueError, TypeError):
        return {}


@dataclass
class SweepFacts:
    """What every plot title and the report must say about a sweep."""

    n_jobs: int = 0
    untrained_jobs: list[str] = field(default_factory=list)
    #: Job -> number of jobs that shared the machine while it ran (only those > 1).
    concurrent_jobs: dict[str, int] = field(default_factory=dict)
    varying: list[str] = field(default_factory=list)
    fixed: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    view: MetricView = field(default_factory=MetricView)
    """The catalogue entries and task declarations of the records."""

    @property
    def untrained(self) -> bool:
        return bool(self.untrained_jobs)

    @property
    def max_concurrency(self) -> int:
        return max(self.concurrent_jobs.values(), default=1)

    def caveats(self) -> list[str]:
        """The short notes that go under every plot title."""
        notes = []
        if self.untrained:
            notes.append(UNTRAINED_NOTE)
        if self.concurrent_jobs:
            notes.append(
                f"latency measured with up to {self.max_concurrency} jobs sharing the machine"
            )
        return notes


def sweep_facts(rows: list[dict[str, Any]]) -> SweepFacts:
    """Caveats and swept keys of a sweep, reading each job's ``result.json`` once."""
    facts = SweepFacts(n_jobs=len(rows))
    if rows:
        facts.varying, facts.fixed = varying_keys(rows)
    for row in rows:
        job = str(row.get("job"))
        record = load_record(row)
        facts.records[job] = record
        if is_untrained(row) or record.get("untrained") is True:
            facts.untrained_jobs.append(job)
        n = num((record.get("environment") or {}).get("concurrent_jobs"))
        if math.isfinite(n) and n > 1:
            facts.concurrent_jobs[job] = int(n)
    facts.view = MetricView.from_records(facts.records.values())
    return facts


@dataclass
class Tuning:
    """How a tuning sweep scored its jobs (``objective.*`` settings of its records)."""

    metric: str = ""
    latency_budget_ms: float | None = None
    penalty: float | None = None
    #: The metric is lower-is-better: the objective is its negation.
    negated: bool = False
    #: The best ``ok`` row by objective (ties: lowest job number); ``None`` when none has one.
    best: dict[str, Any] | None = None
    #: Rows whose objective is not their metric: (row, reason from ``task_info.objective``).
    penalised: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    #: Optuna's own result (``optimization_results.yaml``), when the study wrote one.
    optuna: dict[str, Any] | None = None


def tuning(sweep_dir: Path, rows: list[dict[str, Any]], facts: SweepFacts) -> Tuning | None:
    """The sweep's tuning facts, or ``None`` for a sweep that is not a tuning run.

    A sweep is a tuning run when a job ran under the ``tune`` preset (``config.sweep_name``),
    when its objective is not the task's default one (another ``objective.metric`` or a latency
    budget), or when Optuna wrote :data:`OPTUNA_RESULTS_FILE` in the sweep directory.
    """
    configs = [rec.get("config") or {} for rec in facts.records.values()]
    settings: dict[str, Any] = next(
        (c["objective"] for c in configs if isinstance(c.get("objective"), dict)), {}
    )
    optuna = _read_optuna_results(Path(sweep_dir) / OPTUNA_RESULTS_FILE)
    default = facts.view.default_objective() or ""
    metric = str(settings.get("metric") or default)
    plain = metric == default and settings.get("latency_budget_ms") is None
    if plain and optuna is None and not any(c.get("sweep_name") == "tune" for c in configs):
        return None
    penalty = settings.get("penalty")
    out = Tuning(
        metric=metric,
        latency_budget_ms=settings.get("latency_budget_ms"),
        penalty=None if penalty is None else num(penalty),
        negated=facts.view.direction(metric) is False,
        best=best_configuration(rows, "objective", maximize=True),
        optuna=optuna,
    )
    for row in rows:
        info = facts.records.get(str(row.get("job")), {}).get("task_info") or {}
        why = str(info.get("objective") or "")
        if row.get("status") != "ok" and not why:
            why = "failed"
        if why and why not in (out.metric, f"-{out.metric}"):
            out.penalised.append((row, why))
    return out


def _read_optuna_results(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # unreadable or damaged: no reason to lose the report
        return None
    return data if isinstance(data, dict) else None
