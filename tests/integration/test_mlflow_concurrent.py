"""Sweeps started at once on one fresh MLflow SQLite store: every sweep is tracked (the store
is created once, under a file lock), and a sweep whose tracking failed says so and exits
non-zero. The toy task builds no model, so each sweep takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
N_SWEEPS = 3


def _launch(cwd: Path, out: Path, db: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PLUGINS), env.get("PYTHONPATH", ""), str(REPO)) if p
    )
    args = [
        "-m", "task=toy", "plugins=[toy_task]", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
        "progress=false", "tracking=mlflow", "dataset.limit=1,2", f"hydra.sweep.dir={out}",
        *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "sam_bench", *args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sweeps_started_at_once_on_a_fresh_store_are_all_tracked(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    outs = [tmp_path / f"sweep{i}" for i in range(N_SWEEPS)]
    procs = [_launch(tmp_path, out, db) for out in outs]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("sam_bench")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sam_bench.role") == "sweep"]
    assert sorted(r.data.tags["sweep_dir"] for r in parents) == sorted(
        str(o.resolve()) for o in outs
    )
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 2, parent.data.tags["sweep_dir"]
        assert all(r.info.status == "FINISHED" for r in [parent, *children])


def test_a_sweep_whose_tracking_failed_says_so_and_exits_1(tmp_path: Path) -> None:
    """The store cannot be opened (a URI scheme MLflow does not know): every record is
    written, the sweep ends naming what was not tracked and exits 1; with
    tracking.required=false, 0."""
    pytest.importorskip("mlflow")
    for required, code in (("true", 1), ("false", 0)):
        out = tmp_path / f"sweep-{required}"
        proc = _launch(
            tmp_path, out, tmp_path / "unused.db", "tracking.uri=nosuch://store",
            f"tracking.required={required}",
        )  # fmt: skip
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == code, stdout[-2000:] + stderr[-3000:]
        assert len(list(out.glob("*/result.json"))) == 2  # the records are complete
        head = "error" if code else "warning"
        assert f"{head}: tracking failed for 1 part(s) of this sweep" in stderr
        assert "the sweep's parent run: starting the sweep failed" in stderr
