"""``python -m sam_bench.report SWEEP_DIR``: rebuild summary, plots and report of a sweep.

Reads only the sweep directory (the jobs' ``result.json``, ``per_image.csv`` and saved
``masks/``), so a sweep run on another machine can be reported later. Exit status 2 when the
directory holds no job record.

``python -m sam_bench.report compare BASELINE CURRENT``: the regression check
(:mod:`sam_bench.compare`, also ``python -m sam_bench.compare``; ``compare --help``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam_bench.layout import RESULT_FILE
from sam_bench.report.summary import find_records


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the report, print the paths written; returns the exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["compare"] and not (len(args_in) == 1 and Path("compare").is_dir()):
        from sam_bench.compare.cli import main as compare_main

        return compare_main(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="python -m sam_bench.report",
        description="Rebuild summary.csv, plots/ and report.md/report.html of a sweep directory.",
        epilog="Regression check against a baseline: python -m sam_bench.report compare "
        "BASELINE CURRENT (see compare --help).",
    )
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a sweep directory")
    args = parser.parse_args(args_in)
    sweep_dir: Path = args.sweep_dir
    if not sweep_dir.is_dir():
        print(f"error: {sweep_dir} is not a directory", file=sys.stderr)
        return 2
    if not find_records(sweep_dir):
        print(
            f"error: no job record ({sweep_dir}/<job>/{RESULT_FILE}) found in {sweep_dir}",
            file=sys.stderr,
        )
        return 2
    from sam_bench.report.document import build_report  # matplotlib: only when needed

    for path in build_report(sweep_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
