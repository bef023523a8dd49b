"""``sweep=tune``: Hydra's Optuna sweeper searching AMG settings through real
``python -m sam_bench -m`` subprocesses (CPU, random weights, tiny settings). Every trial is an
ordinary job (record, ``summary.csv`` row, MLflow run) and the report names the best one."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from hydra import compose

if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
    pytest.skip("hydra-optuna-sweeper is not installed", allow_module_level=True)

N_TRIALS = 3

#: One image, a 2x2 grid (fixed: it takes points_per_side out of the search space), no warmup.
TINY = [
    "model.weights=random",
    "dataset.limit=1",
    "amg.points_per_side=2",
    "warmup=false",
    "progress=false",
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def tune(cwd: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["-m", "sweep=tune", f"hydra.sweeper.n_trials={N_TRIALS}", *TINY, *extra]
    return run_cli([*args, f"hydra.sweep.dir={out}"], cwd, timeout=600)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    cwd = tmp_path_factory.mktemp("cwd")
    out = cwd / "OUT"
    return tune(cwd, out, "tracking=none"), out


def test_preset_composes_an_optuna_study(hydra_conf: None) -> None:
    cfg = compose("config", overrides=["sweep=tune"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert sweeper.direction == "maximize" and sweeper.max_failure_rate == 1.0
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed is not None
    assert set(sweeper.params) >= {
        "amg.pred_iou_thresh",
        "amg.stability_score_thresh",
        "amg.box_nms_thresh",
    }
    assert cfg.sweep_name == "tune" and cfg.objective.metric == "miou"
    assert cfg.objective.latency_budget_ms > 0


def test_trials_are_jobs_and_the_report_names_the_best(tuned) -> None:
    proc, out = tuned
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_csv(out / "summary.csv")
    assert len(rows) == N_TRIALS
    assert [r["job"] for r in rows] == [str(n) for n in range(N_TRIALS)]
    for r in rows:
        assert r["status"] == "ok" and "sweep=tune" in r["overrides"]
        assert math.isfinite(float(r["objective"]))
        record = json.loads((out / r["job"] / "result.json").read_text())
        assert record["metrics"]["objective"] == float(r["objective"])
        assert record["task_info"]["objective"]  # why: the metric's name or the penalty's reason
        assert record["config"]["sweep_name"] == "tune"
    # Optuna sampled the thresholds: the trials differ
    assert len({r["amg.pred_iou_thresh"] for r in rows}) == N_TRIALS
    assert (out / "optimization_results.yaml").is_file()

    objectives = [float(r["objective"]) for r in rows]
    best = rows[objectives.index(max(objectives))]["job"]  # ties: the first
    md = (out / "report.md").read_text()
    assert "## Tuning" in md
    line = next(x for x in md.splitlines() if x.startswith("Best configuration: "))
    assert line.startswith(f"Best configuration: job #{best}, objective ")
    threshold = rows[int(best)]["amg.pred_iou_thresh"]
    assert f"amg.pred\\_iou\\_thresh={threshold}" in line


def test_failed_trials_do_not_stop_the_study(tmp_path: Path) -> None:
    """Out-of-range thresholds: every trial fails its config check (no model is built), scores
    the finite penalty, and the study still runs all its trials; they land in MLflow too."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "OUT"
    proc = tune(tmp_path, out, "amg.pred_iou_thresh=interval(1.5, 2.0)", "tracking=mlflow")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # jobs failed
    assert "Traceback" not in proc.stderr
    rows = read_csv(out / "summary.csv")
    assert len(rows) == N_TRIALS
    assert all(r["status"] == "failed" and float(r["objective"]) == -1.0 for r in rows)
    section = (out / "report.md").read_text().split("## Tuning")[1].split("\n## ")[0]
    assert "No trial finished cleanly" in section
    assert len(re.findall(r"^\| #\d \| -1 \| failed \|", section, re.M)) == N_TRIALS

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tune")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == N_TRIALS
    assert all(r.data.metrics["objective"] == -1.0 for r in children)
