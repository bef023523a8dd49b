"""Cost measurement helpers: stage sums, latency statistics, per-job peak RSS."""

from __future__ import annotations

import math

import numpy as np
import torch

from sam_bench.metrics.cost import LATENCY_STAGES, Clock, PeakRSS, StageTimes, latency_summary


def test_latency_is_the_sum_of_the_user_stages_only() -> None:
    t = StageTimes()
    for i, stage in enumerate(("preprocess", "encoder", "decoder", "postprocess", "metrics")):
        t.add(stage, 0.001 * (i + 1))
    ms = t.ms()
    assert math.isclose(ms["latency_ms"], sum(ms[f"{s}_ms"] for s in LATENCY_STAGES))
    assert math.isclose(ms["latency_ms"], 10.0)  # 1+2+3+4 ms; metrics (5 ms) excluded


def test_measure_accumulates() -> None:
    t, clock = StageTimes(), Clock(torch.device("cpu"))
    for _ in range(2):
        with t.measure("encoder", clock):
            sum(range(1000))
    assert t.seconds["encoder"] > 0 and t.seconds["decoder"] == 0


def test_latency_summary_matches_numpy() -> None:
    lat = [10.0, 20.0, 30.0, 40.0, float("nan")]
    s = latency_summary(lat)
    assert s["latency_ms_p50"] == np.percentile([10, 20, 30, 40], 50)
    assert s["latency_ms_p90"] == np.percentile([10, 20, 30, 40], 90)
    assert math.isclose(s["images_per_s"], 1000 / 25)
    assert math.isnan(latency_summary([])["latency_ms_mean"])


def test_peak_rss_is_per_job_not_inherited() -> None:
    first = PeakRSS().start()
    big = np.ones(400 * 2**20 // 8)  # ~400 MB touched
    peak1 = first.stop()
    del big
    second = PeakRSS().start()
    small = np.ones(2**20)
    peak2 = second.stop()
    del small
    assert peak1 - peak2 > 300, (first.method, peak1, peak2)
