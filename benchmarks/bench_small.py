"""Small commands: what a 1-image, 4x4-grid single run costs beyond the model's own work.

Whole ``python -m sam_bench`` commands, timed side by side in one run (the commands take
turns, ``--repeats`` rounds, medians), on the embedded synthetic dataset with random weights on
CPU (sam2.1 tiny), as a user runs them (default tracking: MLflow, into a SQLite store created
beforehand, untimed, in a temporary folder):

* ``single run``: ``python -m sam_bench dataset.limit=1 amg.points_per_side=4
  model.weights=random`` (warm-up on, MLflow on, the console table);
* ``dry run``: the same with ``dry_run=true`` (configuration composed and checked, nothing
  built).

From the single run's ``result.json``: the model's compute on the timed image (``encoder`` +
``decoder`` + ``postprocess`` stages), the model build (``model_build_s``) and the warm-up
pass (``task_info.warmup.seconds``; a checkout older than that field shows ``n/a``). Two
accountings are printed: "beyond the timed compute" is the single run's wall time less the
timed image's compute (start-up, imports, model build, warm-up, scoring, records, MLflow,
console); "beyond the model" also leaves out the model build and the warm-up pass, the
model's own work. Goal: <= 3 s beyond the model. Each
command's CPU time (user + system, all threads) is printed too: on a machine other processes
share it moves much less than wall time, so it is the figure to compare checkouts by there.
"own" is the CPU time of the command's own process, without its helper processes (a single
run's MLflow helper, ``tracking.background``): on a machine with a free core, the helper's
share runs beside the job, so "own" is the part on the command's path.

``--baseline DIR``: also time the same commands from another checkout of sam_bench (e.g. a
``git worktree`` of an older commit), interleaved with this one, and print both.
``--background true|false|null``: this checkout's ``tracking.background``; ``both``: its
commands with and without the MLflow helper process, interleaved (``helper`` / ``no helper``).

    .venv/bin/python benchmarks/bench_small.py                  # 3 rounds
    .venv/bin/python benchmarks/bench_small.py --repeats 5 --baseline /tmp/old-checkout
    .venv/bin/python benchmarks/bench_small.py --repeats 5 --background both
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Ratio, checkout_args, checkout_variants

REPO = Path(__file__).resolve().parents[1]
ARGS = ["dataset.limit=1", "amg.points_per_side=4", "model.weights=random", "progress=false"]
GOAL_S = 3.0
STAGES = ("encoder", "decoder", "postprocess")


#: ``python -m sam_bench`` that also writes, at its exit, the CPU seconds of the child
#: processes it waited for (its MLflow helper) into HELPER_CPU_FILE.
LAUNCH = """import atexit, os, resource, runpy, sys
def helper():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["HELPER_CPU_FILE"], "w") as f:
        f.write(str(r.ru_utime + r.ru_stime))
atexit.register(helper)
runpy.run_module("sam_bench", run_name="__main__", alter_sys=True)
"""


def command(checkout: Path, cwd: Path, out: Path, *extra: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, every thread, helper processes included)
    and the command's own process's CPU seconds (without its helpers), of one ``python -m
    sam_bench`` run of ``checkout`` (its package first on ``PYTHONPATH``), launched from
    ``cwd``; exits with the command's error when it fails. CPU seconds move less than wall
    time when other processes share the machine."""
    helper_file = out.parent / f".{out.name}.helper_cpu"
    env = dict(os.environ, PYTHONPATH=str(checkout), HELPER_CPU_FILE=str(helper_file))
    cmd = [sys.executable, "-c", LAUNCH, *ARGS, *extra, f"hydra.run.dir={out}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"python -m sam_bench {' '.join(cmd[3:])} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, cpu - float(helper_file.read_text())


def compute_s(job_dir: Path) -> tuple[float, float, float]:
    """The timed image's encoder + decoder + postprocess seconds, the model build's and the
    warm-up pass's (NaN where the record does not say)."""
    record = json.loads((job_dir / "result.json").read_text())
    metrics = record["metrics"]
    compute = sum(metrics[f"{s}_ms_mean"] for s in STAGES) / 1000.0
    warm = ((record.get("task_info") or {}).get("warmup") or {}).get("seconds")
    nan = float("nan")
    return compute, float(metrics.get("model_build_s", nan)), nan if warm is None else warm


def measure(
    variants: dict[str, tuple[Path, tuple[str, ...]]], repeats: int
) -> dict[str, dict[str, float]]:
    """Medians per variant (checkout, extra overrides) of: single run wall, dry run wall,
    compute, model build, warm-up, CPU times."""
    samples: dict[str, dict[str, list[float]]] = {
        name: {
            k: []
            for k in ("run", "dry", "compute", "build", "warm", "run_cpu", "dry_cpu", "run_own")
        }
        for name in variants
    }
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        # the MLflow store a user already has (creating it is a one-off, not timed)
        from mlflow.tracking import MlflowClient

        from sam_bench.quiet import quiet_mlflow

        quiet_mlflow()
        MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}").search_experiments()
        for r in range(repeats):
            for name, (checkout, overrides) in variants.items():
                s, folder = samples[name], name.replace(" ", "_")
                for key, extra in (("dry", ("dry_run=true",)), ("run", ())):
                    out = cwd / f"{folder}-{key}{r}"
                    wall, cpu, own = command(checkout, cwd, out, *overrides, *extra)
                    s[key].append(wall)
                    s[f"{key}_cpu"].append(cpu)
                    if key == "run":
                        s["run_own"].append(own)
                compute, build, warm = compute_s(cwd / f"{folder}-run{r}")
                s["compute"].append(compute)
                s["build"].append(build)
                s["warm"].append(warm)
                print(f"  round {r + 1} {name:<9} run {s['run'][-1]:6.1f} s  dry run "
                      f"{s['dry'][-1]:5.1f} s  model compute {compute:5.1f} s  (CPU: run "
                      f"{s['run_cpu'][-1]:5.1f} s, own {s['run_own'][-1]:5.1f} s, dry run "
                      f"{s['dry_cpu'][-1]:4.1f} s)",
                      flush=True)  # fmt: skip
    return {name: {k: statistics.median(v) for k, v in s.items()} for name, s in samples.items()}


def run(
    repeats: int = 3, baseline: Path | None = None, background: str | None = None
) -> list[Ratio]:
    """Prints the figures (and the baseline checkout's, or those without the MLflow helper,
    interleaved) and returns them."""
    print(f"small command: 1 image, 4x4 grid, single run and dry run, {repeats} round(s)")
    med = measure(checkout_variants(REPO, baseline, background), repeats)
    rows = []
    for name, m in med.items():
        beyond_timed = m["run"] - m["compute"]
        model = m["compute"] + m["build"] + m["warm"]
        beyond = m["run"] - model

        def s_(x: float) -> str:
            return "n/a" if math.isnan(x) else f"{x:.1f} s"

        print(f"  {name:<9} single run {m['run']:6.1f} s = timed compute {m['compute']:5.1f} s "
              f"+ beyond it {beyond_timed:5.1f} s; = model work {s_(model)} (timed "
              f"{m['compute']:.1f} s, build {m['build']:.1f} s, warm-up {s_(m['warm'])}) + "
              f"beyond the model {s_(beyond)} (goal <= {GOAL_S:.0f} s); dry run "
              f"{m['dry']:5.1f} s; CPU time: run {m['run_cpu']:5.1f} s (own "
              f"{m['run_own']:5.1f} s, child processes: MLflow helper, git "
              f"{m['run_cpu'] - m['run_own']:4.1f} s), dry run {m['dry_cpu']:4.1f} s")  # fmt: skip
        label = {"this": "", "baseline": " (baseline checkout)"}.get(name, f" ({name})")
        rows += [
            Ratio(f"bench_small: 1 image, 4x4{label}", "single run, beyond the timed compute",
                  "the timed image's compute (encoder+decoder+postprocess)", beyond_timed,
                  m["compute"], "s"),
            Ratio(f"bench_small: 1 image, 4x4{label}", "single run, beyond the model",
                  "the model's work (timed compute + build + warm-up)", beyond, model,
                  "s", "", f"beyond <= {GOAL_S:.0f} s"),
            Ratio(f"bench_small: 1 image, 4x4{label}", "dry run", "single run", m["dry"],
                  m["run"], "s"),
        ]  # fmt: skip
    for a, b in (("this", "baseline"), ("helper", "no helper"), ("helper", "baseline")):
        if a not in med or b not in med:
            continue
        this, base = med[a], med[b]
        beyond = (this["run"] - this["compute"]) / (base["run"] - base["compute"])
        print(f"  {a} / {b}: single run {this['run'] / base['run']:.2f}x, dry run "
              f"{this['dry'] / base['dry']:.2f}x, beyond the timed compute {beyond:.2f}x; "
              f"CPU time: run {this['run_cpu'] / base['run_cpu']:.2f}x (own "
              f"{this['run_own'] / base['run_own']:.2f}x), dry run "
              f"{this['dry_cpu'] / base['dry_cpu']:.2f}x")  # fmt: skip
    print()
    return rows


def main() -> None:
    run(*checkout_args(__doc__.splitlines()[0]))


if __name__ == "__main__":
    main()
