"""The sweep's end: what the tracker gets besides the rows (the best job of each headline
metric, the objective) and the closing lines (time, time per job, where the results are)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.report.analysis import sweep_facts
from sam_bench.report.summary import collect
from sam_bench.sweep_end import closing_lines, duration_text, size_text, sweep_outcome
from sam_bench.tasks import get_task

#: (status, miou, latency_ms_p50, weights) of each job; job 3 failed (its numbers must not win)
JOBS: list[tuple[str, float | None, float | None, str]] = [
    ("ok", 0.20, 900.0, "random"),
    ("ok", 0.45, 1500.0, "random"),
    ("ok", 0.45, 700.0, "random"),  # ties job 1 on mIoU: the lower job number wins
    ("failed", 0.99, 10.0, "random"),
    ("ok", math.nan, 650.0, "random"),  # no mIoU (NaN) but the fastest ok job
]


def _sweep(root: Path, objective_metric: str | None = None, reused: int | None = None) -> Path:
    """A sweep folder of amg jobs whose records carry the real task declaration and catalogue
    entries (what a job writes)."""
    spec = get_task("amg").spec
    names = spec.catalogue_names()
    for num, (status, miou, p50, weights) in enumerate(JOBS):
        job = root / str(num)
        job.mkdir(parents=True)
        metrics: dict[str, Any] = {"miou": miou, "latency_ms_p50": p50, "msa": 0.1 * num}
        record = {
            "status": status,
            "task": "amg",
            "task_spec": spec.to_dict(),
            "metric_info": CATALOGUE.snapshot(names),
            "metrics": {} if status == "failed" and num != 3 else metrics,
            "overrides": [f"amg.points_per_side={4 * (num + 1)}", "model.weights=random"],
            "config": {"objective": {"metric": objective_metric}, "model": {"weights": weights}},
            "weights": {"kind": weights, "label": weights},
            "untrained": weights == "random",
            "job": {"num": num, "reused": num == reused},
        }
        (job / "result.json").write_text(json.dumps(record))
        (job / "per_image.csv").write_text("x" * 1000)
    return root


def _reference_best(rows: list[dict[str, Any]], metric: str, higher: bool) -> str:
    """The job with the best finite value among ok rows, ties to the lowest job number."""
    values = [
        (float(r[metric]), int(r["job"]))
        for r in rows
        if r["status"] == "ok" and r[metric] is not None and math.isfinite(float(r[metric]))
    ]
    ranked = sorted(values, key=lambda v: (-v[0] if higher else v[0], v[1]))
    return str(ranked[0][1])


def test_outcome_names_the_best_job_of_each_headline_metric(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep")
    rows = collect(sweep)
    facts = sweep_facts(rows)
    outcome = sweep_outcome(rows, facts)

    spec = get_task("amg").spec
    assert outcome.objective is not None
    assert (outcome.objective.metric, outcome.objective.greater_is_better) == (spec.objective, True)
    assert outcome.untrained
    by_metric = {b.metric: b for b in outcome.best}
    # every headline metric with a direction and a value in some ok job, and nothing else
    expected = [
        m
        for m in spec.headline
        if CATALOGUE.require(m).higher_is_better is not None
        and any(r["status"] == "ok" and r.get(m) is not None for r in rows)
    ]
    assert [b.metric for b in outcome.best] == expected
    assert {"miou", "latency_ms_p50", "msa"} <= set(by_metric)
    for metric, best in by_metric.items():
        higher = bool(CATALOGUE.require(metric).higher_is_better)
        assert best.greater_is_better is higher
        assert best.job == _reference_best(rows, metric, higher), metric
    assert by_metric["miou"].job == "1" and by_metric["miou"].value == pytest.approx(0.45)
    assert by_metric["latency_ms_p50"].job == "4" and by_metric["latency_ms_p50"].value == 650.0
    assert by_metric["miou"].label == "#1 amg.points_per_side=8"


def test_outcome_objective_follows_the_records_setting(tmp_path: Path) -> None:
    """``objective.metric=latency_ms_p50`` (lower is better): the objective says so and its
    best job is part of the outcome even where the headline lacks it."""
    sweep = _sweep(tmp_path / "sweep", objective_metric="latency_ms_p50")
    rows = collect(sweep)
    outcome = sweep_outcome(rows, sweep_facts(rows))
    assert outcome.objective is not None
    assert (outcome.objective.metric, outcome.objective.greater_is_better) == (
        "latency_ms_p50",
        False,
    )


def test_closing_lines_say_time_per_job_and_where_things_are(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep", reused=0)
    rows = collect(sweep)
    facts = sweep_facts(rows)
    files = [sweep / "summary.csv", sweep / "plots" / "a.png", sweep / "report.html"]
    tracked = ["MLflow: experiment 'x'", "  open: mlflow ui ..."]
    lines = closing_lines(sweep, rows, facts, 200.0, files, tracked)
    # 5 jobs, one reused from an earlier run: 4 ran in 200 s
    assert lines[0] == (
        "sweep done: 5 job(s), 4 ok, in 3 min 20 s (50.0 s per job; 1 reused from an earlier run)"
    )
    assert lines[1] == f"summary: {sweep / 'summary.csv'}"
    assert lines[2] == f"report: {sweep / 'report.html'}"
    size = sum(p.stat().st_size for p in sweep.rglob("*") if p.is_file())
    assert lines[3] == f"results: {sweep} (5 job folder(s), {size_text(size)})"
    assert lines[4:] == tracked
    # no elapsed time known (no start seen): no time, the rest unchanged
    assert closing_lines(sweep, rows, facts, None, [], [])[0] == "sweep done: 5 job(s), 4 ok"


def test_duration_and_size_text() -> None:
    assert duration_text(4.25) == "4.2 s"
    assert duration_text(185) == "3 min 05 s"
    assert duration_text(2 * 3600 + 3 * 60 + 10) == "2 h 03 min"
    assert size_text(512) == "512 B"
    assert size_text(1_700_000) == "1.7 MB"
    assert size_text(3 * 10**12) == "3000.0 GB"
