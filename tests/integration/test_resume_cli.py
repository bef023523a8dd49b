"""Reruns into a sweep folder: refused without resume=true, finished work reused with it; and
sweeps killed with SIGKILL that resume without losing or repeating work (slow)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def toy(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The test-only toy task (no model: seconds per sweep)."""
    return run_cli(
        ["-m", "task=toy", "plugins=[toy_task]", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
         "progress=false", "tracking=none", "dataset.limit=1,2", *args],
        cwd, env={"PYTHONPATH": str(PLUGINS)}, timeout=300,
    )  # fmt: skip


def test_rerun_is_refused_and_resume_finds_the_folder(tmp_path: Path) -> None:
    first = toy(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (sweep,) = [p.parent for p in (tmp_path / "multirun").rglob("multirun.yaml")]
    records = {p: p.read_bytes() for p in sweep.glob("*/result.json")}
    assert len(records) == 2
    # the same sweep into the same folder, without resume: refused, nothing touched
    again = toy(tmp_path, f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2 and "resume=true" in again.stderr
    assert "Traceback" not in again.stderr
    assert {p: p.read_bytes() for p in sweep.glob("*/result.json")} == records
    # resume=true without a folder: the most recent sweep with the same overrides
    resumed = toy(tmp_path, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resume: continuing the sweep in {sweep}" in resumed.stdout
    assert {p: p.read_bytes() for p in sweep.glob("*/result.json")} == records  # reused as is
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 2 and "resume" not in rows[0]  # not an override column
    # other overrides: nothing to resume, one clear message
    none = toy(tmp_path, "resume=true", "seed=5")
    assert none.returncode == 2 and "found no sweep folder" in none.stderr


def test_resume_with_other_overrides_stops_before_any_job(tmp_path: Path) -> None:
    """resume=true into a folder whose jobs were other configurations: one message naming each
    job and the settings that differ, exit 2, and every finished record as it was; a job whose
    folder holds another configuration's record (a sweep the check cannot foresee) fails
    without touching it."""
    sweep = tmp_path / "sweep"
    first = toy(tmp_path, f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    records = {p: p.read_bytes() for p in sweep.glob("*/result.json")}
    other = toy(tmp_path, f"hydra.sweep.dir={sweep}", "resume=true", "seed=5")
    assert other.returncode == 2, other.stderr[-3000:]
    assert "Traceback" not in other.stderr
    assert "job 0: ran -, would now run seed=5" in other.stderr
    assert "job 1: ran -, would now run seed=5" in other.stderr
    assert "another hydra.sweep.dir" in other.stderr
    assert {p: p.read_bytes() for p in sweep.glob("*/result.json")} == records
    # the same sweep resumed: both reused as they are
    same = toy(tmp_path, f"hydra.sweep.dir={sweep}", "resume=true")
    assert same.returncode == 0, same.stderr[-3000:]
    assert {p: p.read_bytes() for p in sweep.glob("*/result.json")} == records


def test_a_job_never_rewrites_another_configurations_record(tmp_path: Path) -> None:
    """The job-level guard: job 1's folder holds the record of job 0's configuration (as a
    sweep whose jobs the sweep-level check cannot list would find it)."""
    import shutil

    sweep = tmp_path / "sweep"
    first = toy(tmp_path, f"hydra.sweep.dir={sweep}")
    assert first.returncode == 0, first.stderr[-3000:]
    # job 1 (dataset.limit=2) now holds job 0's finished record and overrides
    shutil.copytree(sweep / "0", sweep / "1", dirs_exist_ok=True)
    kept = (sweep / "1" / "result.json").read_bytes()
    (sweep / "1" / "result.json").write_bytes(kept)
    record = json.loads(kept)
    record["overrides"] = [
        o.replace("dataset.limit=1", "dataset.limit=2") for o in record["overrides"]
    ]
    (sweep / "1" / "result.json").write_text(json.dumps(record))  # passes the override check
    kept = (sweep / "1" / "result.json").read_bytes()
    again = toy(tmp_path, f"hydra.sweep.dir={sweep}", "resume=true")
    assert again.returncode != 0
    assert "holds the finished record of another configuration" in again.stdout + again.stderr
    assert "dataset" in again.stdout + again.stderr  # the setting that differs is named
    assert (sweep / "1" / "result.json").read_bytes() == kept


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache"), "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "sam_bench", *args, "progress=false"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip


def _kill_when(proc: subprocess.Popen[str], ready, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "the sweep never reached the kill point"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


TINY = ["model.weights=random", "amg.stability_score_thresh=0", "amg.box_nms_thresh=1.0"]


@pytest.mark.slow
def test_grouped_sweep_killed_after_its_first_image_resumes(tmp_path: Path) -> None:
    args = ["-m", *TINY, "amg.points_per_side=4", "amg.pred_iou_thresh=0,0.5",
            "dataset.limit=3", "save_predictions=true", "tracking=none"]  # fmt: skip
    out = tmp_path / "OUT"
    proc = _start([*args, f"hydra.sweep.dir={out}"], tmp_path)
    # header + the first image, for both jobs of the group
    _kill_when(proc, lambda: all(_lines(out / j / ".items.jsonl") >= 2 for j in "01"))
    assert not list(out.glob("*/result.json"))
    resumed = run_cli([*args, f"hydra.sweep.dir={out}", "resume=true", "progress=false"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = tmp_path / "WHOLE"
    plain = run_cli([*args, f"hydra.sweep.dir={whole}", "progress=false"], tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]
    for job in "01":
        rec = json.loads((out / job / "result.json").read_text())
        assert rec["task_info"]["resume"]["reused_images"] >= 1
        assert rec["task_info"]["resume"]["computed_images"] <= 2
        assert rec["metrics"]["n_items_ok"] == 3 and not (out / job / ".items.jsonl").exists()
        ref = json.loads((whole / job / "result.json").read_text())
        for key in ("miou", "msa", "ar1000", "mask_count_mean", "coverage"):
            assert rec["metrics"][key] == pytest.approx(ref["metrics"][key], abs=1e-12), key
        mine = json.loads((out / job / "predictions.json").read_text())["predictions"]
        theirs = json.loads((whole / job / "predictions.json").read_text())["predictions"]
        key = lambda p: (p["image_id"], p["segmentation"]["counts"])  # noqa: E731
        assert sorted(map(key, mine)) == sorted(map(key, theirs))


@pytest.mark.slow
def test_six_job_sweep_killed_after_two_jobs_resumes_with_one_parent(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "OUT"
    args = ["-m", *TINY, "engine=reference", "amg.points_per_side=2,3,4",
            "amg.pred_iou_thresh=0,0.5", "dataset.limit=1", "tracking=mlflow",
            f"tracking.uri={uri}", f"hydra.sweep.dir={out}"]  # fmt: skip
    proc = _start(args, tmp_path)
    _kill_when(proc, lambda: len(list(out.glob("*/result.json"))) >= 2)
    done = {p.parent.name: p.read_bytes() for p in out.glob("*/result.json")}
    resumed = run_cli([*args, "resume=true", "progress=false"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    for job, data in done.items():  # the finished jobs were not run again
        assert (out / job / "result.json").read_bytes() == data
    assert resumed.stdout.count("reused (finished earlier") + resumed.stderr.count(
        "reused (finished earlier"
    ) >= len(done)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sam_bench")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["config_id"] for r in finished) == sorted(
        r["config_id"] for r in rows
    )
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_sweep_stops_cleanly_and_resumes(tmp_path: Path, sig: int) -> None:
    """Ctrl-C (SIGINT) or SIGTERM during the second of two jobs: one line saying how to
    resume, exit 130, no traceback, the first job's record intact, the MLflow parent KILLED;
    the printed command resumes it to the end (parent FINISHED, one child run per job)."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    sweep, db = tmp_path / "sweep", tmp_path / "m.db"
    args = ["-m", "model.weights=random", "amg.points_per_side=4", "amg.crop_n_layers=0,1",
            "dataset.limit=3", "tracking=mlflow", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    env = {**os.environ, "SAM_BENCH_CACHE": str(tmp_path / "ckpt"), "PYTHONPATH": str(REPO)}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sam_bench", *args, "progress=false"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = sweep / "0" / "result.json"
    deadline = time.monotonic() + 600
    while not first.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "never reached job 1"
        time.sleep(0.2)
    kept = first.read_bytes()
    time.sleep(2)  # into the second job
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    name = "SIGINT" if sig == signal.SIGINT else "SIGTERM"
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith(f"interrupted ({name})")]
    assert "1 of 2 jobs finished" in line and "resume=true" in line
    assert first.read_bytes() == kept and json.loads(kept)["status"] == "ok"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (exp,) = [e for e in client.search_experiments() if e.name == "sam_bench"]
    (parent,) = [r for r in client.search_runs([exp.experiment_id])
                 if r.data.tags.get("sam_bench.role") == "sweep"]  # fmt: skip
    assert parent.info.status == "KILLED"
    # the printed command, as printed, resumes the sweep
    command = line.split("resume with: ", 1)[1].split()
    assert command[:3] == ["python", "-m", "sam_bench"]
    again = subprocess.run(
        [sys.executable, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert first.read_bytes() == kept
    runs = client.search_runs([exp.experiment_id])
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["job_num"] for r in children) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in children)
