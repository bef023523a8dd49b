"""``tracking=mlflow`` end to end: real ``python -m sam_bench -m`` sweeps (CPU, random weights)
logging into a SQLite store (basic and joblib launchers) and into a real ``mlflow server``
started on 127.0.0.1 by the test."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")

#: Tiny jobs (~10 s each on CPU): 2x2 grid, one image, every candidate mask kept.
TINY = [
    "tracking=mlflow",
    "model.weights=random",
    "amg.points_per_side=2",
    "amg.stability_score_thresh=0",
    "amg.box_nms_thresh=1.0",
    "dataset.limit=1",
    "progress=false",
]


sam_bench = run_cli


def runs_by_role(client: MlflowClient, experiment: str = "sam_bench") -> tuple[Any, list[Any]]:
    """The experiment's single parent run and its child runs (asserting that structure)."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [(r.info.run_name, r.data.tags) for r in parents]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    return parents[0], children


def check_finished_child(client: MlflowClient, run: Any) -> None:
    """A job's run as the issue asks: finished, config params, metrics, tags, artifacts."""
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    assert run.data.params["amg.points_per_side"] == "2"
    assert run.data.params["model.name"] == "sam2.1_hiera_tiny"
    assert run.data.params["dataset.limit"] == "1"
    # every finite metric of the job's record, with its value (and nothing else)
    record = json.loads((Path(run.data.tags["job_dir"]) / "result.json").read_text())
    expected = {
        k: float(v)
        for k, v in record["metrics"].items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    logged = {k: v for k, v in run.data.metrics.items() if k != "job_duration_s"}
    assert logged.keys() == expected.keys()
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, rel=1e-12), key
    assert {"miou", "latency_ms_p50", "objective"} <= logged.keys()
    assert run.data.tags["config_id"] == record["config_id"]
    tags = run.data.tags
    assert tags["weights"] == "random"
    assert tags["device"] == "cpu" and tags["dtype"] == "fp32"
    for key in ("torch_version", "sam2_version", "cuda_extension", "concurrent_jobs"):
        assert key in tags, key
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"result.json", "per_image.csv", "hydra", "masks"} <= top
    hydra = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    assert hydra == {"hydra/config.yaml", "hydra/hydra.yaml", "hydra/overrides.yaml"}
    masks = {a.path for a in client.list_artifacts(run.info.run_id, "masks")}
    assert any(p.endswith(".png") for p in masks), masks


@pytest.fixture(scope="module")
def sqlite_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any]:
    """One real sweep into ``MLFLOW_TRACKING_URI=sqlite:///OUT/mlflow.db`` (the issue's
    done-when check, tiny), shared by the store checks and the browser check: (launch
    folder, store URI, finished process)."""
    tmp_path = tmp_path_factory.mktemp("sqlite_sweep")
    out = tmp_path / "OUT"
    uri = f"sqlite:///{out / 'mlflow.db'}"
    proc = sam_bench(
        ["-m", *TINY, "amg.pred_iou_thresh=0.0,0.5", f"hydra.sweep.dir={out}"],
        tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp_path, uri, proc


def test_sqlite_sweep_from_env_uri(sqlite_sweep: tuple[Path, str, Any]) -> None:
    """Jobs, parent and experiment in the store the environment names; the sweep's last
    lines say how long it took and where everything is."""
    tmp_path, uri, proc = sqlite_sweep
    out = tmp_path / "OUT"
    assert (out / "mlflow.db").is_file() and not (tmp_path / "mlflow.db").exists()
    assert not list(out.glob("*/mlflow.db")), "one store per sweep, never per job"

    client = MlflowClient(uri)
    parent, children = runs_by_role(client)
    assert len(children) == 2
    for run in children:
        check_finished_child(client, run)
        assert run.data.tags["concurrent_jobs"] == "1"
    assert {r.data.params["amg.pred_iou_thresh"] for r in children} == {"0.0", "0.5"}
    assert parent.info.status == "FINISHED" and parent.data.tags["n_ok"] == "2"
    assert {"summary.csv", "report.html"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    # the parent says what was swept and when, and which job is best on the objective (miou)
    assert parent.info.run_name.startswith("sweep 20")
    assert parent.info.run_name.endswith(": amg.pred_iou_thresh=0.0,0.5")
    assert parent.data.params == {"amg.pred_iou_thresh": "0.0,0.5"}
    best = max(children, key=lambda r: (r.data.metrics["miou"], -int(r.data.tags["job_num"])))
    assert parent.data.metrics["best/miou"] == best.data.metrics["miou"]
    assert parent.data.metrics["best/miou/job"] == float(best.data.tags["job_num"])
    assert parent.data.tags["best/miou"] == best.info.run_name
    fastest = min(children, key=lambda r: r.data.metrics["latency_ms_p50"])
    assert parent.data.metrics["best/latency_ms_p50"] == fastest.data.metrics["latency_ms_p50"]
    assert "UNTRAINED MODEL (random weights)" in parent.data.tags["mlflow.note.content"]
    exp = client.get_experiment_by_name("sam_bench")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.experiment.primaryMetric.name"] == "miou"
    assert exp.tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "True"

    last = proc.stdout.strip().splitlines()[-6:]
    assert last[0].startswith("sweep done: 2 job(s), 2 ok, in ") and " per job)" in last[0]
    assert last[1:3] == [f"summary: {out / 'summary.csv'}", f"report: {out / 'report.html'}"]
    assert last[3].startswith(f"results: {out} (2 job folder(s), ") and last[3].endswith("B)")
    assert last[4] == (
        f"MLflow: experiment 'sam_bench', parent run {parent.info.run_id} "
        f"{parent.info.run_name!r} in {uri}"
    )
    assert last[5] == (
        f"  open: mlflow ui --backend-store-uri {uri}  then  http://127.0.0.1:5000/"
        f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    )


@pytest.mark.slow
def test_mlflow_ui_opens_the_experiment_on_its_runs(
    sqlite_sweep: tuple[Path, str, Any], tmp_path: Path
) -> None:
    """``mlflow ui`` on the sweep's store, opened at the address the sweep printed: headless
    Chromium lands on the experiment's runs page (not MLflow 3's GenAI overview) and shows
    the parent run's name. ~1-2 min on 2 shared cores (server start, page scripts)."""
    from browser import ARGS, chromium
    from PIL import Image
    from playwright.sync_api import sync_playwright

    executable = chromium()
    _, uri, proc = sqlite_sweep
    parent, _ = runs_by_role(MlflowClient(uri))
    address = proc.stdout.strip().splitlines()[-1].split("  then  ")[1]
    assert address.startswith("http://127.0.0.1:5000/#/experiments/"), address
    port = _free_port()
    with _serve(["ui", "--backend-store-uri", uri], port, tmp_path) as url:
        page_url = address.replace("http://127.0.0.1:5000", url)
        shot = Path(os.environ.get("SAM_BENCH_SCREENSHOT_DIR") or tmp_path) / "mlflow_runs.png"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(page_url, wait_until="load", timeout=120_000)
                name = page.get_by_text(parent.info.run_name, exact=True).first
                name.wait_for(state="visible", timeout=120_000)
                landed = page.url
                heading = page.get_by_role("heading", name="Runs", exact=True)
                runs_heading = heading.count() > 0
                page.screenshot(path=str(shot))
            finally:
                browser.close()
    assert "/runs" in landed and "workflowType=machine_learning" in landed, landed
    assert runs_heading, "the page has no 'Runs' heading"
    with Image.open(shot) as img:
        assert img.size == (1400, 900)
        assert len(img.convert("RGB").getcolors(1 << 20) or []) > 50, "a blank screenshot"


def test_joblib_sweep_into_default_store_in_launch_dir(tmp_path: Path) -> None:
    """``hydra/launcher=joblib``: jobs in worker processes find the parent run and the store
    (``sqlite:///mlflow.db`` in the launching directory)."""
    out = tmp_path / "OUT"
    proc = sam_bench(
        [
            "-m",
            *TINY,
            "amg.pred_iou_thresh=0.0,0.5",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={out}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    db = tmp_path / "mlflow.db"
    assert db.is_file() and not list(out.rglob("mlflow.db"))

    client = MlflowClient(f"sqlite:///{db}")
    parent, children = runs_by_role(client)
    assert len(children) == 2
    for run in children:
        check_finished_child(client, run)
        assert run.data.tags["concurrent_jobs"] == "2"
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["concurrent_jobs"] == "2"
    assert "Joblib" in parent.data.tags["launcher"]
    # artifacts next to the database, not inside the sweep or job directories
    assert all(r.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri()) for r in children)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(args: list[str], port: int, folder: Path) -> Iterator[str]:
    """``mlflow <args>`` (``server`` or ``ui``) on 127.0.0.1:``port``, its own process group,
    started in ``folder``; its URL once ``/health`` answers (killed after)."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"mlflow-{port}.log"
    log = log_path.open("w")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [sys.executable, "-m", "mlflow", *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1"],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers die with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow {args[0]} did not start:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts); its URL."""
    srv = tmp_path / "server"
    args = [
        "server",
        "--backend-store-uri",
        f"sqlite:///{srv / 'server.db'}",
        "--artifacts-destination",
        str(srv / "artifacts"),
    ]
    with _serve(args, _free_port(), srv) as url:
        yield url


def test_sweep_logs_to_mlflow_server_over_http(tmp_path: Path, mlflow_server: str) -> None:
    """A sweep against a tracking server over HTTP, one job failing (config error): the failed
    job's run is FAILED with its error as tag, the other job and the sweep go on."""
    out = tmp_path / "OUT"
    proc = sam_bench(
        [
            "-m",
            *TINY,
            "amg.pred_iou_thresh=0.0",
            "dataset.format=synthetic,coco",  # coco without annotations: the job fails
            f"tracking.uri={mlflow_server}",
            "tracking.experiment=http_sweep",
            f"hydra.sweep.dir={out}",
        ],
        tmp_path,
        env={"MLFLOW_TRACKING_URI": "sqlite:///must-not-be-used.db"},  # tracking.uri wins
    )
    assert proc.returncode == 1, proc.stderr[-4000:]  # a failed job makes the command fail
    assert not (tmp_path / "must-not-be-used.db").exists()

    client = MlflowClient(mlflow_server)
    parent, children = runs_by_role(client, "http_sweep")
    by_format = {r.data.params["dataset.format"]: r for r in children}
    assert set(by_format) == {"synthetic", "coco"}
    check_finished_child(client, by_format["synthetic"])
    failed = by_format["coco"]
    assert failed.info.status == "FAILED"
    assert "dataset.annotations" in failed.data.tags["error"]
    assert failed.data.tags["status"] == "failed"
    assert "result.json" in {a.path for a in client.list_artifacts(failed.info.run_id)}
    assert parent.info.status == "FINISHED" and parent.data.tags["n_failed"] == "1"
    # artifacts went through the server into its artifact destination
    assert list((tmp_path / "server" / "artifacts").rglob("result.json"))
