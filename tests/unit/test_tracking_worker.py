"""A single run's MLflow logging in a helper process (:mod:`sam_bench.tracking.worker`): the
helper logs exactly what the job's own process logs, reports the same errors, and exits when
the job goes away."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from test_tracking_mlflow import _job, _runs

from sam_bench.config import TrackingConfig
from sam_bench.run import _tracking_worker
from sam_bench.tracking import build_tracker, safely
from sam_bench.tracking import worker as worker_module
from sam_bench.tracking.worker import TrackingWorker, spare_core

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")

#: Tags that differ between any two runs (their ids, when and where they were logged from).
RUN_SPECIFIC = {"mlflow.source.name", "mlflow.source.type", "mlflow.user"}


def _tracking(experiment: str, **more: Any) -> dict[str, Any]:
    return {**vars(TrackingConfig(name="mlflow", experiment=experiment)), **more}


def _logged(client: Any, experiment: str) -> dict[str, Any]:
    (run,) = _runs(client, experiment)
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "start": run.info.start_time,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "tags": {k: v for k, v in run.data.tags.items() if k not in RUN_SPECIFIC},
        "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
        "masks": sorted(a.path for a in client.list_artifacts(run.info.run_id, "masks")),
    }


@pytest.mark.parametrize("status", ["ok", "failed"])
def test_the_helper_logs_what_the_job_process_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    job_dir = tmp_path / "outputs" / "run"
    record = _job(job_dir, 0, status=status, nan_metric=math.nan, latency_ms_p50=12.5)
    record["job"]["num"] = None
    record["task_info"] = {"warmup": ("light", 256)}  # a tuple: JSON makes it a list

    in_process = build_tracker(TrackingConfig(name="mlflow", experiment="here"))
    assert safely("logging the job", in_process.job_end, record, job_dir, None) is None
    worker = TrackingWorker.start(_tracking("helper"), tmp_path)
    assert worker is not None
    worker.wait_ready()
    assert worker.job_end(record, job_dir) is None

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    here, helper = _logged(client, "here"), _logged(client, "helper")
    assert here["params"] and here["metrics"] and here["artifacts"]
    assert helper == here
    assert worker._proc.returncode == 0


def test_the_helper_reports_the_error_the_job_process_would(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = "nosuch://store"  # a scheme MLflow does not know: opening the store fails at once
    job_dir = tmp_path / "run"
    record = _job(job_dir, 0)
    record["job"]["num"] = None
    in_process = build_tracker(TrackingConfig(name="mlflow", uri=uri, retry_timeout_s=0))
    expected = safely("logging the job", in_process.job_end, record, job_dir, None)
    assert expected is not None and expected.startswith("logging the job failed: ")

    worker = TrackingWorker.start(_tracking(None, uri=uri, retry_timeout_s=0), tmp_path)
    assert worker is not None
    assert worker.job_end(record, job_dir) == expected


def test_the_helper_exits_when_the_job_goes_away(tmp_path: Path) -> None:
    worker = TrackingWorker.start(_tracking("gone"), tmp_path)
    assert worker is not None
    worker.wait_ready()  # MLflow imported, store opened: the helper now waits for the record
    t0 = time.monotonic()
    worker.close()  # end of input, as when the job fails or is interrupted
    assert worker._proc.returncode == 0 and time.monotonic() - t0 < 10


def test_a_job_gone_before_the_store_is_open_leaves_no_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    worker = TrackingWorker.start(_tracking("early"), tmp_path)
    assert worker is not None
    proc = worker._proc
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()  # the job is gone before the store is open: no one reads the answer
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0
    assert "Traceback" not in capfd.readouterr().err


def test_an_interrupted_job_stops_the_helper_at_once(tmp_path: Path) -> None:
    worker = TrackingWorker.start(_tracking("interrupted"), tmp_path)
    assert worker is not None
    worker.abort()
    assert worker._proc.returncode is not None and worker._proc.returncode != 0


def _cfg(**over: Any) -> Any:
    base: dict[str, Any] = {"dry_run": False, "tracking": _tracking(None)}
    for key, value in over.items():
        if key == "tracking":
            base["tracking"] = {**base["tracking"], **value}
        else:
            base[key] = value
    return OmegaConf.create(base)


@pytest.mark.parametrize(
    ("why", "cfg", "sweep_dir"),
    [
        ("a sweep", _cfg(), Path("multirun/x")),
        ("a dry run", _cfg(dry_run=True), None),
        ("tracking=none", _cfg(tracking={"name": "none"}), None),
        ("tracking.background=false", _cfg(tracking={"background": False}), None),
    ],
)
def test_no_helper_where_it_saves_nothing(why: str, cfg: Any, sweep_dir: Path | None) -> None:
    assert _tracking_worker(cfg, sweep_dir) is None, why


def test_a_single_run_with_mlflow_gets_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    worker = _tracking_worker(_cfg(tracking={"background": True}), None)
    assert isinstance(worker, TrackingWorker)
    worker.abort()


def test_background_null_starts_the_helper_only_with_a_spare_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _cfg().tracking.background is None  # the default
    monkeypatch.setattr(worker_module, "spare_core", lambda: False)
    assert _tracking_worker(_cfg(), None) is None
    monkeypatch.setattr(worker_module, "spare_core", lambda: True)
    worker = _tracking_worker(_cfg(), None)
    assert isinstance(worker, TrackingWorker)
    worker.abort()


@pytest.mark.parametrize(
    ("cores", "load", "spare"),
    [(2, 0.4, True), (2, 1.0, False), (2, 6.5, False), (16, 3.0, True), (1, 0.0, False)],
)
def test_a_spare_core_is_one_the_last_minute_left_idle(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, spare: bool
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert spare_core() is spare
