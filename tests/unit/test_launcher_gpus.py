"""GPUs a launcher reserves follow the job's device (issue: the Ray presets asked for
``num_gpus: 0``, and Ray then hides every GPU: ``device=auto`` ran on the CPU without a word,
``device=cuda`` failed).

* the presets of ``conf/hydra/launcher/`` composed with each device, and Hydra's own
  instantiation of the Ray launcher (what ``ray.remote`` receives);
* sam_bench's launcher: each unit's GPUs from its jobs' devices, on Ray (a stand-in ``ray``
  module records the task options; no Ray instance is started) and on SLURM (submitit against
  stand-in ``sbatch`` / ``srun``);
* a job that asked for CUDA and finds the GPUs hidden fails with who hid them.
"""

from __future__ import annotations

import os
import stat
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hydra import compose
from omegaconf import OmegaConf

from sam_bench import environment
from sam_bench.config import register_configs
from sam_bench.environment import CudaStatus, gpus_for_device, hidden_gpu_hint
from sam_bench.errors import ConfigError
from sam_bench.remote import RayBackend, SubmititBackend, Unit, launcher_settings, unit_devices

register_configs()


def fake_cuda(monkeypatch: pytest.MonkeyPatch, available: bool) -> None:
    """This machine's CUDA as :func:`sam_bench.environment.cuda_status` reports it."""
    status = CudaStatus(
        "12.4", None, "550.54" if available else None, "12.4" if available else None,
        available, 1 if available else 0, None if available else "torch sees no CUDA device",
    )  # fmt: skip
    monkeypatch.setattr(environment, "cuda_status", lambda: status)


# ---------------------------------------------------------------------------------------------
# the rule


@pytest.mark.parametrize(
    ("device", "per_job", "auto_uses_gpu", "expected"),
    [
        ("cpu", 1, True, 0), ("cuda", 1, False, 1), ("cuda:1", 1, False, 1),
        ("cuda", 0.5, False, 0.5), ("cuda", 2.0, False, 2), ("auto", 1, True, 1),
        ("auto", 0.25, True, 0.25), ("auto", 1, False, 0),
    ],
)  # fmt: skip
def test_gpus_for_device(device: str, per_job: float, auto_uses_gpu: bool, expected: Any) -> None:
    got = gpus_for_device(device, per_job, auto_uses_gpu)
    assert got == expected and type(got) is type(expected)  # whole numbers are ints (SLURM)


@pytest.mark.parametrize(("device", "per_job"), [("tpu", 1), ("cuda", 0), ("cuda", -1)])
def test_gpus_for_device_refuses_nonsense(device: str, per_job: float) -> None:
    with pytest.raises(ConfigError):
        gpus_for_device(device, per_job)


# ---------------------------------------------------------------------------------------------
# the presets (Hydra's Ray and submitit launchers)

PRESETS = {  # preset: (key of the GPUs in hydra.launcher, {device: GPUs})
    "ray_local": ("ray.remote.num_gpus", {"cpu": 0, "cuda": 1, "cuda:1": 1}),
    "ray_cluster": ("ray.remote.num_gpus", {"cpu": 0, "cuda": 1, "cuda:1": 1, "auto": 1}),
    "slurm": ("gpus_per_node", {"cpu": None, "cuda": 1, "cuda:1": 1, "auto": 1}),
}


@pytest.mark.usefixtures("hydra_conf")
@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_reserve_gpus_from_the_device(preset: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `scale` extra is missing")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    fake_cuda(monkeypatch, available=False)
    key, table = PRESETS[preset]
    for device, expected in table.items():
        cfg = compose(
            "config", overrides=[f"hydra/launcher={preset}", f"device={device}"],
            return_hydra_config=True,
        )  # fmt: skip
        assert OmegaConf.select(cfg.hydra.launcher, key) == expected, (preset, device)


@pytest.mark.usefixtures("hydra_conf")
@pytest.mark.parametrize("available", [True, False])
def test_ray_local_auto_reserves_a_gpu_when_this_machine_has_one(
    available: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `scale` extra is missing")
    fake_cuda(monkeypatch, available)
    cfg = compose("config", overrides=["hydra/launcher=ray_local"], return_hydra_config=True)
    assert cfg.device == "auto"
    assert cfg.hydra.launcher.ray.remote.num_gpus == (1 if available else 0)


@pytest.mark.usefixtures("hydra_conf")
def test_hydra_ray_launcher_receives_the_gpus_of_device_cuda(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Hydra instantiates the launcher (resolving its config) as for a run: the options it
    hands to ``ray.remote``, including a documented fraction and a plain number."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `scale` extra is missing")
    from hydra.core.plugins import Plugins

    fake_cuda(monkeypatch, available=False)  # the launching machine has no GPU: cuda still asks
    cases = {
        (): 1,
        ("hydra.launcher.ray.remote.num_gpus='${sam_bench.gpus:${device},0.5,this_machine}'",): 0.5,
        ("hydra.launcher.ray.remote.num_gpus=2",): 2,
    }
    for extra, expected in cases.items():
        cfg = compose(
            "config", overrides=["hydra/launcher=ray_local", "device=cuda", *extra],
            return_hydra_config=True,
        )  # fmt: skip
        launcher = Plugins.instance()._instantiate(cfg.hydra.launcher)
        remote = OmegaConf.to_container(launcher.ray_cfg.remote, resolve=True)
        assert remote == {"num_cpus": 1, "num_gpus": expected}, extra


def test_a_bad_gpu_share_names_the_resolver() -> None:
    """The resolver the presets use, resolved as a launcher node would be (no `scale` extra
    needed: CI runs without it, and this rule is ours, not Ray's)."""
    node = OmegaConf.create(
        {"device": "cuda", "remote": {"num_gpus": "${sam_bench.gpus:${device},1,somewhere}"}}
    )
    with pytest.raises(Exception, match=r"sam_bench\.gpus.*this_machine, cuda, cpu"):
        OmegaConf.select(node, "remote.num_gpus", throw_on_resolution_failure=True)


@pytest.mark.usefixtures("hydra_conf")
def test_a_bad_gpu_share_in_the_ray_preset_names_the_resolver() -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `scale` extra is missing")
    cfg = compose(
        "config",
        overrides=[
            "hydra/launcher=ray_local", "device=cuda",
            "hydra.launcher.ray.remote.num_gpus='${sam_bench.gpus:${device},1,somewhere}'",
        ],
        return_hydra_config=True,
    )  # fmt: skip
    with pytest.raises(Exception, match=r"sam_bench\.gpus.*this_machine, cuda, cpu"):
        OmegaConf.select(
            cfg.hydra.launcher, "ray.remote.num_gpus", throw_on_resolution_failure=True
        )


# ---------------------------------------------------------------------------------------------
# sam_bench's launcher: each unit from its jobs' device


@pytest.mark.usefixtures("hydra_conf")
def test_sam_bench_presets_follow_the_device() -> None:
    pytest.importorskip("ray", reason="the `scale` extra is missing")
    pytest.importorskip("submitit", reason="the `scale` extra is missing")
    cfg = compose("config", overrides=["hydra/launcher=sam_bench_ray"], return_hydra_config=True)
    s = launcher_settings(cfg.hydra.launcher)["ray"]
    assert (s["num_gpus"], s["gpus_per_job"]) == ("auto", 1)
    cfg = compose(
        "config",
        overrides=["hydra/launcher=sam_bench_slurm", "hydra.launcher.submitit.cluster=local"],
        return_hydra_config=True,
    )
    assert launcher_settings(cfg.hydra.launcher)["submitit"]["gpus_per_node"] == "auto"
    for bad in ({"ray": {"num_gpus": "some"}}, {"ray": {"gpus_per_job": 0}}):
        with pytest.raises(ConfigError, match=r"hydra\.launcher\.ray"):
            launcher_settings(bad)


def test_unit_devices() -> None:
    configs = [OmegaConf.create({"device": d}) for d in ("cuda", "cpu", "cuda")]
    assert unit_devices(configs) == ["cuda", "cpu"]
    assert unit_devices([OmegaConf.create({})]) == ["auto"]


class Ref:
    """What the stand-in Ray returns for a submitted task: its options and unit."""

    def __init__(self, options: dict[str, Any], unit: Unit) -> None:
        self.options, self.unit = options, unit


class FakeRay(types.ModuleType):
    """The few ``ray`` calls :class:`RayBackend` makes, against nodes given here; every
    ``ray.remote(...).options(...)`` is recorded, and ``.remote(unit)`` returns a :class:`Ref`."""

    def __init__(self, nodes: list[dict[str, float]]) -> None:
        super().__init__("ray")
        self.node_resources = nodes
        self.options_seen: list[dict[str, Any]] = []

    def is_initialized(self) -> bool:
        return True

    def nodes(self) -> list[dict[str, Any]]:
        return [{"Alive": True, "Resources": r} for r in self.node_resources]

    def remote(self, fn: Any) -> Any:
        ray = self

        class Task:
            def options(self, **options: Any) -> Any:
                ray.options_seen.append(options)
                return types.SimpleNamespace(remote=lambda unit: Ref(options, unit))

        return Task()


def ray_backend(monkeypatch, nodes, **ray_settings) -> tuple[RayBackend, FakeRay]:  # type: ignore[no-untyped-def]
    fake = FakeRay(nodes)
    monkeypatch.setitem(sys.modules, "ray", fake)
    settings = launcher_settings({"ray": ray_settings})["ray"]
    return RayBackend(settings), fake


def test_ray_units_reserve_gpus_from_their_device(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend, fake = ray_backend(monkeypatch, [{"CPU": 8, "GPU": 2}])
    backend.start([["cpu"], ["cuda"], ["auto"], ["cuda:1"]])
    assert [backend.unit_gpus(i) for i in range(4)] == [0, 1, 1, 1]
    assert sorted(o["num_gpus"] for o in fake.options_seen) == [0, 1]
    units = [Unit(specs=[], base_dir=str(i)) for i in range(4)]
    backend.submit(units)
    sent = {ref.unit.base_dir: ref.options["num_gpus"] for ref in backend._pending}
    assert sent == {"0": 0, "1": 1, "2": 1, "3": 1}
    assert backend.concurrency(4) == 2  # two GPUs, one per unit
    assert "0/1 GPU" in backend.describe()


def test_ray_units_share_a_gpu_by_the_documented_fraction(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend, fake = ray_backend(monkeypatch, [{"CPU": 8, "GPU": 1}], gpus_per_job=0.5)
    backend.start([["cuda"], ["cuda"], ["cuda"]])
    assert [o["num_gpus"] for o in fake.options_seen] == [0.5]
    assert backend.concurrency(3) == 2


def test_ray_auto_runs_on_the_cpu_where_the_instance_has_no_gpu(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend, fake = ray_backend(monkeypatch, [{"CPU": 8}])
    backend.start([["auto"], ["cpu"]])
    assert [o["num_gpus"] for o in fake.options_seen] == [0]


def test_ray_cuda_units_without_a_gpu_node_fail_naming_the_device(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend, _ = ray_backend(monkeypatch, [{"CPU": 8}])  # a Ray instance started here
    with pytest.raises(ConfigError) as err:
        backend.start([["cuda"]])
    assert err.value.key == "hydra.launcher.ray.num_gpus"
    assert "device=cuda" in str(err.value) and "0 GPU" in str(err.value)


def test_ray_a_number_reserves_that_for_every_unit(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    backend, fake = ray_backend(monkeypatch, [{"CPU": 8, "GPU": 1}], num_gpus=0.25)
    backend.start([["cpu"], ["cuda"]])
    assert [o["num_gpus"] for o in fake.options_seen] == [0.25]


def test_slurm_units_ask_for_gpus_from_their_device(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """cpu and cuda units go into two job arrays: only the cuda one asks for a GPU."""
    pytest.importorskip("submitit", reason="the `scale` extra is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": f'#!/bin/sh\ncat "$1" >> {tmp_path}/submitted.sh\necho "Submitted batch job 4"\n',
        "srun": "#!/bin/sh\nexit 0\n",
        "scancel": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755 | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    s = launcher_settings(
        {"backend": "submitit", "submitit": {"cluster": "slurm", "folder": str(tmp_path / "%j")}}
    )
    backend = SubmititBackend(s["submitit"])
    backend.start([["cpu"], ["cuda"], ["auto"], ["cpu"]])
    assert [backend.unit_gpus(i) for i in range(4)] == [0, 1, 1, 0]
    backend.submit([Unit(specs=[], base_dir=str(tmp_path)) for _ in range(4)])
    arrays = (tmp_path / "submitted.sh").read_text().split("#!/bin/bash")[1:]
    assert len(arrays) == 2
    cpu, gpu = arrays
    assert "#SBATCH --array=0-1%2" in cpu and "--gpus-per-node" not in cpu
    assert "#SBATCH --array=0-1%2" in gpu and "#SBATCH --gpus-per-node=1" in gpu
    assert len(backend._jobs) == 4 and all(job is not None for job in backend._jobs)


def test_submitit_local_auto_asks_for_a_gpu_only_where_this_machine_has_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit", reason="the `scale` extra is not installed")
    s = launcher_settings(
        {"backend": "submitit", "submitit": {"cluster": "local", "folder": str(tmp_path / "%j")}}
    )
    for available, expected in ((False, 0), (True, 1)):
        fake_cuda(monkeypatch, available)
        backend = SubmititBackend(s["submitit"])
        backend.start([["auto"], ["cuda"]])
        assert [backend.unit_gpus(0), backend.unit_gpus(1)] == [expected, 1]


# ---------------------------------------------------------------------------------------------
# the job's side: asked for CUDA, finds the GPUs hidden


def test_hidden_gpu_hint_names_who_hid_them() -> None:
    assert "Ray hides the GPUs" in hidden_gpu_hint({}, ray_task=True)
    assert "allocation has no GPU" in hidden_gpu_hint({"SLURM_JOB_ID": "7"}, ray_task=False)
    assert "allocation has no GPU" in hidden_gpu_hint({"SUBMITIT_LOCAL_JOB_ID": "7"}, False)
    assert hidden_gpu_hint({}, ray_task=False) == ""


def test_device_cuda_with_hidden_gpus_fails_with_the_reason(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import torch

    if torch.version.cuda is None:
        pytest.skip("torch is built without CUDA: cuda_status stops at that reason")
    if environment.cuda_status().available:
        pytest.skip("CUDA is usable here")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    with pytest.raises(ConfigError) as err:
        environment.resolve_device("cuda")
    text = str(err.value)
    assert "cuda was requested but CUDA is unavailable" in text
    assert "CUDA_VISIBLE_DEVICES='' hides every GPU" in text and "gpus_per_node" in text
