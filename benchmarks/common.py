"""What every benchmark shares: side-by-side timing and the rows of ``make bench``'s table.

A benchmark measures a variant against the baseline a user would otherwise run (the official
loop, upstream's module), both in the same process or run, taking turns, so a busy machine
slows them alike. Each returns :class:`Ratio` rows; ``benchmarks/run_all.py`` (``make bench``)
prints them as one table with the machine and the date.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Ratio:
    """One measured comparison: ``baseline / subject`` for times (higher is better for the
    subject), or ``subject / baseline`` for sizes, as ``unit`` says."""

    benchmark: str
    """Script and case, e.g. ``bench_prompted: clicks``."""
    subject: str
    """What is measured, e.g. ``sam_bench, batches of 16``."""
    baseline: str
    """What it is compared with, e.g. ``official predict(), one prompt at a time``."""
    subject_value: float
    baseline_value: float
    unit: str
    """``s`` (time: the ratio is baseline / subject, "x faster"), ``MB`` (memory: subject /
    baseline, "x the baseline's"), ``GFLOP/s`` (rate: subject / baseline)."""
    agreement: str = ""
    """How far the subject's output is from the baseline's (e.g. ``min mask IoU 1.000000``)."""
    goal: str = ""
    """The target, e.g. ``>= 2x``."""

    @property
    def ratio(self) -> float:
        if self.unit == "s":
            return self.baseline_value / self.subject_value
        return self.subject_value / self.baseline_value


def interleaved(
    variants: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, Any]]:
    """Median seconds of each variant over ``repeats`` rounds, the variants taking turns
    within each round (so a busy machine slows them alike), and each one's last result."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(v), last[k]) for k, v in times.items()}


def table(rows: list[Ratio]) -> str:
    """Rows as a Markdown table (what the README copies)."""
    head = "| benchmark | subject | baseline | subject | baseline | ratio | agreement | goal |"
    out = [head, "|---|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        out.append(
            f"| {r.benchmark} | {r.subject} | {r.baseline} | {r.subject_value:.4g} {r.unit} "
            f"| {r.baseline_value:.4g} {r.unit} | {r.ratio:.2f}x | {r.agreement} | {r.goal} |"
        )
    return "\n".join(out)


def checkout_args(description: str) -> tuple[int, Path | None, str | None]:
    """``--repeats``, ``--baseline`` and ``--background`` of the benchmarks that time this
    checkout against another one, interleaved (``bench_small.py``, ``profile_small.py``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--baseline", type=Path, default=None,
        help="another sam_bench checkout, timed interleaved with this one",
    )  # fmt: skip
    parser.add_argument(
        "--background", choices=("true", "false", "null", "both"), default=None,
        help="tracking.background of this checkout's commands (default: its config's); "
        "both: with and without the MLflow helper process, interleaved",
    )  # fmt: skip
    args = parser.parse_args()
    return args.repeats, args.baseline, args.background


def checkout_variants(
    repo: Path, baseline: Path | None, background: str | None
) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """The commands ``checkout_args`` asks for: name -> (checkout, extra overrides); this
    checkout is ``this`` (or ``helper`` / ``no helper`` with ``--background both``), the
    other one ``baseline`` (with its own defaults)."""
    variants: dict[str, tuple[Path, tuple[str, ...]]]
    if background == "both":
        variants = {
            "helper": (repo, ("tracking.background=true",)),
            "no helper": (repo, ("tracking.background=false",)),
        }
    else:
        variants = {"this": (repo, (f"tracking.background={background}",) if background else ())}
    if baseline is not None:
        variants["baseline"] = (baseline.resolve(), ())
    return variants
