"""A prompted job's own files reach MLflow: ``per_instance.csv`` (like every ``per_*.csv`` a task
writes) and the figures its record names, against a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sam_bench.config import TrackingConfig
from sam_bench.tracking import build_tracker
from sam_bench.tracking.mlflow import figure_paths


def test_figure_paths_stay_inside_the_job_directory() -> None:
    record = {"figures": [
        {"path": "figures/overlays.png", "caption": "x"}, {"path": "top.png"},
        {"path": "/etc/passwd"}, {"path": "../other/job.png"}, {"path": ""}, "not a dict",
    ]}  # fmt: skip
    assert figure_paths(record) == [Path("figures/overlays.png"), Path("top.png")]
    assert figure_paths({}) == []


def test_per_instance_table_and_figures_are_run_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    job = tmp_path / "outputs" / "run"
    (job / "figures").mkdir(parents=True)
    (job / "figures" / "overlays.png").write_bytes(b"\x89PNG overlays")
    (job / "figures" / "not_named.png").write_bytes(b"\x89PNG")
    for name in ("per_image.csv", "per_instance.csv", "result.json"):
        (job / name).write_text("image_id\n1\n")
    record: dict[str, Any] = {
        "status": "ok", "task": "prompted",
        "job": {"num": None, "dir": str(job), "started": None, "finished": None},
        "overrides": ["task=prompted"], "config": {"task": {"name": "prompted"}},
        "weights": {"kind": "random", "label": "random"}, "metrics": {"miou_prompted": 0.5},
        "figures": [{"path": "figures/overlays.png", "caption": "prompts"}],
    }  # fmt: skip
    (job / "result.json").write_text(json.dumps(record))
    tracker = build_tracker(TrackingConfig(name="mlflow", experiment="prompted", log_masks=False))
    tracker.job_end(record, job, None)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.get_experiment_by_name("prompted")
    (run,) = client.search_runs([exp.experiment_id])
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "per_image.csv", "per_instance.csv", "figures"} <= top
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/overlays.png"}  # only what the record names
