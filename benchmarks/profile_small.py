"""Where a 1-image 4x4 single run's time goes, phase by phase (``bench_small.py``'s command).

Each round runs ``python -m sam_bench dataset.limit=1 amg.points_per_side=4
model.weights=random progress=false`` (MLflow on, into a SQLite store created beforehand,
untimed) in a child process that wraps sam_bench's own functions (Hydra's two compositions,
model build, engine build, warm-up, the timed image, scoring, records, MLflow, console) and
prints each one's wall and CPU seconds, the wall time of Python's full garbage collections
and of the exit (after the last atexit handler). The parent adds the process's CPU time and
prints medians: "beyond the model" is the process less model build, warm-up and the timed
image. ``--baseline DIR`` also runs another checkout (e.g. a ``git worktree`` of an older
commit), interleaved; its functions must have the same names. The wrapped modules are
imported before the command starts (torch among them), so their import time falls in
"process", not in a phase.

    .venv/bin/python benchmarks/profile_small.py --repeats 3 --baseline /tmp/old-checkout
"""

from __future__ import annotations

import functools
import gc
import importlib
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

from common import checkout_args

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
    ("sam_bench.report.console", None, "print_job", "console table"),
]
MODEL = ("model build + hash", "warm-up", "timed image")


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

    for module, cls, name, label in PHASES:
        owner: Any = importlib.import_module(module)
        if cls is not None:
            owner = getattr(owner, cls)
        attr = owner.__dict__[name] if cls is not None else getattr(owner, name)
        if isinstance(attr, classmethod):
            setattr(owner, name, classmethod(timed(attr.__func__, label)))
        else:
            setattr(owner, name, timed(attr, label))

    def report() -> None:
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"TOTAL {wall:.3f} {cpu:.3f} {collecting[1]:.3f}", flush=True)
        for label, w, c in spans:
            print(f"PHASE {w:.3f} {c:.3f} {label}", flush=True)

    import atexit

    atexit.register(report)
    sys.argv = ["sam_bench", *argv]
    runpy.run_module("sam_bench", run_name="__main__")


def one_run(checkout: Path, cwd: Path, out: Path) -> dict[str, float]:
    """One child run of ``checkout``: seconds per phase (``label [wall]``, ``label [CPU]``)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *ARGS, f"hydra.run.dir={out}"]
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
        elif m := re.match(r"PHASE ([\d.]+) ([\d.]+) (.+)$", line):
            for kind, value in (("wall", m[1]), ("CPU", m[2])):
                key = f"{m[3]} [{kind}]"
                out_[key] = out_.get(key, 0.0) + float(value)
    for kind in ("wall", "CPU"):
        model = sum(out_.get(f"{p} [{kind}]", float("nan")) for p in MODEL)
        out_[f"model work [{kind}]"] = model
        out_[f"beyond the model [{kind}]"] = out_[f"process [{kind}]"] - model
    return out_


def run(repeats: int = 3, baseline: Path | None = None) -> dict[str, dict[str, float]]:
    """Prints the medians per phase (and the baseline checkout's, interleaved)."""
    from mlflow.tracking import MlflowClient

    from sam_bench.quiet import quiet_mlflow

    checkouts = {"this": REPO, **({"baseline": baseline.resolve()} if baseline else {})}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        quiet_mlflow()  # the store a user already has (creating it is a one-off, untimed)
        MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}").search_experiments()
        for r in range(repeats):
            for name, checkout in checkouts.items():
                got = one_run(checkout, cwd, cwd / f"{name}{r}")
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
    for key in med["this"]:
        print(f"  {key:<40}" + "".join(f"{m.get(key, float('nan')):10.2f}" for m in med.values()))
    return med


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
        return
    run(*checkout_args(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
