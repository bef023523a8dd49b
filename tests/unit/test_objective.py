"""The objective a job returns to Hydra's sweepers (:func:`sam_bench.run.objective`), and the
report's "Tuning" section that names the best configuration of a tuning sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fakes import amg_record_fields
from omegaconf import OmegaConf

from sam_bench.report.analysis import best_configuration, sweep_facts, tuning
from sam_bench.report.document import build_report
from sam_bench.report.summary import collect
from sam_bench.report.view import MetricView
from sam_bench.run import objective


def _cfg(**objective_settings: Any) -> Any:
    return OmegaConf.create({"objective": {"metric": "miou", "latency_budget_ms": None,
                                           "penalty": -1.0, **objective_settings}})  # fmt: skip


def _record(status: str = "ok", **metrics: Any) -> dict[str, Any]:
    return {"status": status, "metrics": {"miou": 0.6, "latency_ms_p50": 900.0, **metrics}}


def test_normal_value_is_the_metric() -> None:
    assert objective(_record(), _cfg()) == (0.6, "miou")
    assert objective(_record(), _cfg(latency_budget_ms=1000.0)) == (0.6, "miou")
    assert objective(_record(msa=0.25), _cfg(metric="msa")) == (0.25, "msa")
    # a partial job (some images failed) is still scored on the images that ran
    assert objective(_record("partial"), _cfg()) == (0.6, "miou")


def test_over_budget_scores_the_penalty() -> None:
    value, why = objective(_record(latency_ms_p50=1500.0), _cfg(latency_budget_ms=1000.0))
    assert value == -1.0
    assert why == "latency_ms_p50 1500 > budget 1000 ms"
    value, _ = objective(_record(latency_ms_p50=1500.0), _cfg(latency_budget_ms=1000, penalty=-5))
    assert value == -5.0


def test_failed_job_scores_the_penalty() -> None:
    assert objective({"status": "failed", "metrics": {}}, _cfg()) == (-1.0, "failed")
    assert objective({"status": "failed"}, _cfg(penalty=-2.5)) == (-2.5, "failed")
    # a failed job is "failed" even when it has numbers
    assert objective(_record("failed"), _cfg()) == (-1.0, "failed")


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "0.5"])
def test_non_numeric_metric_scores_the_penalty(bad: Any) -> None:
    value, why = objective(_record(miou=bad), _cfg())
    assert value == -1.0 and math.isfinite(value)
    assert why == "miou is not a number"
    assert objective(_record(), _cfg(metric="no_such_metric"))[0] == -1.0


def test_defaults_without_objective_settings() -> None:
    assert objective(_record(), OmegaConf.create({})) == (0.6, "miou")
    assert objective({"status": "failed"}, OmegaConf.create({})) == (-1.0, "failed")


# --- the report's Tuning section ---------------------------------------------------------------


def _job(
    sweep: Path,
    num: int,
    overrides: dict[str, Any],
    miou: float | None,
    latency: float,
    *,
    budget: float | None = 1000.0,
    sweep_name: str | None = "tune",
    status: str = "ok",
) -> None:
    cfg = {
        "model": {"name": "sam2.1_hiera_tiny"},
        "sweep_name": sweep_name,
        "objective": {"metric": "miou", "latency_budget_ms": budget, "penalty": -1.0},
    }
    metrics = {} if status == "failed" else {"miou": miou, "latency_ms_p50": latency}
    record: dict[str, Any] = {
        **amg_record_fields(metrics),
        "status": status,
        "error": "RuntimeError: boom" if status == "failed" else None,
        "overrides": [f"{k}={v}" for k, v in overrides.items()],
        "config": cfg,
        "environment": {"device": "cpu"},
        "weights": {"label": "ab" * 32},
        "untrained": False,
        "dataset": {"name": "synthetic", "n_images": 1},
        "metrics": metrics,
        "task_info": {},
        "item_errors": [],
    }
    value, why = objective(record, OmegaConf.create(cfg))
    record["metrics"]["objective"] = value
    record["task_info"]["objective"] = why
    job_dir = sweep / str(num)
    job_dir.mkdir(parents=True)
    (job_dir / "result.json").write_text(json.dumps(record))


@pytest.fixture
def tune_sweep(tmp_path: Path) -> Path:
    """Four trials: #1 is the best within budget, #2 is more accurate but over budget, #3 failed."""
    sweep = tmp_path / "tune"
    trials = [(0.2, 0.40, 500.0), (0.7, 0.55, 800.0), (0.9, 0.80, 4000.0), (0.5, None, 0.0)]
    for n, (thr, miou, latency) in enumerate(trials):
        status = "failed" if miou is None else "ok"
        _job(sweep, n, {"amg.pred_iou_thresh": thr, "sweep": "tune"}, miou, latency, status=status)
    return sweep


def test_objective_is_higher_is_better() -> None:
    view = MetricView.from_records([{"metrics": {"objective": 0.5}}])
    assert view.direction("objective") is True


def test_tuning_section_names_the_best_configuration(tune_sweep: Path) -> None:
    rows = collect(tune_sweep)
    assert [float(r["objective"]) for r in rows] == [0.40, 0.55, -1.0, -1.0]
    assert best_configuration(rows, "objective")["job"] == "1"
    build_report(tune_sweep)
    md = (tune_sweep / "report.md").read_text()
    section = md.split("## Tuning")[1].split("\n## ")[0]
    assert md.index("## Overview") < md.index("## Tuning") < md.index("## Best configuration")
    assert "maximise miou with a p50 latency of at most 1000 ms" in section
    assert "Best configuration: job #1, objective 0.55 (miou)" in section
    assert "amg.pred\\_iou\\_thresh=0.7" in section.split("Best configuration:")[1].split("\n")[0]
    penalised = section.split("Penalised trials:")[1]
    assert "| #2 | -1 | latency\\_ms\\_p50 4000 &gt; budget 1000 ms |" in penalised
    assert "| #3 | -1 | failed |" in penalised
    assert "| #0 |" not in penalised and "| #1 |" not in penalised
    assert "Tuning" in (tune_sweep / "report.html").read_text()


def test_every_trial_penalised_is_said(tmp_path: Path) -> None:
    sweep = tmp_path / "tune"
    for n in range(2):
        _job(sweep, n, {"amg.pred_iou_thresh": n / 2}, 0.5, 5000.0)
    build_report(sweep)
    section = (sweep / "report.md").read_text().split("## Tuning")[1].split("\n## ")[0]
    assert "The best objective is the penalty" in section
    assert "2 trials tie at this objective (#0, #1)" in section


def test_plain_sweep_has_no_tuning_section(tmp_path: Path) -> None:
    sweep = tmp_path / "grid"
    for n in range(2):
        _job(sweep, n, {"amg.pred_iou_thresh": n / 2}, 0.5, 5000.0, budget=None, sweep_name=None)
    rows = collect(sweep)
    assert tuning(sweep, rows, sweep_facts(rows)) is None
    build_report(sweep)
    assert "## Tuning" not in (sweep / "report.md").read_text()
    # Optuna's result file alone makes it a tuning run (a study over the plain objective)
    (sweep / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  amg.pred_iou_thresh: 0.0\nbest_value: 0.5\n"
    )
    build_report(sweep)
    section = (sweep / "report.md").read_text().split("## Tuning")[1].split("\n## ")[0]
    assert "Best configuration: job #0, objective 0.5 (miou)" in section
    assert "Optuna's study (optimization\\_results.yaml): best value 0.5" in section
