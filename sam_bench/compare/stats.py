"""The noise-aware test of per-image figures: a seeded bootstrap interval of a ratio.

For a cost metric that aggregates per-image figures (``latency_ms_p50`` is the median of the
``latency_ms`` column), the statistic is recomputed on resamples of the images and the ratio
current / baseline taken on each resample. When both sides measured the same images (the
usual case: the same dataset), the resamples are **paired** -- the same image ids on both
sides -- so the differences between images (a dense scene is slower than a plain one) cancel
and only the run-to-run noise remains. Otherwise each side is resampled on its own.

The interval is the percentile interval of the resampled ratios (``confidence``, default 95%).
The generator is seeded, so the same inputs always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
"""Reduces the last axis of an array (one row per resample)."""

STATISTICS: dict[str, Statistic] = {
    "mean": lambda a: np.mean(a, axis=-1),
    "median": lambda a: np.median(a, axis=-1),
    "p90": lambda a: np.percentile(a, 90, axis=-1),  # as cost_summary computes latency_ms_p90
    "max": lambda a: np.max(a, axis=-1),
}
#: Resamples computed at once (bounds memory for large datasets).
CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class RatioEstimate:
    """``statistic(current) / statistic(baseline)`` and its bootstrap interval."""

    ratio: float
    low: float
    high: float
    n: int
    """Images used (paired: images measured on both sides)."""
    paired: bool
    confidence: float

    def inverted(self) -> RatioEstimate:
        """The estimate of ``1 / ratio`` (a throughput from a latency)."""

        def inv(x: float) -> float:
            return 1.0 / x if x else math.inf

        return RatioEstimate(
            inv(self.ratio), inv(self.high), inv(self.low), self.n, self.paired, self.confidence
        )


def _stats_of(values: np.ndarray, idx: np.ndarray, stat: Statistic) -> np.ndarray:
    out = []
    rows = max(1, CHUNK_ELEMENTS // max(1, idx.shape[1]))
    for start in range(0, idx.shape[0], rows):
        out.append(stat(values[idx[start : start + rows]]))
    return np.concatenate(out)


def bootstrap_ratio(
    baseline: np.ndarray,
    current: np.ndarray,
    statistic: str,
    *,
    paired: bool,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RatioEstimate:
    """The ratio ``statistic(current) / statistic(baseline)`` with its percentile bootstrap
    interval. ``paired``: ``baseline[i]`` and ``current[i]`` are the same image (then both
    arrays have the same length and are resampled with the same indices).

    Raises ``ValueError`` for empty input, unequal paired lengths or a statistic of 0 on the
    baseline side.
    """
    stat = STATISTICS[statistic]
    base = np.asarray(baseline, dtype=float)
    cur = np.asarray(current, dtype=float)
    if base.size == 0 or cur.size == 0:
        raise ValueError("no values")
    if paired and base.shape != cur.shape:
        raise ValueError("paired samples need equal lengths")
    point_base = float(stat(base))
    if point_base == 0:
        raise ValueError("the baseline statistic is 0")
    ratio = float(stat(cur)) / point_base
    rng = np.random.default_rng(seed)
    idx_b = rng.integers(0, base.size, size=(resamples, base.size))
    idx_c = idx_b if paired else rng.integers(0, cur.size, size=(resamples, cur.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = _stats_of(cur, idx_c, stat) / _stats_of(base, idx_b, stat)
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        raise ValueError("no finite resampled ratio")
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(q) for q in np.quantile(ratios, [alpha, 1.0 - alpha]))
    n = base.size if paired else min(base.size, cur.size)
    return RatioEstimate(ratio, low, high, n, paired, confidence)


def ratio_verdict(est: RatioEstimate, lower_is_better: bool, tolerance: float) -> str:
    """The verdict of a ratio estimate (current / baseline of a metric):

    * ``regression``: the whole interval is beyond the tolerance on the bad side (evidence of
      a change larger than the tolerance);
    * ``worse``: the whole interval is on the bad side of 1, not all of it beyond the
      tolerance;
    * ``better``: the whole interval is on the good side of 1;
    * ``same``: the interval contains 1 (no evidence of a change).
    """
    if lower_is_better:
        if est.low > 1.0 + tolerance:
            return "regression"
        if est.low > 1.0:
            return "worse"
        if est.high < 1.0:
            return "better"
        return "same"
    if est.high < 1.0 - tolerance:
        return "regression"
    if est.high < 1.0:
        return "worse"
    if est.low > 1.0:
        return "better"
    return "same"
