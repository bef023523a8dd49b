"""Where a 1-image 4x4 single run's time goes, phase by phase (``bench_small.py``'s command).

Each round runs ``python -m sam_bench dataset.limit=1 amg.points_per_side=4
model.weights=random progress=false`` (MLflow on, into a SQLite store created beforehand,
untimed) in a child process that wraps sam_bench's own functions (Hydra's two compositions,
model build, engine build, warm-up, the timed image, scoring, records, MLflow, console) and
prints each one's wall and CPU seconds, the wall time of Python's full garbage collections
and of the exit (after the last atexit handler). The parent adds the process's CPU time and
prints medians: "beyond the model" is the process less model build, warm-up and the timed
image. ``--baseline DIR`` also runs another checkout (e.g. a ``git worktree`` of an older
commit), interleaved; its functions must have the same names (a phase a checkout lacks is
left out of its figures). The functions are wrapped as their modules are first imported,
where the command imports them: an import made inside a wrapped function (e.g. torchvision's,
in the engine build) counts in that phase, the others only in "process".

With the MLflow helper process (``tracking.background``; ``--background true|false|null``
sets it, ``both`` runs the command with and without it, interleaved), MLflow's import, store
and logging run in the helper: the job's MLflow phases are then its start, the wait for it
before the model build and the hand-off of the record (the answer included), and the
process's CPU is split into the job's own and the helper's.

    .venv/bin/python benchmarks/profile_small.py --repeats 3 --baseline /tmp/old-checkout
    .venv/bin/python benchmarks/profile_small.py --repeats 3 --background both
"""

from __future__ import annotations

import functools
import gc
import importlib
import importlib.abc
import importlib.util
import os
import re
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import checkout_args, checkout_variants

REPO = Path(__file__).resolve().parents[1]
ARGS = ["dataset.limit=1", "amg.points_per_side=4", "model.weights=random", "progress=false"]
#: (module, class or None, function, label) of every phase the child times.
PHASES = [
    ("hydra._internal.hydra", "Hydra", "get_mode", "Hydra compose (mode check)"),
    ("hydra._internal.hydra", "Hydra", "compose_config", "Hydra compose (both)"),
    ("sam_bench.data.registry", None, "build_dataset", "dataset"),
    ("sam_bench.models.build", None, "build_model", "model build + hash"),
    ("sam_bench.engines", None, "fast_engine", "engine build"),
    ("sam_bench.loop", None, "warm_up", "warm-up"),
    ("sam_bench.tasks.amg.task", "AMGTask", "predict", "timed image"),
    ("sam_bench.metrics.instance", "InstanceEvaluator", "process", "scoring"),
    ("sam_bench.run", None, "free_memory", "job-end collection"),
    ("sam_bench.run", None, "write_outcome", "records"),
    ("sam_bench.tracking.mlflow", "MlflowTracker", "job_end", "MLflow"),
    ("sam_bench.tracking.worker", "TrackingWorker", "start", "MLflow helper: start"),
    ("sam_bench.tracking.worker", "TrackingWorker", "wait_ready", "MLflow helper: wait"),
    ("sam_bench.tracking.worker", "TrackingWorker", "job_end", "MLflow helper: hand-off"),
    ("sam_bench.report.console", None, "print_job", "console table"),
]
MODEL = ("model build + hash", "warm-up", "timed image")


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Calls ``patch(module)`` right after each of ``names`` is first imported, where the
    command imports it (so the imports stay on the command's own path)."""

    def __init__(self, names: set[str], patch: Callable[[Any], None]) -> None:
        self.names, self.patch = names, patch

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in self.names:
            return None
        sys.meta_path.remove(self)  # the ordinary finders locate it
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module, patch = spec.loader.exec_module, self.patch

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def child(argv: list[str]) -> None:
    """Run the command in this process with every phase timed; prints ``PHASE`` lines."""
    t0, c0 = time.perf_counter(), time.process_time()
    spans: list[tuple[str, float, float]] = []
    collecting = [0.0, 0.0]  # start of the collection in progress, total seconds

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                collecting[0] = time.perf_counter()
            else:
                collecting[1] += time.perf_counter() - collecting[0]

    gc.callbacks.append(on_gc)

    def timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spans.append((label, time.perf_counter() - w, time.process_time() - c))

        return wrapper

    def patch(module: Any) -> None:
        for name_, cls, fn_name, label in PHASES:
            if name_ != module.__name__:
                continue
            owner = getattr(module, cls) if cls is not None else module
            attr = owner.__dict__[fn_name]
            if isinstance(attr, classmethod):
                setattr(owner, fn_name, classmethod(timed(attr.__func__, label)))
            else:
                setattr(owner, fn_name, timed(attr, label))

    modules = {m for m, *_ in PHASES}
    for loaded in modules & set(sys.modules):
        patch(sys.modules[loaded])
    sys.meta_path.insert(0, _PatchOnImport(modules - set(sys.modules), patch))

    def report() -> None:
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        helper = resource.getrusage(resource.RUSAGE_CHILDREN)  # MLflow helper, git: waited for
        print(f"TOTAL {wall:.3f} {cpu:.3f} {collecting[1]:.3f}", flush=True)
        print(f"HELPER {helper.ru_utime + helper.ru_stime:.3f}", flush=True)
        for label, w, c in spans:
            print(f"PHASE {w:.3f} {c:.3f} {label}", flush=True)

    import atexit

    atexit.register(report)
    sys.argv = ["sam_bench", *argv]
    runpy.run_module("sam_bench", run_name="__main__")


def one_run(checkout: Path, cwd: Path, out: Path, *extra: str) -> dict[str, float]:
    """One child run of ``checkout`` (with ``extra`` overrides): seconds per phase (``label
    [wall]``, ``label [CPU]``)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    script = str(Path(__file__).resolve())
    cmd = [sys.executable, script, "--child", *ARGS, *extra, f"hydra.run.dir={out}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out_: dict[str, float] = {"process [wall]": wall, "process [CPU]": cpu}
    for line in proc.stdout.splitlines():
        if m := re.match(r"TOTAL ([\d.]+) ([\d.]+) ([\d.]+)$", line):
            out_["exit [wall]"] = wall - float(m[1])
            out_["full collections [wall]"] = float(m[3])
        elif m := re.match(r"HELPER ([\d.]+)$", line):
            out_["child processes (MLflow helper, git) [CPU]"] = float(m[1])
            out_["own process [CPU]"] = cpu - float(m[1])
        elif m := re.match(r"PHASE ([\d.]+) ([\d.]+) (.+)$", line):
            for kind, value in (("wall", m[1]), ("CPU", m[2])):
                key = f"{m[3]} [{kind}]"
                out_[key] = out_.get(key, 0.0) + float(value)
    for kind in ("wall", "CPU"):
        model = sum(out_.get(f"{p} [{kind}]", float("nan")) for p in MODEL)
        out_[f"model work [{kind}]"] = model
        out_[f"beyond the model [{kind}]"] = out_[f"process [{kind}]"] - model
    return out_


def run(
    repeats: int = 3, baseline: Path | None = None, background: str | None = None
) -> dict[str, dict[str, float]]:
    """Prints the medians per phase (and the baseline checkout's, or those without the
    MLflow helper, interleaved)."""
    from mlflow.tracking import MlflowClient

    from sam_bench.quiet import quiet_mlflow

    variants = checkout_variants(REPO, baseline, background)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        quiet_mlflow()  # the store a user already has (creating it is a one-off, untimed)
        MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}").search_experiments()
        for r in range(repeats):
            for name, (checkout, overrides) in variants.items():
                got = one_run(checkout, cwd, cwd / f"{name.replace(' ', '_')}{r}", *overrides)
                for key, value in got.items():
                    samples[name].setdefault(key, []).append(value)
                print(f"  round {r + 1} {name:<9} process {got['process [wall]']:5.1f} s wall "
                      f"{got['process [CPU]']:5.1f} s CPU; beyond the model "
                      f"{got['beyond the model [wall]']:5.1f} s wall "
                      f"{got['beyond the model [CPU]']:5.1f} s CPU", flush=True)  # fmt: skip
    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    print(
        f"\n  {'median of ' + str(repeats) + ' (seconds)':<40}" + "".join(f"{n:>10}" for n in med)
    )
    for key in dict.fromkeys(k for m in med.values() for k in m):  # every variant's keys
        print(f"  {key:<40}" + "".join(f"{m.get(key, float('nan')):10.2f}" for m in med.values()))
    return med


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    run(*checkout_args(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
