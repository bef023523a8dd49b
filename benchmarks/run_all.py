"""``make bench``: every benchmark in ``benchmarks/``, then one table of the ratios measured.

Each benchmark times sam_bench against the baseline a user would otherwise run, side by side
in this one run; the table gives both times, the ratio and the outputs' agreement, headed by
the machine, the thread count and the date. The README's speed and memory figures are copied
from this table (absolute times vary with the machine and its load; compare ratios).

    .venv/bin/python benchmarks/run_all.py                 # everything (~1 h on 2 CPU cores)
    .venv/bin/python benchmarks/run_all.py --quick         # smaller sizes (~10 min): a smoke run
    .venv/bin/python benchmarks/run_all.py prompted decoder
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from collections.abc import Callable

import bench_decoder
import bench_engines
import bench_memory
import bench_prompted
import bench_runtimes
import bench_small
import bench_video
import torch
from common import Ratio, table

from sam_bench.environment import cpu_model

#: name -> (full run, quick run).
BENCHMARKS: dict[str, tuple[Callable[[], list[Ratio]], Callable[[], list[Ratio]]]] = {
    "prompted": (bench_prompted.run, lambda: bench_prompted.run(8, 4, 1)),
    "decoder": (bench_decoder.run, lambda: bench_decoder.run(16, (4,), 1)),
    "threshold": (
        lambda: bench_engines.threshold(1),
        lambda: [],  # nine whole commands: no quick form
    ),
    "keep_all": (lambda: bench_engines.keep_all(3), lambda: bench_engines.keep_all(1)),
    "mixed": (lambda: bench_engines.mixed(1), lambda: []),
    "memory": (bench_memory.run, lambda: bench_memory.run((8,))),
    "runtimes": (
        bench_runtimes.run,
        lambda: bench_runtimes.run(("bf16", "onnxruntime", "transformers"), ("tiny",), 1, 1),
    ),
    "small": (lambda: bench_small.run(3), lambda: bench_small.run(1)),
    "video": (lambda: bench_video.run(10, 3), lambda: bench_video.run(3, 1)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (not for the README)")
    args = parser.parse_args()
    unknown = [w for w in args.which if w not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    rows: list[Ratio] = []
    for name in args.which or BENCHMARKS:
        print(f"== {name}", flush=True)
        rows.extend(BENCHMARKS[name][1 if args.quick else 0]())
    if not rows:
        sys.exit("no benchmark ran: nothing to report")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{cpu_model()} ({platform.machine()}), {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {when}{', --quick' if args.quick else ''}; sam2.1 tiny, "
        "random weights, CPU. Ratio: how many times faster than the baseline (times), or the "
        "baseline's share (memory, GFLOP/s).\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
