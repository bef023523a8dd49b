"""Peak memory (process RSS) of the fast engine vs the official generator, per grid size.

One image of the embedded dataset (sam2.1 tiny, random weights, CPU), one configuration per
command, with the default thresholds and keeping every candidate (thresholds 0, NMS 1.0), for
each grid size. Each command's ``peak_rss_mb`` (the job's sampled peak resident set, model and
input included) is read from its ``result.json``. The fast engine must hold no more than the
official generator.

    .venv/bin/python benchmarks/bench_memory.py                 # grids 16 and 32
    .venv/bin/python benchmarks/bench_memory.py --grids 16 32 64
"""

from __future__ import annotations

import argparse

from bench_engines import KEEP_ALL, command
from common import Ratio

SETTINGS = {"default thresholds": [], "keep-all": KEEP_ALL}


def run(grids: tuple[int, ...] = (16, 32), images: int = 1) -> list[Ratio]:
    """Prints and returns the fast engine's peak RSS against the official generator's."""
    rows: list[Ratio] = []
    for grid in grids:
        for label, extra in SETTINGS.items():
            args = [f"amg.points_per_side={grid}", *extra]
            print(f"{grid}x{grid}, {label}, {images} image(s)")
            _, _, fast = command(["engine=fast", *args], images, "fast")
            _, _, ref = command(["engine=reference", *args], images, "official generator")
            print(f"  peak RSS: fast {fast:.0f} MB, official {ref:.0f} MB\n")
            rows.append(
                Ratio(
                    f"bench_memory: {grid}x{grid}, {label}", "fast, peak RSS",
                    "official generator, peak RSS", fast, ref, "MB", "", "<= 1.00x",
                )
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[16, 32], help="points_per_side")
    parser.add_argument("--images", type=int, default=1)
    args = parser.parse_args()
    run(tuple(args.grids), args.images)


if __name__ == "__main__":
    main()
