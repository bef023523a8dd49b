"""``python -m sam_bench.report SWEEP_DIR``: rebuild summary, plots and report of a sweep.

Reads only the sweep directory (the jobs' ``result.json``, ``per_image.csv`` and saved
``masks/``), so a sweep run on another machine can be reported later. Exit status 2 when the
directory holds no job record.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam_bench.record import RESULT_FILE
from sam_bench.report.summary import find_records


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the report, print the paths written; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m sam_bench.report",
        description="Rebuild summary.csv, plots/ and report.md/report.html of a sweep directory.",
    )
    parser.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a sweep directory")
    args = parser.parse_args(argv)
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
