"""Scale-out end to end (slow): the same small sweep -- real SAM 2 tiny, random weights, 2x2
grid, 1 image, 4 jobs of which two share one encoder / decoder pass -- under the default
launcher, Hydra's Ray launcher (``hydra/launcher=ray``, job by job), and sam_bench's launcher
sending units of work to Ray (``hydra.launcher.backend=ray``) and to submitit
(``hydra.launcher.backend=submitit``, ``cluster=local``) gives the same masks and accuracy
metrics, the same records and one FINISHED MLflow child run per job under one parent run.
Ray runs as a local instance on 127.0.0.1 (2 CPUs, no dashboard, a 75 MB object store).

Also: Hydra's stock ``submitit_local`` launcher with tracking, and a remote unit whose worker
process dies (its job fails with the reason, the others are kept; no job counted twice)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

pytest.importorskip("ray", reason="the `scale` extra is not installed (make install-scale)")
pytest.importorskip("submitit", reason="the `scale` extra is not installed (make install-scale)")
pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="hydra-ray-launcher is missing")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

#: 4 jobs: (fast, 0), (fast, 0.5) share one pass; (reference, 0), (reference, 0.5) run alone.
SWEEP = [
    "model.weights=random",
    "amg.points_per_side=2",
    "amg.stability_score_thresh=0",
    "amg.box_nms_thresh=1.0",
    "dataset.limit=1",
    "progress=false",
    "save_predictions=true",
    "tracking=mlflow",
    "engine=fast,reference",
    "amg.pred_iou_thresh=0,0.5",
]
#: A Ray instance on this machine, kept small. Every Ray task gets the 2 CPUs, so it runs
#: with the same 2 threads as the default launcher: CPU kernels then give bit-identical
#: results (Ray sets a task's OMP_NUM_THREADS to its CPUs; other thread counts change the
#: summation order and scores in their last bits).
RAY_INIT = [
    "+hydra.launcher.ray.init.num_cpus=2",
    "+hydra.launcher.ray.init.include_dashboard=false",
]
LAUNCHERS = {
    "default": [],
    "hydra_ray": [
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.address=local",
        *RAY_INIT,
        "+hydra.launcher.ray.remote.num_cpus=2",
    ],
    "backend_ray": ["hydra.launcher.backend=ray", "hydra.launcher.ray.num_cpus=2", *RAY_INIT],
    "backend_submitit": [
        "hydra.launcher.backend=submitit",
        "hydra.launcher.submitit.cluster=local",
        "hydra.launcher.submitit.poll_s=0.5",
    ],
}
#: Environment of every run: no usage statistics (no network), plugins importable.
ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def sweep(cwd: Path, name: str, args: list[str], env: dict[str, str] | None = None) -> Any:
    """``python -m sam_bench -m ARGS`` into ``cwd/name`` with its own MLflow store."""
    out = cwd / name
    db = cwd / f"{name}.db"
    proc = run_cli(
        ["-m", *args, f"hydra.sweep.dir={out}"],
        cwd,
        env={**ENV, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", **(env or {})},
        timeout=900,
    )
    return proc, out, f"sqlite:///{db}"


def records(out: Path) -> dict[int, dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in out.glob("*/result.json")]
    return {int(r["job"]["num"]): r for r in found}


def summary_rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def mlflow_runs(uri: str) -> tuple[Any, list[Any]]:
    """The store's single parent run and its child runs."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sam_bench")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} <= {parents[0].info.run_id}
    return parents[0], children


def accuracy(record: dict[str, Any]) -> dict[str, float]:
    """The record's metrics that are not costs (timings and memory differ between runs)."""
    info = record["metric_info"]
    return {
        k: v
        for k, v in record["metrics"].items()
        if k in info and info[k].get("kind") != "cost" and k != "objective"
    }


def same_number(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path, str]]:
    cwd = tmp_path_factory.mktemp("launchers")
    return {name: sweep(cwd, name, [*SWEEP, *extra]) for name, extra in LAUNCHERS.items()}


@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_every_launcher_completes_the_sweep_with_records_summary_and_runs(runs, name) -> None:
    proc, out, uri = runs[name]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    recs = records(out)
    assert sorted(recs) == [0, 1, 2, 3]
    assert all(r["status"] == "ok" and r["untrained"] is True for r in recs.values())
    assert len(summary_rows(out)) == 4
    assert not list(out.glob("*/.items.jsonl"))  # every per-item log folded into its record
    parent, children = mlflow_runs(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["n_ok"] == "4"
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 4
    by_dir = {Path(r.data.tags["job_dir"]).name: r for r in children}
    assert sorted(by_dir) == ["0", "1", "2", "3"]  # one run per job, none twice
    for num, rec in recs.items():
        run = by_dir[str(num)]
        assert run.data.tags["config_id"] == rec["config_id"]
        assert run.data.metrics["miou"] == pytest.approx(rec["metrics"]["miou"], rel=1e-12)


@pytest.mark.parametrize("name", ["hydra_ray", "backend_ray", "backend_submitit"])
def test_results_equal_the_default_launchers(runs, name) -> None:
    _, base, _ = runs["default"]
    proc, out, _ = runs[name]
    assert proc.returncode == 0, proc.stderr[-5000:]
    want, got = records(base), records(out)
    for num in range(4):
        a, b = want[num], got[num]
        assert b["overrides"] == a["overrides"] and b["config_id"] == a["config_id"]
        assert accuracy(a).keys() == accuracy(b).keys() and "miou" in accuracy(a)
        for key, value in accuracy(a).items():
            assert same_number(accuracy(b)[key], value), (num, key)
        pa = json.loads((base / str(num) / "predictions.json").read_text())
        pb = json.loads((out / str(num) / "predictions.json").read_text())
        assert pb == pa, num  # every mask (RLE) and score
        assert len(pa["predictions"]) > 0
    # the jobs that share a pass were computed together wherever sam_bench's launcher ran them
    grouped = [got[n]["task_info"]["grouped_with_jobs"] for n in range(4)]
    if name == "hydra_ray":  # Hydra's launcher runs job by job
        assert grouped == [None] * 4
    else:
        assert grouped == [[0, 1], [0, 1], None, None]
    # each job kept its own per-job files
    for num in range(4):
        assert (out / str(num) / ".hydra" / "overrides.yaml").is_file()
        assert (out / str(num) / "per_image.csv").is_file()


def test_remote_units_record_how_many_shared_the_machine(runs) -> None:
    """Ray: 2 CPUs, 2-CPU units: one at a time. submitit local: 3 units, all at once."""
    assert {r["environment"]["concurrent_jobs"] for r in records(runs["default"][1]).values()} == {
        1
    }
    assert {
        r["environment"]["concurrent_jobs"] for r in records(runs["backend_ray"][1]).values()
    } == {1}
    assert {
        r["environment"]["concurrent_jobs"] for r in records(runs["backend_submitit"][1]).values()
    } == {3}
    submitit_logs = list((runs["backend_submitit"][1] / ".submitit").glob("*/*_log.err"))
    assert len(submitit_logs) == 3  # one submitit job per unit of work


# ---------------------------------------------------------------------------------------------
# the toy task (no model): Hydra's submitit launcher, and workers that die

TOY = [
    "task=toy",
    "plugins=[toy_task,crash_task]",
    f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
    "progress=false",
    "dataset.limit=1",
]
SUBMITIT_LOCAL = [
    "hydra.launcher.backend=submitit",
    "hydra.launcher.submitit.cluster=local",
    "hydra.launcher.submitit.poll_s=0.5",
]
CRASH_TASK = '''
"""A task whose worker process dies on its first item, as under an out-of-memory kill."""
import dataclasses
import os

from toy_task import ToyTask
from sam_bench.registry import register


class CrashTask(ToyTask):
    spec = dataclasses.replace(ToyTask.spec, name="crash")

    def predict(self, sample, inputs, times):
        os._exit(3)


register("task", "crash", "crash_task:CrashTask")
'''


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    cwd = tmp_path_factory.mktemp("toy")
    (cwd / "crash_task.py").write_text(CRASH_TASK)
    path = os.pathsep.join(p for p in (str(PLUGINS), str(cwd), os.environ.get("PYTHONPATH")) if p)
    return cwd, {"PYTHONPATH": path}


def test_hydra_submitit_local_launcher_tracks_every_job(toy_env) -> None:
    cwd, env = toy_env
    args = [*TOY, "tracking=mlflow", "seed=1,2,3", "hydra/launcher=submitit_local"]
    proc, out, uri = sweep(cwd, "stock_submitit", args, env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert sorted(records(out)) == [0, 1, 2] and len(summary_rows(out)) == 3
    parent, children = mlflow_runs(uri)
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 3


@pytest.mark.parametrize(
    "backend",
    [
        ["hydra.launcher.backend=ray", "+hydra.launcher.ray.remote.max_retries=0", *RAY_INIT],
        SUBMITIT_LOCAL,
    ],
    ids=["ray", "submitit"],
)
def test_a_worker_that_dies_fails_its_job_with_the_reason_and_keeps_the_others(
    toy_env, backend: list[str]
) -> None:
    cwd, env = toy_env
    name = "dies_" + backend[0].split("=")[1]
    proc, out, uri = sweep(
        cwd, name, [*TOY, "tracking=mlflow", "task.name=toy,crash", *backend], env
    )
    assert proc.returncode == 1, proc.stderr[-5000:]  # a failed job: the command says so
    recs = records(out)
    assert sorted(recs) == [0, 1]
    assert recs[0]["status"] == "ok" and recs[0]["task"] == "toy"
    assert recs[1]["status"] == "failed" and "remote unit failed" in recs[1]["error"]
    assert recs[1]["config"]["task"]["name"] == "crash"
    rows = {r["job"]: r for r in summary_rows(out)}
    assert rows["1"]["status"] == "failed" and rows["1"]["error"] == recs[1]["error"]
    assert "job 1 [failed]" in proc.stderr
    parent, children = mlflow_runs(uri)
    status = {Path(r.data.tags["job_dir"]).name: r.info.status for r in children}
    assert status == {"0": "FINISHED", "1": "FAILED"}
    assert parent.info.status == "FINISHED"


def test_resume_on_a_remote_backend_computes_only_what_is_missing(toy_env) -> None:
    """A sweep on submitit whose job 1 lost its record: ``resume=true`` reuses jobs 0 and 2
    (their records are not rewritten), computes job 1 again, and logs each job once."""
    cwd, env = toy_env
    args = [*TOY, "seed=1,2,3", *SUBMITIT_LOCAL]
    proc, out, _ = sweep(cwd, "resume", [*args, "tracking=none"], env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    kept = {n: (out / str(n) / "result.json").stat().st_mtime_ns for n in (0, 2)}
    before = records(out)
    (out / "1" / "result.json").unlink()
    (out / "1" / "per_image.csv").unlink()
    proc, out, uri = sweep(cwd, "resume", [*args, "tracking=mlflow", "resume=true"], env)
    assert proc.returncode == 0, proc.stderr[-5000:]
    after = records(out)
    assert {n: r["status"] for n, r in after.items()} == {0: "ok", 1: "ok", 2: "ok"}
    assert {n: (out / str(n) / "result.json").stat().st_mtime_ns for n in (0, 2)} == kept
    assert after[1]["job"]["started"] >= before[1]["job"]["started"]
    assert after[1]["config_id"] == before[1]["config_id"]
    assert after[1]["metrics"]["toy_agreement"] == before[1]["metrics"]["toy_agreement"]
    assert len(summary_rows(out)) == 3
    parent, children = mlflow_runs(uri)
    assert sorted(Path(r.data.tags["job_dir"]).name for r in children) == ["0", "1", "2"]
    assert {r.info.status for r in children} == {"FINISHED"} and parent.info.status == "FINISHED"
