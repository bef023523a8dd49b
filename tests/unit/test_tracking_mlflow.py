"""``tracking=mlflow``: helpers, the tracker against a SQLite store in-process, and several
processes logging runs into one SQLite store at once."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from sam_bench.config import TrackingConfig
from sam_bench.errors import ConfigError
from sam_bench.tracking import NullTracker, build_tracker
from sam_bench.tracking import mlflow as mt

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")

# --------------------------------------------------------------------------------------------
# helpers (no mlflow needed)


def test_params_are_the_flattened_config_with_dotted_keys() -> None:
    cfg = {
        "model": {"name": "sam2.1_hiera_tiny", "weights": "random"},
        "amg": {
            "points_per_side": 4,
            "point_grids": None,
            "postfilter": {"max_area_fraction": 0.9},
        },
        "dataset": {"scenes": ["color", "textured"]},
        "sweep_name": None,
        "seed": 0,
    }
    params = mt.params_of(cfg)
    assert params["model.name"] == "sam2.1_hiera_tiny"
    assert params["amg.points_per_side"] == "4"
    assert params["amg.point_grids"] == "None"
    assert params["amg.postfilter.max_area_fraction"] == "0.9"
    assert params["dataset.scenes"] == '["color", "textured"]'
    assert params["sweep_name"] == "None"
    assert params["seed"] == "0"


def test_long_param_values_are_truncated_not_rejected() -> None:
    grid = [[[i / 1000, j / 1000] for i in range(100)] for j in range(100)]
    params = mt.params_of({"amg": {"point_grids": [grid]}})
    value = params["amg.point_grids"]
    assert len(value) == mt.MAX_PARAM_VAL_LENGTH and value.endswith("...")


def test_metrics_skip_nan_inf_null_and_non_numbers() -> None:
    got = mt.metrics_of(
        {
            "miou": 0.5,
            "n_images": 2,
            "ar1000_large": None,
            "bad": math.nan,
            "inf": math.inf,
            "flag": True,
            "text": "x",
            "nested": {"a": 1.0},
        }
    )
    assert got == {"miou": 0.5, "n_images": 2.0, "nested.a": 1.0}


def test_tags_carry_provenance_and_error() -> None:
    record = {
        "status": "failed",
        "error": "boom " * 3000,
        "job": {"num": 3},
        "overrides": ["amg.points_per_side=4"],
        "config": {"model": {"name": "m", "weights": "random"}, "dtype": "fp32"},
        "environment": {
            "git_commit": "abc123",
            "torch": "2.5",
            "sam2": "1.1.0",
            "device": "cpu",
            "dtype": "fp32",
            "cuda_extension": False,
            "concurrent_jobs": 2,
        },
        "weights": {},
    }
    tags = mt.tags_of(record)
    assert tags["weights"] == "random"  # failed before the model was built: from the config
    assert tags["git_commit"] == tags["mlflow.source.git.commit"] == "abc123"
    assert tags["torch_version"] == "2.5" and tags["sam2_version"] == "1.1.0"
    assert tags["device"] == "cpu" and tags["dtype"] == "fp32"
    assert tags["cuda_extension"] == "False" and tags["concurrent_jobs"] == "2"
    assert tags["status"] == "failed" and tags["error"].startswith("boom")
    assert len(tags["error"]) == mt.MAX_TAG_VAL_LENGTH
    assert mt.tags_of({"weights": {"kind": "pretrained", "sha256": "f" * 64}})["weights"] == (
        "f" * 64
    )


def test_uri_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mt.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/x.db")
    assert mt.resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/sub/x.db"
    assert mt.resolve_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert mt.absolute_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert mt.absolute_uri("sqlite:///:memory:", tmp_path) == "sqlite:///:memory:"
    assert mt.sqlite_db_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert mt.sqlite_db_path("http://h") is None


def test_experiment_name_defaults() -> None:
    assert mt.experiment_name("mine", "quickstart") == "mine"
    assert mt.experiment_name(None, "quickstart") == "quickstart"
    assert mt.experiment_name(None, None) == "sam_bench"


def test_swept_keys_and_child_run_names() -> None:
    keys = mt.swept_keys(["model.weights=random", "amg.points_per_side=4,8", "seed=range(0,2)"])
    assert keys == ["amg.points_per_side", "seed"]
    record = {"job": {"num": 1}, "overrides": ["model.weights=random", "amg.points_per_side=8"]}
    assert mt.child_run_name(record, keys) == "#1 amg.points_per_side=8"
    single = {"job": {"num": None}, "overrides": ["model.weights=random"]}
    assert mt.child_run_name(single, None) == "run model.weights=random"


def test_retry_backs_off_on_locked_database_only() -> None:
    import sqlite3

    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            try:
                raise sqlite3.OperationalError("database is locked")
            except sqlite3.OperationalError as e:  # wrapped, as MLflow does
                raise RuntimeError("SQLAlchemy database error") from e
        return "ok"

    assert mt.retry(flaky, sleep=sleeps.append) == "ok"
    assert len(calls) == 4 and len(sleeps) == 3 and sleeps[0] < sleeps[-1]

    def broken() -> None:
        calls.append(1)
        raise ValueError("not transient")

    calls.clear()
    with pytest.raises(ValueError):
        mt.retry(broken, sleep=sleeps.append)
    assert len(calls) == 1

    def always_locked() -> None:
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="locked"):
        mt.retry(always_locked, timeout_s=0.2, sleep=time.sleep)


def test_tracking_config_names() -> None:
    assert TrackingConfig(name="mlflow").name == "mlflow"
    with pytest.raises(ConfigError, match=r"tracking\.name"):
        TrackingConfig(name="wandb")
    with pytest.raises(ConfigError, match=r"tracking\.retry_timeout_s"):
        TrackingConfig(name="mlflow", retry_timeout_s=-1)


def test_mlflow_preset_composes() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam_bench.config import CONF_DIR, register_configs, to_typed

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = to_typed(compose("config", overrides=["tracking=mlflow", "tracking.uri=x"]))
    finally:
        GlobalHydra.instance().clear()
    assert cfg.tracking.name == "mlflow" and cfg.tracking.uri == "x"
    assert cfg.tracking.experiment is None and cfg.tracking.log_masks is True


def test_tracking_none_needs_no_mlflow() -> None:
    code = (
        "import sys, sam_bench.tracking as t\n"
        "from sam_bench.config import TrackingConfig\n"
        "assert isinstance(t.build_tracker(TrackingConfig()), t.NullTracker)\n"
        "import sam_bench.run, sam_bench.sweep_end\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    assert isinstance(build_tracker(None), NullTracker)


# --------------------------------------------------------------------------------------------
# the tracker against a SQLite store


def _sweep_config(cwd: Path, **tracking: Any) -> Any:
    return OmegaConf.create(
        {
            "tracking": {"name": "mlflow", "uri": None, "experiment": None, **tracking},
            "sweep_name": None,
            "dry_run": False,
            "hydra": {
                "runtime": {"cwd": str(cwd)},
                "overrides": {"task": ["amg.points_per_side=2,4", "model.weights=random"]},
                "launcher": {"_target_": "hydra_plugins.x.JoblibLauncher", "n_jobs": 2},
            },
        }
    )


def _job(job_dir: Path, num: int, status: str = "ok", **metrics: Any) -> dict[str, Any]:
    """A job directory as ``run_job`` leaves it, and its record."""
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (job_dir / "masks").mkdir(exist_ok=True)
    for name in mt.HYDRA_FILES:
        (job_dir / ".hydra" / name).write_text(f"{name}: {num}\n")
    (job_dir / "masks" / "1.png").write_bytes(b"\x89PNG fake")
    (job_dir / "per_image.csv").write_text("image_id,iou\n1,0.5\n")
    record = {
        "status": status,
        "error": "RuntimeError: boom" if status == "failed" else None,
        "job": {
            "num": num,
            "dir": str(job_dir),
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:00:10+00:00",
            "duration_s": 10.0,
        },
        "overrides": ["model.weights=random", f"amg.points_per_side={2 * (num + 1)}"],
        "config": {
            "model": {"name": "sam2.1_hiera_tiny", "weights": "random"},
            "amg": {"points_per_side": 2 * (num + 1), "point_grids": None},
            "sweep_name": None,
            "notes": "x" * 7000,
        },
        "environment": {"torch": "2.5", "sam2": "1.1.0", "device": "cpu", "dtype": "fp32"},
        "weights": {"kind": "random", "label": "random", "sha256": None},
        "metrics": {} if status == "failed" else {"miou": 0.25, "ar1000_large": None, **metrics},
        # the files it wrote, each with its kind: logged as artifacts through this list
        "outputs": [
            {"name": "record", "kind": "record", "path": "result.json"},
            {"name": "per_item", "kind": "per_item_csv", "path": "per_image.csv"},
            {"name": "examples", "kind": "instance_examples", "path": "masks/"},
        ],
    }
    (job_dir / "result.json").write_text(json.dumps(record))
    return record


@pytest.fixture
def mlflow_client() -> Any:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    return MlflowClient


def _runs(client: Any, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def test_sweep_parent_and_child_runs_in_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_client: Any
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    launch, sweep = tmp_path / "launch", tmp_path / "sweep"
    launch.mkdir()
    config = _sweep_config(launch)
    tracker = build_tracker(config.tracking)
    tracker.sweep_start(sweep, config)

    state = json.loads((sweep / mt.STATE_FILE).read_text())
    db = launch / "mlflow.db"
    assert state["uri"] == f"sqlite:///{db.resolve()}" and db.is_file()
    assert state["swept_keys"] == ["amg.points_per_side"]

    ok = _job(sweep / "0", 0, nan_metric=math.nan)
    bad = _job(sweep / "1", 1, status="failed")
    tracker.job_end(ok, sweep / "0", sweep)
    tracker.job_end(bad, sweep / "1", sweep)
    (sweep / "summary.csv").write_text("job,status\n0,ok\n1,failed\n")
    tracker.sweep_end(sweep, [{"status": "ok"}, {"status": "failed"}], [sweep / "summary.csv"])

    client = mlflow_client(state["uri"])
    runs = _runs(client, "sam_bench")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["job_num"]: r for r in runs if r not in parents}
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.run_id == state["parent_run_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["n_failed"] == "1" and parent.data.tags["concurrent_jobs"] == "2"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["summary.csv"]

    good, failed = children["0"], children["1"]
    for run in (good, failed):
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["weights"] == "random"
        assert run.data.params["amg.points_per_side"] == str(
            2 * (int(run.data.tags["job_num"]) + 1)
        )
        assert len(run.data.params["notes"]) == mt.MAX_PARAM_VAL_LENGTH
        paths = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"result.json", "per_image.csv", "hydra", "masks"} <= paths
        hydra = {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
        assert hydra == {"hydra/config.yaml", "hydra/hydra.yaml", "hydra/overrides.yaml"}
    assert good.info.status == "FINISHED" and good.info.run_name == "#0 amg.points_per_side=2"
    assert good.data.metrics["miou"] == 0.25
    assert "nan_metric" not in good.data.metrics and "ar1000_large" not in good.data.metrics
    assert good.info.start_time == 1767225600000 and good.info.end_time == 1767225610000
    assert failed.info.status == "FAILED"
    assert failed.data.tags["error"] == "RuntimeError: boom"
    # artifacts live next to the database, not in the working directory
    assert good.info.artifact_uri.startswith((launch / "mlruns").resolve().as_uri())


def test_single_run_is_one_plain_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_client: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/m.db")  # relative to launch dir
    tracker = build_tracker(TrackingConfig(name="mlflow", experiment="solo", log_masks=False))
    record = _job(tmp_path / "outputs" / "run", 0)
    record["job"]["num"] = None
    tracker.job_end(record, tmp_path / "outputs" / "run", None)
    client = mlflow_client(f"sqlite:///{tmp_path / 'store' / 'm.db'}")
    (run,) = _runs(client, "solo")
    assert "mlflow.parentRunId" not in run.data.tags
    assert run.info.run_name == "run model.weights=random amg.points_per_side=2"
    assert run.info.status == "FINISHED" and run.data.params["model.weights"] == "random"
    assert "masks" not in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_locked_store_is_retried_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_client: Any
) -> None:
    """MLflow's own error for a locked SQLite database (wrapped OperationalError) is retried."""
    import sqlite3

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sweep = tmp_path / "sweep"
    config = _sweep_config(tmp_path)
    tracker = build_tracker(config.tracking)
    tracker.sweep_start(sweep, config)

    failures = {"create_run": 2, "log_batch": 2, "set_terminated": 1}
    for method in list(failures):
        real = getattr(mlflow_client, method)

        def flaky(self: Any, *a: Any, _real: Any = real, _m: str = method, **k: Any) -> Any:
            if failures[_m] > 0:
                failures[_m] -= 1
                cause = sqlite3.OperationalError("database is locked")
                raise MlflowException(str(cause), error_code=TEMPORARILY_UNAVAILABLE) from cause
            return _real(self, *a, **k)

        monkeypatch.setattr(mlflow_client, method, flaky)
    tracker.job_end(_job(sweep / "0", 0), sweep / "0", sweep)
    assert failures == {"create_run": 0, "log_batch": 0, "set_terminated": 0}
    monkeypatch.undo()
    state = json.loads((sweep / mt.STATE_FILE).read_text())
    (run,) = [
        r
        for r in _runs(mlflow_client(state["uri"]), "sam_bench")
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert run.info.status == "FINISHED" and run.data.metrics["miou"] == 0.25


def test_unreachable_store_at_sweep_start_disables_jobs_quickly(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    sweep = tmp_path / "sweep"
    config = _sweep_config(tmp_path, uri="nosuchscheme://nowhere")
    tracker = build_tracker(config.tracking)
    with pytest.raises(Exception):  # noqa: B017 (the callback logs whatever it is)
        tracker.sweep_start(sweep, config)
    assert "error" in json.loads((sweep / mt.STATE_FILE).read_text())

    def no_store(uri: str) -> None:
        raise AssertionError(f"a job contacted the store {uri} after the sweep disabled it")

    tracker._client = no_store  # type: ignore[method-assign]
    tracker.job_end(_job(sweep / "0", 0), sweep / "0", sweep)  # logs a warning, returns


def test_dry_run_sweep_creates_no_parent(tmp_path: Path) -> None:
    config = _sweep_config(tmp_path)
    config.dry_run = True
    build_tracker(config.tracking).sweep_start(tmp_path / "sweep", config)
    assert not (tmp_path / "sweep" / mt.STATE_FILE).exists()
    assert not (tmp_path / "mlflow.db").exists()


# --------------------------------------------------------------------------------------------
# concurrency: several processes, one SQLite file

WRITER = textwrap.dedent(
    """
    import json, logging, sys, time
    from pathlib import Path
    from sam_bench.tracking.mlflow import MlflowTracker
    import mlflow.tracking  # pay the import before the start line

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("sam_bench.tracking.mlflow").setLevel(logging.DEBUG)
    sweep, worker, n_runs = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tracker = MlflowTracker({"uri": None, "experiment": None, "log_masks": True})
    (sweep / f"ready_{worker}").touch()
    while not (sweep / "go").exists():
        time.sleep(0.01)
    for i in range(n_runs):
        job_dir = sweep / f"{worker}_{i}"
        record = json.loads((sweep / "template.json").read_text())
        record["job"]["num"] = worker * 100 + i
        record["job"]["dir"] = str(job_dir)
        job_dir.mkdir()
        (job_dir / "result.json").write_text(json.dumps(record))
        (job_dir / "masks").mkdir()
        (job_dir / "masks" / "1.png").write_bytes(b"png")
        tracker.job_end(record, job_dir, sweep)
    """
)


def test_concurrent_processes_lose_no_run_in_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_client: Any
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sweep = tmp_path / "sweep"
    config = _sweep_config(tmp_path)
    build_tracker(config.tracking).sweep_start(sweep, config)
    template = _job(tmp_path / "template_job", 0)
    (sweep / "template.json").write_text(json.dumps(template))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)

    n_procs, n_runs = 4, 5
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(sweep), str(w), str(n_runs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for w in range(n_procs)
    ]
    deadline = time.monotonic() + 120
    while len(list(sweep.glob("ready_*"))) < n_procs and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    (sweep / "go").touch()  # all writers start at once
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert "failed" not in out, out
    busy = sum(out.count("store busy") for out in outputs)
    print(f"{n_procs} writers x {n_runs} runs, {busy} busy-store retries")

    state = json.loads((sweep / mt.STATE_FILE).read_text())
    client = mlflow_client(state["uri"])
    children = [r for r in _runs(client, "sam_bench") if "mlflow.parentRunId" in r.data.tags]
    nums = sorted(int(r.data.tags["job_num"]) for r in children)
    assert nums == sorted(w * 100 + i for w in range(n_procs) for i in range(n_runs))
    for r in children:
        assert r.info.status == "FINISHED"
        assert r.data.tags["mlflow.parentRunId"] == state["parent_run_id"]
        assert r.data.params["amg.points_per_side"] == "2" and r.data.metrics["miou"] == 0.25


def test_resumed_sweep_keeps_its_parent_and_kills_interrupted_children(tmp_path: Path) -> None:
    """A kill can leave a child run RUNNING (between create_run and set_terminated): resuming
    the sweep marks it KILLED, keeps the one parent, and a reused job that already has a
    FINISHED child run is not logged twice."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'db.sqlite'}"
    config = _sweep_config(tmp_path, uri=uri)
    tracker = build_tracker(config.tracking)
    tracker.sweep_start(sweep, config)
    state = mt.read_state(sweep)
    tracker.job_end(_job(sweep / "0", 0), sweep / "0", sweep)  # finished before the kill
    client = MlflowClient(uri)
    stuck = client.create_run(
        state["experiment_id"], tags={"mlflow.parentRunId": state["parent_run_id"]}
    )
    resumed = OmegaConf.merge(config, {"resume": True})
    tracker.sweep_start(sweep, resumed)
    assert mt.read_state(sweep)["parent_run_id"] == state["parent_run_id"]
    assert client.get_run(stuck.info.run_id).info.status == "KILLED"
    assert client.get_run(state["parent_run_id"]).info.status == "RUNNING"
    reused = _job(sweep / "0", 0)
    reused["job"]["reused"] = True
    tracker.job_end(reused, sweep / "0", sweep)  # already FINISHED: not logged again
    tracker.job_end(_job(sweep / "1", 1), sweep / "1", sweep)
    runs = client.search_runs([state["experiment_id"]])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    finished = sorted(r.data.tags["job_dir"] for r in children if r.info.status == "FINISHED")
    assert finished == [str(sweep / "0"), str(sweep / "1")]
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1


def test_swept_settings_and_parent_run_name() -> None:
    from datetime import datetime

    preset = {"amg.points_per_side": "8,16", "amg.pred_iou_thresh": "0.0,0.5,0.8"}
    # the command line sweeps another key, re-sweeps one of the preset's and fixes the other
    overrides = ["model.weights=random", "+seed=range(0,2)", "amg.points_per_side=4,8",
                 "amg.pred_iou_thresh=0.5"]  # fmt: skip
    swept = mt.swept_settings(overrides, preset)
    assert swept == {"seed": "range(0,2)", "amg.points_per_side": "4,8"}
    assert mt.swept_settings([], preset) == preset
    when = datetime(2026, 12, 6, 18, 40, 1)
    assert mt.parent_run_name("quickstart", preset, when) == (
        "quickstart 2026-12-06 18:40:01: amg.points_per_side=8,16 amg.pred_iou_thresh=0.0,0.5,0.8"
    )
    assert mt.parent_run_name(None, {}, when) == "sweep 2026-12-06 18:40:01: nothing swept"
    long = mt.parent_run_name(None, {"k": "1," * 400}, when)
    assert len(long) == mt.MAX_RUN_NAME_LENGTH and long.startswith(
        "sweep 2026-12-06 18:40:01: k=1,"
    )


def test_parent_run_carries_what_was_swept_the_best_jobs_and_experiment_tags(
    tmp_path: Path, mlflow_client: Any
) -> None:
    """Through the tracker into a real SQLite store: the experiment named after the preset
    and tagged for MLflow 3's runs view with the objective as primary metric; the parent named
    after what it swept, the swept settings as params, the best value and job of each metric
    handed over as metrics (and tags naming the job), a description, the sweep's files."""
    from sam_bench.tracking import Best, Objective, SweepOutcome

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    preset = {"sweeper": {"params": {"amg.pred_iou_thresh": "0.0,0.5"}}}
    config = OmegaConf.merge(
        _sweep_config(tmp_path, uri=uri), {"sweep_name": "quickstart", "hydra": preset}
    )
    sweep = tmp_path / "sweep"
    tracker = build_tracker(config.tracking)
    tracker.sweep_start(sweep, config, Objective("miou", True))
    for num in (0, 1):
        tracker.job_end(_job(sweep / str(num), num), sweep / str(num), sweep)
    (sweep / "plots").mkdir()
    files = [sweep / "summary.csv", sweep / "plots" / "pareto.png", sweep / "report.html"]
    for f in files:
        f.write_text("x")
    outcome = SweepOutcome(
        best=[
            Best("miou", 0.25, "1", "#1 amg.points_per_side=4", True),
            Best("latency_ms_p50", 812.5, "0", "#0 amg.points_per_side=2", False),
        ],
        objective=Objective("latency_ms_p50", False),
        untrained=True,
    )
    tracker.sweep_end(sweep, [{"status": "ok"}, {"status": "ok"}], files, outcome)

    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("quickstart")
    assert exp is not None
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # the objective of the records (handed over at the end) replaced the one known at start
    assert exp.tags["mlflow.experiment.primaryMetric.name"] == "latency_ms_p50"
    assert exp.tags["mlflow.experiment.primaryMetric.greaterIsBetter"] == "False"
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    name = parent.info.run_name
    assert name.startswith("quickstart 20") and name.endswith(
        ": amg.pred_iou_thresh=0.0,0.5 amg.points_per_side=2,4"
    )
    assert parent.data.params == {"amg.pred_iou_thresh": "0.0,0.5", "amg.points_per_side": "2,4"}
    assert parent.data.metrics == {
        "best/miou": 0.25,
        "best/miou/job": 1.0,
        "best/latency_ms_p50": 812.5,
        "best/latency_ms_p50/job": 0.0,
    }
    tags = parent.data.tags
    assert tags["best/miou"] == "#1 amg.points_per_side=4" and tags["untrained"] == "True"
    note = tags["mlflow.note.content"]
    assert "UNTRAINED MODEL (random weights)" in note and "2 job(s), 2 ok" in note
    assert "`latency_ms_p50` (lower is better): 812.5, job #0 amg.points_per_side=2" in note
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert top == {"summary.csv", "report.html", "plots"}
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == [
        "plots/pareto.png"
    ]
    # where it is and how to open it: the experiment's runs page of `mlflow ui`
    lines = tracker.where(sweep)
    assert lines[0].startswith(
        f"MLflow: experiment 'quickstart', parent run {parent.info.run_id} {name!r} in {uri}"
    )
    assert lines[1] == (
        f"  open: mlflow ui --backend-store-uri {uri}  then  "
        f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
    )


STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from omegaconf import OmegaConf
    from sam_bench.tracking import Objective
    from sam_bench.tracking.mlflow import MlflowTracker
    import mlflow.tracking  # pay the import before the start line

    root, worker, uri = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    config = OmegaConf.create({
        "sweep_name": "same", "dry_run": False,
        "hydra": {"runtime": {"cwd": str(root)}, "overrides": {"task": [f"seed={worker},9"]}},
    })
    tracker = MlflowTracker({"uri": uri, "experiment": None})
    (root / f"ready_{worker}").touch()
    while not (root / "go").exists():
        time.sleep(0.01)
    tracker.sweep_start(root / f"sweep_{worker}", config, Objective("miou", True))
    """
)


def test_sweeps_starting_at_once_tag_one_experiment_without_colliding(
    tmp_path: Path, mlflow_client: Any
) -> None:
    """Four sweeps of one preset start at once on a fresh SQLite store: every one gets its
    parent run, and the experiment its kind and primary-metric tags (the experiment-tag
    writes the sweep's start now makes keep the concurrent-sweeps guarantee)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    n_procs = 4
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), str(w), uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for w in range(n_procs)
    ]
    deadline = time.monotonic() + 180
    while len(list(tmp_path.glob("ready_*"))) < n_procs and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * n_procs, "\n".join(outputs)[-4000:]
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name("same")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.experiment.primaryMetric.name"] == "miou"
    parents = client.search_runs([exp.experiment_id])
    names = sorted(r.data.params["seed"] for r in parents)
    assert names == [f"{w},9" for w in range(n_procs)]
    for w in range(n_procs):
        assert mt.read_state(tmp_path / f"sweep_{w}")["parent_run_id"] in {
            r.info.run_id for r in parents
        }
