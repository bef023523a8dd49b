"""The noise-aware timing test (paired bootstrap of a ratio) and the point verdicts, on
hand-made figures whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sam_bench.metrics.cost  # noqa: F401  (declares the cost metrics)
from sam_bench.compare import stats
from sam_bench.compare.judge import judge_per_image, per_image_source, point_verdict
from sam_bench.compare.stats import RatioEstimate, bootstrap_ratio, ratio_verdict
from sam_bench.compare.tolerances import Settings, TimingSettings, Tolerance
from sam_bench.metrics.catalogue import CATALOGUE

IMAGE_MS = np.array([2000.0, 2600.0, 3100.0, 1800.0, 4000.0, 2200.0, 2700.0, 3300.0])


def run_of(rng: np.random.Generator, factor: float = 1.0, noise: float = 0.1) -> np.ndarray:
    """One run's per-image latencies: the images' own cost, times ``factor``, times
    independent run-to-run noise (lognormal, sigma ``noise``)."""
    return IMAGE_MS * factor * np.exp(rng.normal(0.0, noise, IMAGE_MS.size))


def reference_interval(
    base: np.ndarray, cur: np.ndarray, stat, resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """The paired percentile bootstrap written out one resample at a time."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, base.size, size=(resamples, base.size))
    ratios = [stat(cur[i]) / stat(base[i]) for i in idx]
    a = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [a, 1 - a])
    return float(lo), float(hi)


@pytest.mark.parametrize(
    ("name", "fn"),
    [("median", np.median), ("mean", np.mean), ("p90", lambda a: np.percentile(a, 90)),
     ("max", np.max)],
)  # fmt: skip
def test_interval_matches_a_resample_by_resample_reference(name, fn, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    base, cur = run_of(rng), run_of(rng, 1.2)
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 37)  # many small chunks
    est = bootstrap_ratio(base, cur, name, paired=True, resamples=500, confidence=0.9, seed=11)
    lo, hi = reference_interval(base, cur, fn, 500, 0.9, 11)
    assert est.low == pytest.approx(lo) and est.high == pytest.approx(hi)
    assert est.ratio == pytest.approx(fn(cur) / fn(base))
    assert est.n == 8 and est.paired


def test_exact_multiples_give_a_degenerate_interval() -> None:
    base = IMAGE_MS
    for name in ("median", "mean", "p90", "max"):
        est = bootstrap_ratio(base, 2 * base, name, paired=True)
        assert (est.ratio, est.low, est.high) == pytest.approx((2.0, 2.0, 2.0))
        assert ratio_verdict(est, lower_is_better=True, tolerance=0.3) == "regression"
        same = bootstrap_ratio(base, base.copy(), name, paired=True)
        assert (same.low, same.high) == (1.0, 1.0)
        assert ratio_verdict(same, lower_is_better=True, tolerance=0.3) == "same"


def test_seeded_and_inverted() -> None:
    rng = np.random.default_rng(0)
    base, cur = run_of(rng), run_of(rng)
    a = bootstrap_ratio(base, cur, "median", paired=True, seed=5)
    assert a == bootstrap_ratio(base, cur, "median", paired=True, seed=5)
    b = bootstrap_ratio(base, cur, "mean", paired=True, seed=6)
    assert b != bootstrap_ratio(base, cur, "mean", paired=True, seed=7)  # the seed is used
    inv = a.inverted()
    assert inv.ratio == pytest.approx(1 / a.ratio)
    assert (inv.low, inv.high) == pytest.approx((1 / a.high, 1 / a.low))


def test_pairing_removes_the_differences_between_images() -> None:
    """Same code, 5% run noise: paired, the interval is narrow; treated as unrelated samples,
    the spread of the images (1.8 to 4 s) makes it wide."""
    rng = np.random.default_rng(1)
    base, cur = run_of(rng, noise=0.05), run_of(rng, noise=0.05)
    paired = bootstrap_ratio(base, cur, "median", paired=True)
    unpaired = bootstrap_ratio(base, cur, "median", paired=False)
    assert paired.high - paired.low < 0.15
    assert unpaired.high - unpaired.low > 2 * (paired.high - paired.low)
    assert not unpaired.paired


@pytest.mark.parametrize(("noise", "min_caught"), [(0.05, 200), (0.10, 197)])
def test_error_rates_on_simulated_runs(noise: float, min_caught: int) -> None:
    """The claim of the issue, on 200 simulated pairs each: two runs of the same code with
    per-image run noise (lognormal sigma 5% / 10% on each side) are never a regression at the
    default 30% tolerance; a real 2x slowdown on 8 images is caught every time with 5% noise
    and at least 98.5% of the time with 10% (the interval of a median of 8 is wide)."""
    rng = np.random.default_rng(2024)
    false_alarms = caught = 0
    for _ in range(200):
        base = run_of(rng, noise=noise)
        same = run_of(rng, noise=noise)
        slow = run_of(rng, 2.0, noise=noise)
        est_same = bootstrap_ratio(base, same, "median", paired=True, resamples=500)
        est_slow = bootstrap_ratio(base, slow, "median", paired=True, resamples=500)
        false_alarms += ratio_verdict(est_same, True, 0.3) == "regression"
        caught += ratio_verdict(est_slow, True, 0.3) == "regression"
    assert false_alarms == 0 and caught >= min_caught


@pytest.mark.parametrize(
    ("low", "high", "lower", "verdict"),
    [
        (1.4, 1.6, True, "regression"),   # all beyond 1 + 30%
        (1.1, 1.6, True, "worse"),        # slower for sure, not surely beyond the tolerance
        (0.9, 1.6, True, "same"),         # contains 1: no evidence
        (0.7, 0.9, True, "better"),
        (0.5, 0.6, False, "regression"),  # a throughput: lower is worse
        (0.6, 0.9, False, "worse"),
        (0.9, 1.1, False, "same"),
        (1.1, 1.3, False, "better"),
    ],
)  # fmt: skip
def test_ratio_verdicts(low, high, lower, verdict) -> None:
    est = RatioEstimate((low + high) / 2, low, high, 8, True, 0.95)
    assert ratio_verdict(est, lower_is_better=lower, tolerance=0.3) == verdict


def test_bootstrap_rejects_what_it_cannot_judge() -> None:
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ratio(np.array([]), np.array([1.0]), "mean", paired=False)
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_ratio(np.ones(3), np.ones(4), "mean", paired=True)
    with pytest.raises(ValueError, match="is 0"):
        bootstrap_ratio(np.zeros(3), np.ones(3), "mean", paired=True)


# --------------------------------------------------------------------------------------------
# per-image judging


def _rows(values, ids=None, errors=()) -> list[dict[str, str]]:
    ids = ids or [str(i) for i in range(len(values))]
    return [
        {"image_id": i, "latency_ms": "" if i in errors else str(v),
         "error": "bad" if i in errors else ""}
        for i, v in zip(ids, values, strict=True)
    ]  # fmt: skip


def _judge(metric: str, base_rows, cur_rows, **timing) -> object:
    entry = CATALOGUE.require(metric)
    source = per_image_source(metric, "images_per_s")
    assert source is not None
    settings = Settings(timing=TimingSettings(**timing))
    tol = Tolerance(relative=0.3)
    return judge_per_image(metric, entry, source, (base_rows, cur_rows), 1.0, 2.0, tol, settings)


def test_per_image_sources() -> None:
    assert per_image_source("latency_ms_p50", None) == ("latency_ms", "median", False)
    assert per_image_source("encoder_ms_mean", None) == ("encoder_ms", "mean", False)
    assert per_image_source("marginal_ms_mean", None) == ("marginal_ms", "mean", False)
    assert per_image_source("frames_per_s", "frames_per_s") == ("latency_ms", "mean", True)
    assert per_image_source("peak_gpu_mem_mb", None) == ("gpu_peak_mb", "max", False)
    assert per_image_source("peak_rss_mb", None) is None  # one figure per job


def test_per_image_judging_pairs_by_image_and_skips_failed_items() -> None:
    base = _rows(IMAGE_MS)
    # the same images in another order, 2x slower, one of them failed now
    cur = _rows(list(2 * IMAGE_MS[::-1]), ids=[str(i) for i in range(7, -1, -1)], errors=("3",))
    row = _judge("latency_ms_p50", base, cur)
    assert row.verdict == "regression" and row.n_images == 7
    assert row.ratio == pytest.approx(2.0) and row.interval == pytest.approx((2.0, 2.0))
    assert "paired by image" in row.note
    thr = _judge("images_per_s", base, cur)
    assert thr.verdict == "regression" and thr.ratio == pytest.approx(0.5)


def test_too_few_images_are_inconclusive() -> None:
    row = _judge("latency_ms_p50", _rows(IMAGE_MS[:4]), _rows(3 * IMAGE_MS[:4]))
    assert row.verdict == "inconclusive" and "4 images, fewer than 5" in row.note
    row = _judge("latency_ms_p50", _rows(IMAGE_MS[:4]), _rows(3 * IMAGE_MS[:4]), min_images=4)
    assert row.verdict == "regression"


def test_other_images_are_compared_unpaired() -> None:
    base = _rows(IMAGE_MS, ids=[f"a{i}" for i in range(8)])
    cur = _rows(IMAGE_MS, ids=[f"b{i}" for i in range(8)])
    row = _judge("latency_ms_mean", base, cur)
    assert row.verdict == "same" and "unpaired" in row.note


# --------------------------------------------------------------------------------------------
# point verdicts and tolerances


@pytest.mark.parametrize(
    ("base", "cur", "direction", "tol", "exact", "verdict"),
    [
        (0.50, 0.50, "higher", Tolerance(absolute=0.005), True, "same"),
        (0.50, 0.51, "higher", Tolerance(absolute=0.005), True, "better"),
        (0.50, 0.501, "higher", Tolerance(absolute=0.005), True, "better"),
        (0.50, 0.498, "higher", Tolerance(absolute=0.005), True, "worse"),
        (0.50, 0.49, "higher", Tolerance(absolute=0.005), True, "regression"),
        (10.0, 11.0, "lower", Tolerance(relative=0.05), True, "regression"),
        (10.0, 10.4, "lower", Tolerance(relative=0.05), True, "worse"),
        (10.0, 9.0, "lower", Tolerance(relative=0.05), True, "better"),
        (12.0, 13.0, "neither", Tolerance(relative=0.05), True, "changed"),
        (2000, 2300, "lower", Tolerance(relative=0.2), False, "same"),   # one noisy figure
        (2000, 2500, "lower", Tolerance(relative=0.2), False, "regression"),
        (2000, 1500, "lower", Tolerance(relative=0.2), False, "better"),
    ],
)  # fmt: skip
def test_point_verdicts(base, cur, direction, tol, exact, verdict) -> None:
    assert point_verdict(base, cur, direction, tol, exact=exact)[0] == verdict


def test_tolerance_bounds() -> None:
    both = Tolerance(absolute=0.01, relative=0.1)
    assert not both.exceeded(0.05, 1.0)  # beyond 0.01 but not beyond 10% of 1.0
    assert both.exceeded(0.2, 1.0)
    assert Tolerance(relative=0.1).exceeded(0.001, 0.0)  # any change of a zero baseline
    assert not Tolerance().exceeded(0.0, 1.0) and Tolerance().exceeded(1e-6, 1.0)
    assert Tolerance(absolute=50.0).ratio_bound(1000.0) == pytest.approx(0.05)
    assert both.describe() == "±0.01 and ±10%" and Tolerance(judge=False).describe() == "not judged"
    assert math.isclose(Tolerance(relative=0.3).ratio_bound(123.0), 0.3)
