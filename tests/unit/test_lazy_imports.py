"""Small commands stay cheap: what reading the configuration and a dry run import.

Each check runs in a fresh interpreter (``sys.modules`` of the test session already holds
everything) and fails naming the module that was imported and the chain that pulled it in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fresh import fresh_python, printed

#: Imported only where they are used: the model (torch, sam2, torchvision), tracking (mlflow),
#: figures (matplotlib), the CLIP backends.
HEAVY = ("torch", "torchvision", "sam2", "mlflow", "matplotlib", "open_clip", "transformers")

#: Prints the heavy modules imported by the code run before it (top-level names).
REPORT = (
    "\nimport sys\n"
    f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
    "print('HEAVY=' + ','.join(heavy))\n"
)


def _heavy_after(code: str, tmp_path: Path) -> list[str]:
    proc = fresh_python(code + REPORT, cwd=tmp_path)  # a run that reported nothing fails
    return [m for m in printed(proc, "HEAVY=").split(",") if m]


def test_the_runner_and_the_amg_task_import_no_model_code(tmp_path: Path) -> None:
    code = (
        "import sam_bench.run, sam_bench.loop, sam_bench.sweep_end, sam_bench.engines\n"
        "import sam_bench.engines.encoder_cache, sam_bench.tasks.base\n"
        "from sam_bench.tasks.amg import AMGTask\n"
        "from sam_bench.config import register_configs\n"
        "register_configs()\n"
        "assert AMGTask.spec.name == 'amg'\n"
    )
    assert _heavy_after(code, tmp_path) == []


def test_the_metric_catalogue_imports_scipy_only_with_an_evaluator(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from sam_bench.metrics.catalogue import CATALOGUE\n"
        "import sam_bench.metrics.instance as inst\n"
        "assert 'scipy' not in sys.modules, 'scipy imported by the catalogue'\n"
        "inst.InstanceEvaluator()  # imports scipy before the first timed scoring\n"
        "assert {'scipy.ndimage', 'scipy.optimize'} <= set(sys.modules)\n"
        "import numpy as np\n"
        "r, c = inst._assignment(np.array([[0.0, -1.0], [-1.0, 0.0]]))\n"
        "assert r.tolist() == [0, 1] and c.tolist() == [1, 0]\n"
    )
    assert _heavy_after(code, tmp_path) == []


#: Runs ``python -m sam_bench ARGS`` as the command line does and prints, from the last atexit
#: handler to run (the job has ended), every module name the process has imported.
JOB = (
    "import sys, runpy, atexit\n"
    "atexit.register(lambda: print('MODULES=' + ','.join(sorted(sys.modules))))\n"
    "sys.argv = ['sam_bench', *sys.argv[1:]]\n"
    "runpy.run_module('sam_bench', run_name='__main__')\n"
)


#: Before :data:`JOB`: prints, at exit, the modules first imported once the model build began.
LATE = (
    "import sys, atexit\n"
    "from sam_bench.tasks.amg.task import AMGTask\n"
    "build, seen = AMGTask.build_model.__func__, []\n"
    "def timed_build(cls, cfg, device):\n"
    "    seen.append(set(sys.modules))\n"
    "    return build(cls, cfg, device)\n"
    "AMGTask.build_model = classmethod(timed_build)\n"
    "atexit.register(lambda: print('LATE=' + ','.join(sorted(set(sys.modules) - seen[0]))))\n"
)


def _job_modules(args: list[str], tmp_path: Path, before: str = "") -> tuple[str, set[str]]:
    """The stdout of a job run with ``args`` in a fresh interpreter (after the code
    ``before``), and the modules it had imported when it ended (the run must succeed and
    report them)."""
    proc = fresh_python(before + JOB, *args, "hydra.run.dir=out", cwd=tmp_path)
    modules = set(printed(proc, "MODULES=").split(","))
    assert "sam_bench.run" in modules, sorted(modules)[:50]  # the job ran (the list is not empty)
    return proc.stdout, modules


@pytest.mark.parametrize("task", ["amg"])
def test_a_dry_run_builds_nothing_heavy(task: str, tmp_path: Path) -> None:
    """``dry_run=true`` composes and checks the job, lists the dataset and prints one line:
    none of it needs torch, sam2 or MLflow (the print happens, so the run got that far)."""
    args = [f"task={task}", "dry_run=true", "dataset.limit=1", "model.weights=random"]
    stdout, modules = _job_modules(args, tmp_path)
    assert f"[dry run] task={task}" in stdout, stdout[-2000:]
    assert sorted({m.split(".")[0] for m in modules} & set(HEAVY)) == []


@pytest.mark.slow  # a real job: model build, encoder, 16 prompts (~30 s on a busy CPU)
def test_a_small_amg_run_imports_neither_torchvision_nor_dynamo_nor_sympy(tmp_path: Path) -> None:
    """Issue 24 item 5: the fast engine's single run (``engine=fast``, the default) encodes,
    decodes and suppresses without the torchvision package, whose import costs about a second
    (``torch._dynamo``, through ``torchvision.models``); NMS loads torchvision's compiled
    kernel only (:mod:`sam_bench.engines.nms`)."""
    args = ["dataset.limit=1", "amg.points_per_side=4", "model.weights=random", "progress=false"]
    stdout, modules = _job_modules(args, tmp_path, before=LATE)
    assert {"torch", "sam2", "sam_bench.engines.fast"} <= modules  # the engine ran
    assert (tmp_path / "out" / "result.json").is_file()
    pulled = sorted(m for m in modules if m.split(".")[0] == "torchvision")
    pulled += sorted(m for m in modules if m == "torch._dynamo" or m.startswith("torch._dynamo."))
    # sympy (~0.3 s) is what torch.broadcast_shapes imports on its first call: it would land in
    # the timed decoder stage of the first image
    pulled += sorted(m for m in modules if m.split(".")[0] == "sympy")
    assert pulled == [], pulled[:20]
    # what the task imports once it is created or scores (SciPy, the engine) is imported
    # before the model build (AMGTask.preload), beside a single run's MLflow helper start
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("LATE=")]
    late = set(line[len("LATE=") :].split(","))
    assert "sam2.modeling.sam2_base" in late, line[:2000]  # the build came after the snapshot
    after = sorted(m for m in late if m.split(".")[0] == "scipy" or m.startswith("sam_bench.eng"))
    assert after == [], after[:20]


@pytest.mark.slow  # a real job: model build, encoder, prompts of every instance
def test_a_small_prompted_run_imports_neither_torchvision_nor_dynamo(tmp_path: Path) -> None:
    """The prompted task encodes and prepares prompts with sam_bench's torch-only copy of the
    predictor's image side (``ImageFeatures``), not ``SAM2ImagePredictor``, whose
    ``sam2.utils.transforms`` imports torchvision (~1.4 s with ``torch._dynamo``)."""
    args = ["task=prompted", "dataset.limit=1", "model.weights=random", "progress=false",
            "tracking=none"]  # fmt: skip
    _, modules = _job_modules(args, tmp_path)
    assert {"torch", "sam2", "sam_bench.tasks.prompted.decoder"} <= modules  # it ran
    assert (tmp_path / "out" / "result.json").is_file()
    pulled = sorted(m for m in modules if m.split(".")[0] == "torchvision")
    pulled += sorted(m for m in modules if m == "torch._dynamo" or m.startswith("torch._dynamo."))
    assert pulled == [], pulled[:20]


def test_importing_the_model_modules_leaves_hydra_uninitialised(tmp_path: Path) -> None:
    """``import sam2`` initialises Hydra globally; a user (or a test) that imports sam_bench's
    model builders and then calls ``initialize_config_dir`` must not fail on it."""
    code = (
        "from hydra.core.global_hydra import GlobalHydra\n"
        "import sam_bench.models.build, sam_bench.models.families\n"
        "import sam_bench.models.runtimes.apply, sam_bench.models.runtimes.hf_adapters\n"
        "assert not GlobalHydra.instance().is_initialized(), 'Hydra initialised by an import'\n"
    )
    assert "sam2" not in _heavy_after(code, tmp_path)


@pytest.mark.parametrize("engine", ["fast", "reference", "someone-elses"])
def test_the_amg_task_preloads_what_scoring_and_its_engine_import(engine: str) -> None:
    """Names only (the slow run above checks nothing is left to import after the build)."""
    import importlib.util
    from types import SimpleNamespace

    from sam_bench.engines import ENGINE_MODULES
    from sam_bench.metrics.instance import InstanceEvaluator
    from sam_bench.tasks.amg import AMGTask

    names = AMGTask.preload(SimpleNamespace(engine=engine))  # type: ignore[arg-type]
    own = [ENGINE_MODULES[engine]] if engine in ENGINE_MODULES else []
    assert list(names) == [*InstanceEvaluator.IMPORTS, *own]
    assert all(importlib.util.find_spec(n) is not None for n in names), names
