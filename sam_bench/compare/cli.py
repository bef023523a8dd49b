"""``python -m sam_bench.compare BASELINE CURRENT`` (also ``python -m sam_bench.report compare
BASELINE CURRENT``): the regression check's command line.

Each side is a sweep directory, a ``summary.csv`` or an MLflow run (``runs:/<id>``, or a run
id with ``--tracking-uri``); :mod:`.comparison` compares them. Outputs ``regression.md``, a
self-contained ``regression.html`` and ``regression.json`` (in ``--out``, default the current
sweep's folder), one line per regression on stdout, and the exit status: 0 no regression,
1 regression, 2 could not compare (the reason on stderr), 3 saved outputs not compared (what is
missing is named).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from sam_bench.compare.comparison import EXIT_ERROR, compare
from sam_bench.compare.jobs import CompareError
from sam_bench.compare.sources import load_side
from sam_bench.compare.tolerances import (
    Settings,
    apply_overrides,
    check_timing,
    load_settings,
)

PROG = "python -m sam_bench.report compare"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Compare a sweep with a baseline: per matched configuration (by config_id) and "
            "metric, baseline, current, delta and a verdict (better / same / worse / "
            "regression); timing judged from per-image figures with a bootstrap interval; "
            "saved outputs (save_predictions=true) compared by output kind. "
            "Exit status 0: no regression, 1: regression, 2: could not compare, "
            "3: saved outputs not compared (a prediction output on one side only, items on "
            "one side only, nothing compared, or an output kind without comparer; each named)."
        ),
        epilog=(
            "BASELINE and CURRENT: a sweep directory, a summary.csv, runs:/<run id> or an "
            "MLflow run id. Tolerances: conf/regression/default.yaml (--config), overridden "
            "by --tol NAME=VALUE (0.01 absolute, 20% relative, off: not judged; NAME: a "
            "metric, accuracy / count / cost, masks or video)."
        ),
    )
    parser.add_argument("baseline", metavar="BASELINE", help="the reference run")
    parser.add_argument("current", metavar="CURRENT", help="the run to check")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="folder for regression.md/.html/.json (default: the current sweep's folder, or "
        "./regression for an MLflow run)",
    )  # fmt: skip
    parser.add_argument(
        "--config", type=Path, default=None,
        help="tolerance file (default: sam_bench/conf/regression/default.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--tol", action="append", default=[], metavar="NAME=VALUE",
        help="override a tolerance (repeatable): miou=0.01, latency_ms_p50=20%%, cost=50%%, "
        "model_build_s=off, masks=0.05, labels=0.05",
    )  # fmt: skip
    parser.add_argument(
        "--across", action="append", default=[], metavar="NAME",
        help="compare across a difference (repeatable or comma-separated): dataset, weights, "
        "model, device, dtype, engine, seed, preprocess, or a setting such as "
        "amg.points_per_batch or preprocess.bit_depth; left out of the matching and not a "
        "reason to stop",
    )  # fmt: skip
    parser.add_argument(
        "--tracking-uri", default=None,
        help="MLflow store of run ids (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
        "in the working directory); also accepted as tracking.uri=URI",
    )  # fmt: skip
    parser.add_argument(
        "--min-images",
        type=int,
        default=None,
        help="fewest paired images for a timing verdict (default 5)",
    )
    parser.add_argument(
        "--confidence", type=float, default=None, help="of the bootstrap interval (default 0.95)"
    )
    parser.add_argument(
        "--resamples", type=int, default=None, help="bootstrap resamples (default 2000)"
    )
    parser.add_argument("--seed", type=int, default=None, help="of the bootstrap (default 0)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bars (default: when stderr is a terminal)",
    )  # fmt: skip
    return parser  # fmt: skip


def _argv(argv: list[str]) -> list[str]:
    """``tracking.uri=URI`` (the benchmark's spelling) as ``--tracking-uri URI``."""
    out = []
    for a in argv:
        if a.startswith("tracking.uri="):
            out.extend(["--tracking-uri", a.split("=", 1)[1]])
        else:
            out.append(a)
    return out


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    settings = apply_overrides(settings, list(args.tol))
    timing = settings.timing
    for key in ("min_images", "confidence", "resamples", "seed"):
        value = getattr(args, key)
        if value is not None:
            timing = replace(timing, **{key: value})
    settings.timing = check_timing(timing, "command line: timing")
    return settings


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the comparison; returns the exit status (0, 1, 2 or 3)."""
    from sam_bench.quiet import quiet_mlflow

    quiet_mlflow()  # an MLflow side: no INFO lines unless MLFLOW_LOGGING_LEVEL asks
    parser = build_parser(prog)
    args = parser.parse_args(_argv(list(sys.argv[1:] if argv is None else argv)))
    progress = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    across = [a.strip() for item in args.across for a in item.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="sam_bench_compare_") as scratch:
        try:
            settings = settings_from_args(args)
            sides = [
                load_side(spec, role, tracking_uri=args.tracking_uri, scratch=Path(scratch),
                          progress=progress)
                for spec, role in ((args.baseline, "baseline"), (args.current, "current"))
            ]  # fmt: skip
            comp = compare(sides[0], sides[1], settings, across, progress)
        except CompareError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_ERROR
        out_dir = args.out or comp.current.folder or Path.cwd() / "regression"
        from sam_bench.compare.output import print_summary, write_outputs

        try:
            files = write_outputs(comp, Path(out_dir))
        except OSError as e:
            print(f"error: cannot write the report to {out_dir}: {e}", file=sys.stderr)
            files = []
        print_summary(comp, files)
        return comp.exit_code
