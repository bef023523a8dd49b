"""A single run's MLflow logging, in the helper process (``tracking.background=true``, the
default) and in the job's process (``false``): the same run is logged, and a store that
cannot be opened fails the command (or warns, ``tracking.required=false``) the same way. The
toy task builds no model, so each run takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def _single_run(cwd: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PLUGINS), env.get("PYTHONPATH", ""), str(REPO)) if p
    )
    args = [
        "task=toy", "plugins=[toy_task]", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
        "progress=false", "tracking=mlflow", "dataset.limit=2", f"hydra.run.dir={out}", *extra,
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "sam_bench", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


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
