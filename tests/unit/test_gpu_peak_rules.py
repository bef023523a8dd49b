"""The GPU-peak rules on the CPU (issue 21): per-configuration peaks combined from the shared
stages' and the job's own (:func:`combine_peaks`), the reserved peak across an engine's resets,
and the encoder-cache entry's peak standing in for an encoder that did not run. A recorded
allocator (``tests/cuda_memory.py``) plays ``torch.cuda``; ``tests/gpu/`` checks the same on a
GPU."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.engines.encoder_cache import EncoderCache
from sam_bench.metrics.cost import Clock, GpuPeak, combine_peaks, cost_summary, measured
from tests.cuda_memory import MB, RecordedAllocator

CUDA = torch.device("cuda")  # only a name here: the recorded allocator answers


def test_combine_peaks_is_the_largest_part_and_nan_only_when_nothing_was_measured() -> None:
    assert combine_peaks(900.0, 350.0) == 900.0
    assert combine_peaks(math.nan, 350.0) == 350.0
    assert combine_peaks(350.0, math.nan, 420.5) == 420.5
    assert math.isnan(combine_peaks(math.nan, math.nan))
    assert math.isnan(combine_peaks())


def test_a_per_configuration_peak_from_a_recorded_group() -> None:
    """Two configurations share an encoder (800 MB of temporaries over 100 MB of weights and
    keep 50 MB of features); the strict one's own stage needs 20 MB, the keep-all one's 1200 MB.
    Measured window by window, each gets what it would use alone; the group's peak given to
    both (the first round's bug) would give the strict one 1350 MB."""
    mem = RecordedAllocator()
    gpu = GpuPeak(CUDA, mem)
    mem.alloc(100)  # weights
    gpu.start_item()
    mem.alloc(50)  # features, kept
    mem.run(800)
    shared = gpu.peak_mb()
    own = []
    for need in (20, 1200):
        gpu.reset()
        mem.run(need)
        own.append(gpu.peak_mb())
    strict, keep = (combine_peaks(shared, o) for o in own)
    assert shared == 950 and own == [170, 1350]
    assert strict == 950 and keep == 1350
    assert gpu.reserved_mb() == 1350  # the allocator held that much, whoever asked for it


def test_the_reserved_peak_survives_an_engines_resets() -> None:
    """An engine resets the peak counters between its stages: the item's reserved figure must
    still cover the first stage (torch's max_memory_reserved alone would not)."""
    mem = RecordedAllocator()
    loop, engine = GpuPeak(CUDA, mem), GpuPeak(CUDA, mem)
    loop.start_item()
    mem.run(600)
    engine.reset()
    mem.run(10)
    assert mem.max_memory_reserved() / MB == 600  # segments stay reserved after the free
    mem.reserved = 10 * MB  # as after torch.cuda.empty_cache() by another component
    mem.reset_peak_memory_stats()
    mem.run(4)
    assert mem.max_memory_reserved() / MB == 10
    assert loop.reserved_mb() == 600
    loop.start_item()  # the next item starts from what is reserved then
    assert loop.reserved_mb() == 10


def test_on_the_cpu_nothing_is_read_and_every_figure_is_nan() -> None:
    mem = RecordedAllocator()
    gpu = GpuPeak(torch.device("cpu"), mem)
    gpu.start_item()
    gpu.reset()
    assert math.isnan(gpu.peak_mb()) and math.isnan(gpu.reserved_mb())
    assert mem.trace == []


def test_the_reserved_peak_is_summarised_like_the_allocated_one() -> None:
    rows = [
        {"latency_ms": 10.0, "gpu_peak_mb": 300.0, "gpu_reserved_mb": 512.0},
        {"latency_ms": 12.0, "gpu_peak_mb": 420.0, "gpu_reserved_mb": 640.0},
    ]
    out = cost_summary(rows, ("preprocess",))
    assert out["peak_gpu_mem_mb"] == 420.0 and out["peak_gpu_reserved_mb"] == 640.0
    cpu = cost_summary([{"latency_ms": 1.0, "gpu_peak_mb": math.nan}], ("preprocess",))
    assert math.isnan(cpu["peak_gpu_mem_mb"]) and math.isnan(cpu["peak_gpu_reserved_mb"])


class _Predictor:
    """What the encoder cache touches of ``SAM2ImagePredictor``; its encoder "runs" on the
    recorded allocator (temporaries of ``need_mb``, features kept)."""

    def __init__(self, mem: RecordedAllocator, need_mb: float) -> None:
        self.mem, self.need_mb, self.encoded = mem, need_mb, 0
        self.reset_predictor()

    def reset_predictor(self) -> None:
        self._features: dict[str, Any] | None = None
        self._orig_hw: list[tuple[int, int]] = []
        self._is_batch = False
        self._is_image_set = False

    def set_image(self, image: np.ndarray) -> None:
        self.mem.run(self.need_mb)
        self.encoded += 1
        self._features = {
            "image_embed": torch.full((1, 4, 2, 2), float(image.mean())),
            "high_res_feats": [torch.zeros(1, 2, 4, 4)],
        }
        self._orig_hw = [(int(image.shape[0]), int(image.shape[1]))]
        self._is_image_set = True


def _cache(tmp_path: Path) -> EncoderCache:
    return EncoderCache(tmp_path, 1.0, {"model": "m", "device": "cuda"}, torch.device("cpu"))


def test_a_cache_hit_reports_the_stored_encoder_peak(tmp_path: Path) -> None:
    mem = RecordedAllocator()
    gpu = GpuPeak(CUDA, mem)
    predictor, image = _Predictor(mem, 700), np.full((8, 8, 3), 7, np.uint8)
    clock = Clock(torch.device("cpu"))
    cache = _cache(tmp_path)
    cache.set_image(predictor, image, clock, gpu)
    assert cache.last_peak_mb == 700 and cache.stats.writes == 1
    gpu.reset()
    cache.set_image(predictor, image, clock, gpu)  # a hit: the encoder does not run ...
    assert predictor.encoded == 1 and cache.stats.hits == 1
    assert cache.last_peak_mb == 700  # ... and its stored peak stands in for it
    assert gpu.peak_mb() == 0  # what the allocator saw of the hit: nothing


def test_an_entry_without_a_peak_is_encoded_again_on_cuda(tmp_path: Path) -> None:
    """An entry written without a GPU (the prompted task's before issue 21, or on the CPU)
    holds NaN: on CUDA it is a miss, encoded again and rewritten with the peak."""
    mem = RecordedAllocator()
    predictor, image = _Predictor(mem, 300), np.full((8, 8, 3), 9, np.uint8)
    clock = Clock(torch.device("cpu"))
    cache = _cache(tmp_path)
    cache.set_image(predictor, image, clock, None)  # no GPU: NaN stored
    assert math.isnan(cache.last_peak_mb)
    cache.set_image(predictor, image, clock, GpuPeak(CUDA, mem))
    assert predictor.encoded == 2 and cache.stats.hits == 0 and cache.stats.misses == 2
    assert cache.last_peak_mb == 300
    cache.set_image(predictor, image, clock, GpuPeak(CUDA, mem))
    assert predictor.encoded == 2 and cache.stats.hits == 1 and cache.last_peak_mb == 300
    cache.set_image(predictor, image, clock, None)  # on the CPU a hit needs no peak
    assert predictor.encoded == 2 and cache.stats.hits == 2


@pytest.mark.parametrize("hit", [False, True])
def test_a_prompted_group_gives_each_job_its_own_peak(tmp_path: Path, hit: bool) -> None:
    """The prompted task's rule on recorded numbers: the encoder through the cache (run, or
    its entry's peak on a hit), then each job's decoding :func:`measured` after a reset,
    combined per job. The strict job keeps the encoder's figure whether or not it hit."""
    mem = RecordedAllocator()
    gpu = GpuPeak(CUDA, mem)
    predictor, image = _Predictor(mem, 900), np.full((8, 8, 3), 3, np.uint8)
    clock = Clock(torch.device("cpu"))
    cache = _cache(tmp_path)
    if hit:
        cache.set_image(predictor, image, clock, gpu)
    gpu.start_item()
    cache.set_image(predictor, image, clock, gpu)
    enc = cache.last_peak_mb
    peaks = []
    for need in (50, 1500):  # one click per instance / many clicks in big batches
        _, own = measured(gpu, lambda need=need: mem.run(need))
        peaks.append(combine_peaks(enc, own))
    assert peaks == [900, 1500]
    assert predictor.encoded == 1  # on a hit the encoder ran only to fill the cache


def test_measured_is_nan_on_the_cpu_and_returns_the_result() -> None:
    out, peak = measured(GpuPeak(torch.device("cpu"), RecordedAllocator()), lambda: 41 + 1)
    assert out == 42 and math.isnan(peak)


def test_cuda_and_cuda0_fold_into_one_reserved_peak() -> None:
    """The loop and an engine may name the device ``cuda`` and ``cuda:0``: one allocator."""
    mem = RecordedAllocator()
    loop, engine = GpuPeak(torch.device("cuda"), mem), GpuPeak(torch.device("cuda:0"), mem)
    loop.start_item()
    mem.run(300)
    engine.reset()
    mem.reserved = 0
    mem.reset_peak_memory_stats()
    assert loop.reserved_mb() == 300
