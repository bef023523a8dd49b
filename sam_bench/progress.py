"""Progress bars (tqdm, on stderr): one overall bar for a sweep, one per group of jobs over its
items, and one inside an item that takes long (prompt batches).

* **Sweep** (:class:`SweepBar`): sam_bench's launcher opens one bar over every job of the
  sweep (``total`` = the number of jobs). A group of ``k`` jobs computed together over ``n``
  items moves it by ``k / n`` per item, so it advances smoothly across groups and jobs and its
  estimate of the time left covers the whole sweep; a job that ends (finished, reused or
  failed early) counts as one whole job.
* **Items**: the per-item loop (:mod:`sam_bench.loop`) shows the group's items with their total.
* **Inside an item** (:func:`inner`): work that reports steps (the AMG engines count the
  prompts of their decoder batches) gets a bar that appears only once the item has taken
  :data:`INNER_DELAY_S` seconds, so short items stay quiet and a 64x64 grid on one large image
  still shows that it moves.

``progress=false`` turns every bar off (:func:`configure`). The bars are per process: with
another launcher (joblib, Ray, submitit) each process shows its own item bars.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

INNER_DELAY_S = 5.0
"""Seconds an item runs before its inner (prompt batch) bar appears."""

_enabled = True
_sweep: SweepBar | None = None


def configure(enabled: bool) -> None:
    """Turn the item and inner bars on or off (the running job's ``progress`` setting)."""
    global _enabled
    _enabled = bool(enabled)


def enabled() -> bool:
    return _enabled


def job_key(job_dir: Path | str) -> str:
    """How a job is named to the sweep bar: its folder, resolved."""
    return str(Path(job_dir).resolve())


class SweepBar:
    """The sweep's overall bar: the fraction of each job done, summed (see module doc)."""

    def __init__(
        self, jobs: Iterable[Path | str], *, enabled: bool = True, total: int | None = None
    ) -> None:
        self.done: dict[str, float] = {job_key(j): 0.0 for j in jobs}
        self.total = max(total or 0, len(self.done))
        self.bar: Any = tqdm(
            total=self.total,
            desc="sweep",
            unit="job",
            disable=not enabled or not self.total,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.0f} jobs "
            "[{elapsed}<{remaining}]",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def add(self, jobs: Iterable[Path | str]) -> None:
        """More jobs of the same sweep (a sweeper that launches in batches, e.g. Optuna's
        trials); the total grows if they pass it."""
        for j in jobs:
            self.done.setdefault(job_key(j), 0.0)
        if len(self.done) > self.total:
            self.total = len(self.done)
            self.bar.total = self.total
            self.bar.refresh()

    @property
    def complete(self) -> bool:
        """Every job the bar expects ended."""
        return len(self.done) >= self.total and self.jobs_done >= self.total

    @property
    def jobs_done(self) -> float:
        return sum(self.done.values())

    def set_fraction(self, jobs: Iterable[Path | str], fraction: float) -> None:
        """Each of ``jobs`` is ``fraction`` done (never goes back; unknown jobs ignored)."""
        changed = False
        for j in jobs:
            key = job_key(j)
            if key in self.done and fraction > self.done[key]:
                self.done[key] = min(1.0, fraction)
                changed = True
        if changed:
            self.bar.n = self.jobs_done
            self.bar.refresh()

    def finish(self, job: Path | str) -> None:
        """The job ended (finished, reused, failed): it counts whole."""
        self.set_fraction([job], 1.0)

    def close(self) -> None:
        self.bar.close()


def start_sweep(
    jobs: Iterable[Path | str], *, enabled: bool = True, total: int | None = None
) -> SweepBar:
    """Open the sweep bar of this process (a previous one is closed); ``total``: jobs the
    sweep will have when it launches them in batches (more than ``jobs``)."""
    global _sweep
    if _sweep is not None:
        _sweep.close()
    _sweep = SweepBar(jobs, enabled=enabled, total=total)
    return _sweep


def end_sweep() -> None:
    global _sweep
    if _sweep is not None:
        _sweep.close()
        _sweep = None


def current_sweep() -> SweepBar | None:
    return _sweep


def report_items(jobs: Iterable[Path | str], done: int, total: int) -> None:
    """``done`` of ``total`` items of ``jobs`` (a group computed together) are finished."""
    if _sweep is not None and total > 0:
        _sweep.set_fraction(jobs, done / total)


class _Quiet:
    """An inner bar that shows nothing (progress off)."""

    def update(self, n: int = 1) -> None:
        return None


@contextlib.contextmanager
def inner(total: int, desc: str, unit: str) -> Iterator[Any]:
    """A bar of steps inside one item (``update(n)`` per step); it appears only after
    :data:`INNER_DELAY_S` seconds and is removed when the item ends."""
    if not _enabled or total <= 0:
        yield _Quiet()
        return
    bar = tqdm(
        total=total, desc=desc, unit=unit, leave=False, delay=INNER_DELAY_S, file=sys.stderr,
        dynamic_ncols=True,
    )  # fmt: skip
    try:
        yield bar
    finally:
        bar.close()
