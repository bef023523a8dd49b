"""A single run's MLflow logging in a helper process (:mod:`sam_bench.tracking.worker`): the
helper logs exactly what the job's own process logs, reports the same errors, exits on its
own when the job goes away, and leaves the logging to the job's process when it cannot help."""

from __future__ import annotations

import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from test_tracking_mlflow import _job, _runs

from sam_bench.config import TrackingConfig
from sam_bench.run import JobSpec, _track, _tracking_worker
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


def _exited(proc: Any, timeout_s: float) -> int:
    """The helper's exit status (it must exit on its own within ``timeout_s``)."""
    try:
        return int(proc.wait(timeout=timeout_s))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the helper was still running after {timeout_s} s") from None


def test_a_job_gone_before_the_store_is_open_leaves_no_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    worker = TrackingWorker.start(_tracking("early"), tmp_path)
    assert worker is not None
    worker.detach()  # the job is gone before the store is open: no one reads the answer
    assert _exited(worker._proc, 300) == 0
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception" not in err, err
    assert (tmp_path / "mlflow.db").is_file()  # the store was opened to the end, not cut off


def test_a_helper_not_ready_in_time_is_left_to_finish_alone(tmp_path: Path) -> None:
    """A store that does not open (here: another process holds its lock) within the
    timeout: the job goes on without the helper, which exits once it could open it."""
    fcntl = pytest.importorskip("fcntl")
    with open(tmp_path / "mlflow.db.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        worker = TrackingWorker.start(_tracking("locked"), tmp_path)
        assert worker is not None
        t0 = time.monotonic()
        assert worker.wait_ready(timeout_s=1.0) is False
        assert time.monotonic() - t0 < 10
        assert worker.wait_ready() is False  # asked once
        assert worker._proc.poll() is None  # not killed: it holds nothing half-done
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    assert _exited(worker._proc, 300) == 0
    assert worker.job_end({}, tmp_path).endswith("the MLflow helper process was not ready")


def test_a_helper_gone_before_it_is_ready_leaves_the_logging_to_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _cfg(tracking={"background": True, "experiment": "crashed"})
    worker = _tracking_worker(cfg, None)
    assert worker is not None
    worker._proc.kill()  # the helper crashed before it was ready
    worker._proc.wait()
    job_dir = tmp_path / "outputs" / "run"
    record = _job(job_dir, 0)
    record["job"]["num"] = None
    spec = JobSpec(cfg, job_dir, [], None, None)
    assert _track(spec, record, worker) is None  # logged by the job's own process
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = _runs(client, "crashed")
    assert run.info.status == "FINISHED" and run.data.metrics


def test_a_helper_gone_while_logging_is_a_tracking_failure(tmp_path: Path) -> None:
    worker = TrackingWorker.start(_tracking("crash"), tmp_path)
    assert worker is not None
    assert worker.wait_ready()
    worker._proc.kill()  # the helper dies with the record sent
    error = worker.job_end({"status": "ok"}, tmp_path)
    assert error == "logging the job failed: the MLflow helper process exited (status -9)"


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
        (
            "a tracking config that does not resolve (validation reports it)",
            _cfg(tracking={"background": True, "uri": "${nosuch.key}"}),
            None,
        ),
    ],
)
def test_no_helper_where_it_saves_nothing(why: str, cfg: Any, sweep_dir: Path | None) -> None:
    assert _tracking_worker(cfg, sweep_dir) is None, why


def test_a_single_run_with_mlflow_gets_the_helper_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _cfg().tracking.background is True  # the default
    monkeypatch.setattr(worker_module, "spare_core", lambda: False)  # whatever the load
    worker = _tracking_worker(_cfg(), None)
    assert isinstance(worker, TrackingWorker)
    worker.detach()
    assert _exited(worker._proc, 300) == 0


def test_background_null_starts_the_helper_only_with_a_spare_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    auto = _cfg(tracking={"background": None})
    monkeypatch.setattr(worker_module, "spare_core", lambda: False)
    assert _tracking_worker(auto, None) is None
    monkeypatch.setattr(worker_module, "spare_core", lambda: True)
    worker = _tracking_worker(auto, None)
    assert isinstance(worker, TrackingWorker)
    worker.detach()
    assert _exited(worker._proc, 300) == 0


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


@pytest.fixture
def no_early() -> Any:
    """Nothing started early is left behind by a test."""
    yield
    worker_module.discard_early()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], True),
        (["dataset.limit=1", "amg.points_per_side=4", "model.weights=random"], True),
        (["--run", "tracking=mlflow", "tracking.background=true", "+x.y=1"], True),
        (["tracking.background=null", "tracking.background=true"], True),  # the last one wins
        (["-m", "amg.points_per_side=4,8"], False),
        (["--multirun"], False),
        (["--help"], False),
        (["--cfg", "job"], False),
        (["-cn", "other"], False),
        (["sweep=quickstart"], False),
        (["hydra.mode=MULTIRUN"], False),
        (["dry_run=true"], False),
        (["dry_run=True"], False),
        (["tracking=none"], False),
        (["tracking.name=none"], False),
        (["tracking.background=false"], False),
        (["~tracking"], False),
    ],
)
def test_the_command_line_tells_when_a_helper_is_expected(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: bool
) -> None:
    monkeypatch.setattr(worker_module, "spare_core", lambda: False)  # true needs no spare core
    assert worker_module.expected(argv) is expected


def test_background_null_on_the_command_line_expects_a_helper_with_a_spare_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for spare in (False, True):
        monkeypatch.setattr(worker_module, "spare_core", lambda spare=spare: spare)
        assert worker_module.expected(["tracking.background=null"]) is spare


def test_a_helper_started_early_is_taken_over_with_the_jobs_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_early: None
) -> None:
    """``prestart`` runs before the configuration is known; the job takes that process over
    and it logs with the environment the job has then (here a store named only after it
    started), exactly as a helper started by the job."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    worker_module.prestart(["dataset.limit=1"])
    (early,) = worker_module._EARLY
    assert early.poll() is None
    later = tmp_path / "named-later.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{later}")
    worker = _tracking_worker(_cfg(tracking={"experiment": "early"}), None)
    assert worker is not None and worker._proc is early and worker_module._EARLY == []
    job_dir = tmp_path / "outputs" / "run"
    record = _job(job_dir, 0)
    record["job"]["num"] = None
    assert worker.job_end(record, job_dir) is None
    assert early.returncode == 0
    (run,) = _runs(MlflowClient(f"sqlite:///{later}"), "early")
    assert run.info.status == "FINISHED" and run.data.metrics
    assert not (tmp_path / "mlflow.db").exists()  # not the store of the helper's start


@pytest.mark.parametrize(
    ("why", "cfg", "sweep_dir"),
    [("a dry run", _cfg(dry_run=True), None), ("a sweep", _cfg(), Path("multirun/x"))],
)
def test_a_helper_started_early_that_the_job_does_not_need_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_early: None, why: str, cfg: Any,
    sweep_dir: Path | None,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    worker_module.prestart([])  # e.g. a preset the command line does not show
    (early,) = worker_module._EARLY
    assert _tracking_worker(cfg, sweep_dir) is None, why
    assert worker_module._EARLY == [] and early.returncode == -9  # killed, reaped
    assert not (tmp_path / "mlflow.db").exists()  # it had opened nothing


def test_no_helper_is_started_early_where_the_command_line_rules_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_early: None
) -> None:
    monkeypatch.chdir(tmp_path)
    worker_module.prestart(["-m", "amg.points_per_side=4,8"])
    assert worker_module._EARLY == []
    worker_module.prestart([])
    worker_module.prestart([])  # once per process
    assert len(worker_module._EARLY) == 1
