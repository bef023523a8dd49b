"""Each job of a sweep composed once (:mod:`sam_bench.sweep_compose`): Hydra's basic sweeper
checks a batch by composing every job, the launcher then takes those compositions instead of
composing again, and every job's configuration is the one Hydra's own flow gives."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

from fresh import fresh_python, printed
from omegaconf import OmegaConf

from sam_bench.sweep_compose import BASIC_SWEEPER, ComposedOnce, compose_once

#: Runs ``python -m sam_bench ARGS`` counting Hydra's compositions of each job (by its
#: overrides); with ``ORIGINAL`` as first argument, without :func:`compose_once`.
SWEEP = """
import atexit, runpy, sys
from hydra._internal.config_loader_impl import ConfigLoaderImpl
import sam_bench.sweep_compose as sc
if sys.argv[1] == "ORIGINAL":
    sc.compose_once = lambda loader, config: None
load, counts = ConfigLoaderImpl.load_sweep_config, {}
def counted(self, master_config, sweep_overrides):
    key = " ".join(sweep_overrides)
    counts[key] = counts.get(key, 0) + 1
    return load(self, master_config, sweep_overrides)
ConfigLoaderImpl.load_sweep_config = counted
atexit.register(lambda: print("COMPOSED=" + repr(counts)))
sys.argv = ["sam_bench", *sys.argv[2:]]
runpy.run_module("sam_bench", run_name="__main__")
"""


def _sweep(tmp_path: Path, name: str, original: bool) -> tuple[dict[str, int], Path]:
    out = tmp_path / name
    args = ["-m", "dry_run=true", "amg.pred_iou_thresh=0.1,0.2", "amg.points_per_side=4,8",
            "tracking=none", f"hydra.sweep.dir={out}"]  # fmt: skip
    proc = fresh_python(SWEEP, "ORIGINAL" if original else "-", *args, cwd=tmp_path)
    return ast.literal_eval(printed(proc, "COMPOSED=")), out


def test_each_job_is_composed_once_into_the_configuration_hydra_gives(tmp_path: Path) -> None:
    once, here = _sweep(tmp_path, "once", original=False)
    twice, there = _sweep(tmp_path, "twice", original=True)
    assert len(once) == 4 and set(once) == set(twice), (once, twice)
    assert set(twice.values()) == {2}  # Hydra's flow: the sweeper's check, then the launcher
    assert set(once.values()) == {1}
    jobs = sorted(p.name for p in here.iterdir() if (p / ".hydra" / "config.yaml").is_file())
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        for name in ("config.yaml", "overrides.yaml"):
            mine = (here / job / ".hydra" / name).read_text()
            assert mine == (there / job / ".hydra" / name).read_text(), (job, name)
        cfg = OmegaConf.load(here / job / ".hydra" / "config.yaml")
        overrides = OmegaConf.load(here / job / ".hydra" / "overrides.yaml")
        assert f"amg.pred_iou_thresh={cfg.amg.pred_iou_thresh}" in overrides


def test_a_kept_composition_goes_to_the_second_request_only() -> None:
    calls: list[list[str]] = []

    class Loader:  # the interface of Hydra's ConfigLoader that ComposedOnce uses
        def load_sweep_config(self, master_config, sweep_overrides):  # type: ignore[no-untyped-def]
            calls.append(sweep_overrides)
            return OmegaConf.create({"job": list(sweep_overrides)})

    loader = Loader()
    master = OmegaConf.create({"hydra": {"sweeper": {"_target_": BASIC_SWEEPER}}})
    compose_once(loader, master)
    compose_once(loader, master)  # once
    once = loader.load_sweep_config
    assert isinstance(once, ComposedOnce)
    checked = once(master_config=master, sweep_overrides=["a=1"])  # the sweeper's check
    launched = once(master, ["a=1"])  # the launcher
    assert calls == [["a=1"]] and launched == checked and launched is not checked
    assert len(once) == 0
    once(master, ["a=1"])  # a later batch with the same job: composed again
    assert calls == [["a=1"], ["a=1"]]


def test_other_sweepers_compose_as_they_do() -> None:
    loader = SimpleNamespace(load_sweep_config=lambda master_config, sweep_overrides: None)
    original = loader.load_sweep_config
    optuna = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    compose_once(loader, OmegaConf.create({"hydra": {"sweeper": {"_target_": optuna}}}))
    assert loader.load_sweep_config is original
