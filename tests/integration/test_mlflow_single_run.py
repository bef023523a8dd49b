"""A single run's MLflow logging, in the helper process (``tracking.background=true``) and in
the job's process (``false``): the same run is logged, a store that cannot be opened fails
the command (or warns, ``tracking.required=false``) the same way, and an interrupt stops the
command as without the helper. The toy task builds no model, so each run takes seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _command(cwd: Path, out: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PLUGINS), env.get("PYTHONPATH", ""), str(REPO)) if p
    )
    args = [
        "task=toy", "plugins=[toy_task]", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
        "progress=false", "tracking=mlflow", "dataset.limit=2", f"hydra.run.dir={out}", *extra,
    ]  # fmt: skip
    return [sys.executable, "-m", "sam_bench", *args], env


def _single_run(cwd: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd, env = _command(cwd, out, *extra)
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_helper_and_the_job_process_log_the_same_run(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    runs = {}
    for background in ("true", "false"):
        proc = _single_run(
            tmp_path, tmp_path / background, f"tracking.background={background}",
            f"tracking.experiment=bg-{background}",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert "tracking" not in proc.stderr, proc.stderr[-3000:]
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        exp = client.get_experiment_by_name(f"bg-{background}")
        assert exp is not None, proc.stderr[-3000:]
        (run,) = client.search_runs([exp.experiment_id])
        runs[background] = run
    helper, here = runs["true"], runs["false"]
    assert helper.info.status == here.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in helper.data.tags
    assert set(helper.data.params) == set(here.data.params)
    differ = {k for k, v in helper.data.params.items() if here.data.params[k] != v}
    assert differ == {"tracking.background", "tracking.experiment"}
    assert set(helper.data.metrics) == set(here.data.metrics) and helper.data.metrics
    assert set(helper.data.tags) == set(here.data.tags)
    assert helper.data.tags["config_id"] != ""


@pytest.mark.parametrize("background", ["true", "false"])
def test_a_store_that_cannot_be_opened_fails_the_single_run(
    tmp_path: Path, background: str
) -> None:
    pytest.importorskip("mlflow")
    for required, code in (("true", 1), ("false", 0)):
        out = tmp_path / f"run-{required}"
        proc = _single_run(
            tmp_path, out, "tracking.uri=nosuch://store", f"tracking.required={required}",
            f"tracking.background={background}",
        )  # fmt: skip
        assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-3000:]
        assert (out / "result.json").is_file()  # the record is complete
        said = proc.stdout + proc.stderr  # the warning is logged (stdout), the error on stderr
        assert "tracking: logging the job failed: UnsupportedModelRegistry" in said, said[-3000:]
        assert ("error: tracking: logging the job failed: " in proc.stderr) == bool(code)


def _running(psutil: Any, proc: Any) -> bool:
    """Whether ``proc`` still runs (an exited process that nobody reaped yet does not)."""
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_single_run_interrupted_while_its_helper_starts(tmp_path: Path, sig: int) -> None:
    """Ctrl-C or SIGTERM while the helper imports MLflow and creates the store: the command
    stops as without the helper (exit 130, one line), the helper exits on its own, and the
    store it was creating works for the next run."""
    pytest.importorskip("mlflow")
    psutil = pytest.importorskip("psutil")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "stopped"
    cmd, env = _command(tmp_path, out, "tracking.background=true")
    job = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    helpers: list[Any] = []
    # the command starts the helper before it imports Hydra; the job has begun (and handles
    # signals) once Hydra wrote its configuration
    started = out / ".hydra" / "config.yaml"
    while job.poll() is None and time.monotonic() < deadline:
        helpers = psutil.Process(job.pid).children()
        if helpers and started.is_file():
            break
        time.sleep(0.01)
    assert helpers, "the single run started no MLflow helper"
    job.send_signal(sig)
    _, err = job.communicate(timeout=300)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert job.returncode == 130, err[-3000:]
    assert f"interrupted ({name})" in err and "Traceback" not in err, err[-3000:]
    (helper,) = helpers
    deadline = time.monotonic() + 300
    while _running(psutil, helper) and time.monotonic() < deadline:  # exits on its own
        time.sleep(0.1)
    assert not _running(psutil, helper), "the helper outlived the job"

    proc = _single_run(tmp_path, tmp_path / "next", "tracking.experiment=next")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("next")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
