"""sam_bench's launcher backends (``hydra.launcher.backend=local|ray|submitit``): settings and
their checks, the units of work a sweep is cut into, what a worker computes and returns, how
the launching process adopts (or replaces) a remote job's record, the SLURM submission that
the settings produce, and the tracking-store warning for Hydra's stock remote launchers.
The end-to-end runs on Ray and submitit are in tests/integration/test_launchers.py (slow)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from hydra import compose
from omegaconf import open_dict

from sam_bench.config import register_configs
from sam_bench.errors import ConfigError
from sam_bench.record import _jsonable
from sam_bench.remote import (
    Outcome,
    SubmititBackend,
    Unit,
    adopt,
    launcher_settings,
    remote_jobs_reason,
    run_group,
    tracking_store_warning,
    units_per_node,
)
from sam_bench.run import take_precomputed
from sam_bench.sweep_groups import job_spec, plan

register_configs()
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def settings(**launcher: Any) -> dict[str, Any]:
    return launcher_settings(launcher)


# ---------------------------------------------------------------------------------------------
# settings


def test_defaults_are_local_and_complete() -> None:
    s = settings()
    assert s["backend"] == "local"
    assert s["ray"] == {
        "address": None, "init": {}, "num_cpus": 1, "num_gpus": "auto", "gpus_per_job": 1,
        "remote": {},
    }  # fmt: skip
    assert s["submitit"]["cluster"] == "slurm" and s["submitit"]["timeout_min"] == 60


@pytest.mark.parametrize(
    ("launcher", "key"),
    [
        ({"backend": "dask"}, "hydra.launcher.backend"),
        ({"ray": {"num_cpus": -1}}, "hydra.launcher.ray.num_cpus"),
        ({"ray": {"num_gpus": "one"}}, "hydra.launcher.ray.num_gpus"),
        ({"ray": {"init": {"address": "auto"}}}, "hydra.launcher.ray.init.address"),
        ({"ray": {"remote": {"num_gpus": 1}}}, "hydra.launcher.ray.remote.num_gpus"),
        ({"ray": {"init": [1, 2]}}, "hydra.launcher.ray.init"),
        ({"submitit": {"cluster": "pbs"}}, "hydra.launcher.submitit.cluster"),
        ({"submitit": {"timeout_min": 0}}, "hydra.launcher.submitit.timeout_min"),
        ({"submitit": {"array_parallelism": 0}}, "hydra.launcher.submitit.array_parallelism"),
        ({"submitit": {"mem_gb": 0}}, "hydra.launcher.submitit.mem_gb"),
        ({"submitit": {"cpus_per_task": 0}}, "hydra.launcher.submitit.cpus_per_task"),
        ({"submitit": {"gpus_per_node": -1}}, "hydra.launcher.submitit.gpus_per_node"),
        ({"submitit": {"poll_s": 0}}, "hydra.launcher.submitit.poll_s"),
    ],
)  # fmt: skip
def test_bad_settings_name_their_key(launcher: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(**launcher)
    assert err.value.key == key, str(err.value)


def test_slurm_without_sbatch_says_to_use_local(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit", reason="the `scale` extra is not installed")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError) as err:
        settings(backend="submitit", submitit={"cluster": "slurm", "folder": "x"})
    assert err.value.key == "hydra.launcher.submitit.cluster"
    assert "sbatch" in str(err.value) and "cluster=local" in str(err.value)
    local = settings(backend="submitit", submitit={"cluster": "local", "folder": "x"})
    assert local["submitit"]["cluster"] == "local"


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.usefixtures("hydra_conf")
def test_presets_compose_to_checked_settings(tmp_path: Path) -> None:
    cfg = compose("config", overrides=["hydra/launcher=sam_bench_ray"], return_hydra_config=True)
    if not _installed("ray"):  # without the `scale` extra: one message saying how to get it
        with pytest.raises(ConfigError, match=r"ray is not installed.*make install-scale"):
            launcher_settings(cfg.hydra.launcher)
    else:
        s = launcher_settings(cfg.hydra.launcher)
        assert s["backend"] == "ray" and s["ray"]["address"] is None
    cfg = compose(
        "config",
        overrides=[
            "hydra.launcher.backend=submitit",
            "hydra.launcher.submitit.cluster=local",
            f"hydra.sweep.dir={tmp_path}",
            "+hydra.launcher.submitit.additional_parameters.mail-type=END",
        ],
        return_hydra_config=True,
    )
    if not _installed("submitit"):
        with pytest.raises(ConfigError, match=r"submitit is not installed.*make install-scale"):
            launcher_settings(cfg.hydra.launcher)
        pytest.skip("the `scale` extra is not installed (make install-scale)")
    s = launcher_settings(cfg.hydra.launcher)
    assert s["submitit"]["folder"] == f"{tmp_path}/.submitit/%j"  # interpolated
    assert s["submitit"]["additional_parameters"] == {"mail-type": "END"}
    # Hydra's stock launchers and their presets compose (the `scale` extra installed)
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    for name, target in (
        ("ray_local", "RayLauncher"), ("ray_cluster", "RayLauncher"), ("slurm", "SlurmLauncher"),
        ("ray", "RayLauncher"), ("submitit_local", "LocalLauncher"),
    ):  # fmt: skip
        cfg = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
        assert cfg.hydra.launcher._target_.endswith(target), name
    cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.array_parallelism) == (1, 16)


# ---------------------------------------------------------------------------------------------
# units of work


def _sweep_configs(tmp_path: Path, *jobs: list[str]) -> list[Any]:
    out = []
    for num, overrides in enumerate(jobs):
        sc = compose(
            "config",
            overrides=[*overrides, f"hydra.sweep.dir={tmp_path / 'OUT'}"],
            return_hydra_config=True,
        )
        with open_dict(sc):
            sc.hydra.job.num = num
            sc.hydra.job.id = num
            sc.hydra.overrides.task = overrides
        out.append(sc)
    return out


@pytest.mark.usefixtures("hydra_conf")
def test_plan_groups_shared_passes_and_keeps_the_rest_alone(tmp_path: Path) -> None:
    configs = _sweep_configs(
        tmp_path,
        ["amg.points_per_side=2", "amg.pred_iou_thresh=0.0"],
        ["amg.points_per_side=3", "amg.pred_iou_thresh=0.0"],
        ["amg.points_per_side=2", "amg.pred_iou_thresh=0.5"],
        ["amg.points_per_side=2", "engine=reference"],
        ["amg.points_per_side=3", "amg.pred_iou_thresh=0.5"],
        ["amg.points_per_side=2", "dry_run=true"],
    )
    assert plan(configs) == [[0, 2], [1, 4], [3], [5]]
    spec = job_spec(configs[2], concurrent_jobs=3)
    assert spec.job_dir == tmp_path / "OUT" / "2" and spec.job_num == 2
    assert spec.concurrent_jobs == 3 and "hydra" not in spec.cfg_node
    assert spec.overrides == ["amg.points_per_side=2", "amg.pred_iou_thresh=0.5"]


@pytest.mark.parametrize(
    ("nodes", "cpus", "gpus", "n_units", "expected"),
    [
        ([{"CPU": 2.0}], 1, 0, 5, 2),  # this machine: two 1-CPU units at once
        ([{"CPU": 2.0}], 2, 0, 5, 1),
        ([{"CPU": 2.0}], 1, 0, 1, 1),  # never more than there are units
        ([{"CPU": 16.0, "GPU": 2.0}], 1, 1, 8, 2),  # GPUs are the limit
        ([{"CPU": 16.0, "GPU": 2.0}], 4, 0.5, 8, 4),  # two units per GPU, 4 CPUs each
        ([{"CPU": 4.0}, {"CPU": 32.0, "GPU": 8.0}], 2, 1, 20, 8),  # the busiest node counts
        ([{"CPU": 4.0}], 1, 1, 3, 1),  # fits nowhere: still 1 (and Ray waits for a node)
        ([{"CPU": 4.0}], 0, 0, 3, 3),  # no reservation: everything at once
    ],
)  # fmt: skip
def test_units_per_node(nodes, cpus, gpus, n_units, expected) -> None:  # type: ignore[no-untyped-def]
    assert units_per_node(nodes, cpus, gpus, n_units) == expected


RAY_TARGET = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"


@pytest.mark.parametrize(
    ("launcher", "expected"),
    [
        (None, 1),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 1),
        ({"_target_": "x.JoblibLauncher", "n_jobs": 2}, 2),
        ({"_target_": "x.SlurmLauncher", "array_parallelism": 256}, 1),  # own allocations
        # Hydra's Ray launcher: how many jobs' ray.remote resources fit on the node
        ({"_target_": RAY_TARGET, "ray": {"init": {"num_cpus": 4}, "remote": {"num_cpus": 2}}}, 2),
        ({"_target_": RAY_TARGET, "ray": {"init": {"num_cpus": 3}, "remote": {}}}, 3),
        ({"_target_": RAY_TARGET,
          "ray": {"init": {"num_cpus": 8, "num_gpus": 2}, "remote": {"num_gpus": 1}}}, 2),
    ],
)  # fmt: skip
def test_concurrent_jobs_per_launcher(launcher, expected, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    from omegaconf import OmegaConf

    from sam_bench.remote import concurrent_jobs

    monkeypatch.setitem(sys.modules, "ray", None)  # no Ray instance to ask: the config's numbers
    assert concurrent_jobs(OmegaConf.create({"launcher": launcher})) == expected


# ---------------------------------------------------------------------------------------------
# the worker and the launching side


@pytest.fixture
def toy_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hydra_conf: None) -> list[Any]:
    """Two jobs of the toy task (builds no model: seconds) in a sweep folder under tmp_path,
    differing in their seed (which the toy's results do not depend on)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    toy = ["task=toy", "plugins=[toy_task]", "progress=false", "tracking=none", "dataset.limit=1"]
    configs = []
    for seed in (1, 2):
        overrides = [*toy, f"seed={seed}", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]"]
        configs.extend(_sweep_configs(tmp_path, overrides))
    for num, sc in enumerate(configs):
        with open_dict(sc):
            sc.hydra.job.num = num
    return [job_spec(sc) for sc in configs]


def test_the_worker_writes_records_into_the_job_folders_and_returns_them(
    toy_specs: list[Any], tmp_path: Path
) -> None:
    outcome = run_group(Unit(specs=toy_specs, base_dir=str(tmp_path)))
    assert outcome.pid == os.getpid() and outcome.host
    assert len(outcome.records) == 2
    for spec, record in zip(toy_specs, outcome.records, strict=True):
        assert record is not None and record["status"] == "ok", record
        on_disk = json.loads((spec.job_dir / "result.json").read_text())
        assert on_disk == json.loads(json.dumps(_jsonable(record)))  # NaN is null on disk
        assert (spec.job_dir / "per_image.csv").is_file()
        assert not (spec.job_dir / ".items.jsonl").exists()  # the per-item log is dropped
        assert take_precomputed(spec.job_dir) is None  # nothing left behind in the worker
    # computed as one group, each job with its own config and id
    assert [r["task_info"]["grouped_with_jobs"] for r in outcome.records] == [[0, 1], [0, 1]]
    assert [r["config"]["seed"] for r in outcome.records] == [1, 2]
    assert [r["job"]["num"] for r in outcome.records] == [0, 1]
    assert outcome.records[0]["config_id"] != outcome.records[1]["config_id"]


def test_adopt_hands_a_visible_record_to_run_job(toy_specs: list[Any]) -> None:
    spec = toy_specs[0]
    spec.job_dir.mkdir(parents=True)
    record = {"status": "ok", "job": {"num": 0}, "metrics": {"objective": 0.5}}
    (spec.job_dir / "result.json").write_text(json.dumps(record))
    adopted = adopt(spec, Outcome([record], "node7", 123, 1.0), 0)
    assert adopted is record
    assert take_precomputed(spec.job_dir) is record  # run_job will only track it


def test_a_record_not_visible_here_becomes_a_failed_record_naming_the_shared_folder(
    toy_specs: list[Any],
) -> None:
    spec = toy_specs[1]
    elsewhere = {"status": "ok", "job": {"num": 1}, "metrics": {"objective": 0.5}}
    adopted = adopt(spec, Outcome([None, elsewhere], "node7", 123, 1.0), 1)
    assert adopted["status"] == "failed"
    assert "node7" in adopted["error"] and "shared" in adopted["error"]
    on_disk = json.loads((spec.job_dir / "result.json").read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == adopted["error"]
    assert on_disk["overrides"] == spec.overrides and on_disk["job"]["num"] == 1
    assert on_disk["config"]["seed"] == 2 and on_disk["task"] == "toy"
    assert on_disk["metrics"]["objective"] == -1.0  # the penalty of a failed job
    assert (spec.job_dir / "per_image.csv").is_file()
    assert take_precomputed(spec.job_dir)["status"] == "failed"


def test_a_failed_unit_fails_its_jobs_with_the_reason_but_keeps_finished_records(
    toy_specs: list[Any], tmp_path: Path
) -> None:
    first, second = toy_specs
    run_group(Unit(specs=[first], base_dir=str(tmp_path)))  # finished before the crash
    crash = RuntimeError("worker died\nWorkerCrashedError: the worker exited with code 137")
    kept = adopt(first, crash, 0)
    assert kept["status"] == "ok" and take_precomputed(first.job_dir) == kept
    lost = adopt(second, crash, 1)
    assert lost["status"] == "failed" and "exited with code 137" in lost["error"]
    assert json.loads((second.job_dir / "result.json").read_text())["status"] == "failed"


# ---------------------------------------------------------------------------------------------
# what the SLURM settings submit (submitit against stand-in sbatch / srun executables)


def _fake_slurm(folder: Path) -> Path:
    """``sbatch`` / ``srun`` / ``scancel`` stand-ins: sbatch keeps the script it was given."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {
        "sbatch": f'#!/bin/sh\ncp "$1" {folder}/submitted.sh\necho "Submitted batch job 4242"\n',
        "srun": "#!/bin/sh\nexit 0\n",
        "scancel": f'#!/bin/sh\necho "$@" >> {folder}/cancelled\n',
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_slurm_settings_reach_the_sbatch_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit", reason="the `scale` extra is not installed")
    bin_dir = _fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    s = settings(
        backend="submitit",
        submitit={
            "cluster": "slurm", "folder": str(tmp_path / "sub" / "%j"), "partition": "gpu",
            "gpus_per_node": 2, "cpus_per_task": 8, "mem_gb": 32, "timeout_min": 90,
            "array_parallelism": 2, "setup": ["module load cuda"], "account": "proj",
            "additional_parameters": {"mail-type": "END"},
        },
    )  # fmt: skip
    backend = SubmititBackend(s["submitit"])
    backend.start()
    assert backend.concurrency(3) == 1  # every unit has its own allocation
    backend.submit([Unit(specs=[], base_dir=str(tmp_path)) for _ in range(3)])
    script = (tmp_path / "submitted.sh").read_text()
    for line in (
        "#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --time=90",
        "#SBATCH --account=proj", "#SBATCH --mail-type=END", "#SBATCH --job-name=sam_bench",
        "module load cuda",
    ):  # fmt: skip
        assert line in script.splitlines(), line
    backend.cancel()
    assert "4242_0" in (tmp_path / "cancelled").read_text()


# ---------------------------------------------------------------------------------------------
# Hydra's stock launchers: jobs that track from other machines


def test_remote_jobs_reason() -> None:
    ray = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert remote_jobs_reason({"_target_": ray, "ray": {"init": {"address": None}}}) is None
    assert remote_jobs_reason({"_target_": ray, "ray": {"init": {"address": "local"}}}) is None
    local = {"_target_": ray, "ray": {"init": {"address": "127.0.0.1:6379"}}}
    assert remote_jobs_reason(local) is None
    assert "auto" in str(
        remote_jobs_reason({"_target_": ray, "ray": {"init": {"address": "auto"}}})
    )
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert "SLURM" in str(remote_jobs_reason({"_target_": slurm}))
    local_sub = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    assert remote_jobs_reason({"_target_": local_sub}) is None
    ours = "hydra_plugins.sam_bench_launcher.grouping_launcher.GroupingLauncher"
    assert remote_jobs_reason({"_target_": ours, "backend": "submitit"}) is None


@pytest.mark.usefixtures("hydra_conf")
def test_tracking_store_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def warning(*overrides: str) -> str | None:
        return tracking_store_warning(
            compose("config", overrides=list(overrides), return_hydra_config=True)
        )

    text = warning("hydra/launcher=slurm", "tracking=mlflow")
    assert text is not None and "sqlite:///" in text and "tracking.uri=http" in text
    assert warning("hydra/launcher=ray_cluster", "tracking.uri=sqlite:///runs.db") is not None
    assert warning("hydra/launcher=slurm", "tracking.uri=http://head:5000") is None
    assert warning("hydra/launcher=slurm", "tracking=none") is None
    assert warning("hydra/launcher=ray_local") is None  # this machine
    assert warning("hydra/launcher=sam_bench_slurm") is None  # tracks from here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://head:5000")
    assert warning("hydra/launcher=slurm") is None


def test_a_bad_backend_stops_the_sweep_before_tracking_starts(tmp_path: Path) -> None:
    """The LauncherChecks callback: exit status 2 with the key, no MLflow parent run (no store
    created), no job folder."""
    proc = run_cli(
        ["-m", "hydra.launcher.backend=dask", "model.weights=random", "dataset.limit=1",
         f"hydra.sweep.dir={tmp_path / 'OUT'}", "amg.pred_iou_thresh=0,0.5"],
        tmp_path,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "hydra.launcher.backend" in proc.stderr and "local, ray, submitit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not list((tmp_path / "OUT").glob("*/result.json"))


def test_an_output_folder_that_cannot_be_written_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    from sam_bench.remote import check_output_dir

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as stop:
        check_output_dir(str(blocker / "sweep"))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write the output folder {blocker / 'sweep'}: Not a directory"]
    check_output_dir(str(tmp_path / "new" / "sweep"))  # a folder that can be made is fine
    assert (tmp_path / "new" / "sweep").is_dir() and not list(
        (tmp_path / "new" / "sweep").iterdir()
    )
