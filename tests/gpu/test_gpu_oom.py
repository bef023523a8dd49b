"""Out-of-memory retries on CUDA, for real (``make test-gpu``; skipped without CUDA).

The caching allocator is capped (``torch.cuda.set_per_process_memory_fraction``) between what
an image's prompt batches of the configured size and of half that size allocate at their
peak, both measured first on the same device; allocations over the cap raise
``torch.OutOfMemoryError``, as a full GPU does. The fast engine must then run the batch again
as halves (after ``torch.cuda.empty_cache()``), record it, and give the masks of a run
configured with the smaller batch; against the unretried run the masks agree up to the
decoder's last bits. The reference engine runs the whole image again with the generator's
``points_per_batch`` halved. The encoder runs once (encoder cache) for the fast engine, so
every measured run allocates only for its prompt batches; the reference engine's encoder runs
in each attempt, so it gets a larger image, whose batch outweighs it."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.engines.encoder_cache import EncoderCache
from sam_bench.engines.fast import FastAMG
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.limits import MemoryLimits, job_limits
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.tasks.amg.settings import AMGConfig

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
KEEP = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
MARGIN = 64 * 2**20
"""Bytes kept between the cap and each measured need."""


@pytest.fixture(scope="module")
def cuda_model(tiny_model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(tiny_model).to(CUDA)


def _image(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    tile = size // 8
    return np.stack(
        [xx * 255 // size, yy * 255 // size, ((xx // tile + yy // tile) % 2) * 200], axis=-1
    ).astype(np.uint8)


def _needs(run: Callable[[], tuple[list[Any], float]]) -> tuple[list[Any], int]:
    """``run()``'s masks and the CUDA memory it allocated at its peak beyond what was
    allocated before. ``run`` returns the masks and its peak (``max_memory_allocated`` in MB:
    the fast engine resets the peak per stage and reports the image's peak itself)."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(CUDA)
    before = torch.cuda.memory_allocated(CUDA)
    masks, peak_mb = run()
    return masks, int(peak_mb * 2**20) - before


@contextlib.contextmanager
def _capped(extra: int) -> Iterator[None]:
    """CUDA allocations capped at what is reserved now plus ``extra`` bytes."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(CUDA).total_memory
    cap = torch.cuda.memory_reserved(CUDA) + extra
    torch.cuda.set_per_process_memory_fraction(cap / total, CUDA)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, CUDA)
        torch.cuda.empty_cache()


def _key(masks: list[Any]) -> list[tuple[bytes, float, float]]:
    return [(m.rle["counts"], m.predicted_iou, m.stability_score) for m in masks]


def _close(masks: list[Any], other: list[Any]) -> None:
    """The same prompts' masks up to the last bits: IoU >= 0.99 with the best mask of the same
    point, scores within 1e-4."""
    from pycocotools import mask as mask_utils

    assert len(masks) == len(other)
    for a in masks:
        same_point = [b for b in other if b.point_coords == a.point_coords]
        ious = [mask_utils.iou([a.rle], [b.rle], [0])[0][0] for b in same_point]
        b = same_point[int(np.argmax(ious))]
        assert max(ious) >= 0.99
        assert abs(a.predicted_iou - b.predicted_iou) <= 1e-4
        assert abs(a.stability_score - b.stability_score) <= 1e-4


def _check_retry(generate: Callable[[int], tuple[list[Any], float]], full: int) -> None:
    half = full // 2
    masks_half, need_half = _needs(lambda: generate(half))
    masks_full, need_full = _needs(lambda: generate(full))
    if need_full - need_half < 2 * MARGIN:
        pytest.skip(
            f"no usable memory window: a batch of {full} allocated {need_full >> 20} MB, one "
            f"of {half} {need_half >> 20} MB"
        )
    limits = MemoryLimits(oom_min_batch=1)
    with job_limits(limits), _capped((need_half + need_full) // 2):
        item = limits.begin_item("big")
        masks, _ = generate(full)
        columns = limits.end_item()
    assert columns == {"oom_retries": 1, "oom_batch": half}
    assert (item.first_error or "").startswith("OutOfMemoryError"), item.first_error
    assert limits.info()["oom_note"]
    assert _key(masks) == _key(masks_half)  # the smaller batches, bit for bit
    _close(masks, masks_full)


def test_fast_engine_retries_a_cuda_batch_in_halves(cuda_model, tmp_path: Path) -> None:
    image = _image(1024)
    cache = EncoderCache(tmp_path, 1.0, {"test": "gpu-oom"}, CUDA)
    side = 8
    amg = AMGConfig(points_per_side=side, **KEEP)
    cache.set_image(FastAMG(cuda_model, [amg], CUDA).predictor, image, Clock(CUDA))

    def generate(batch: int) -> tuple[list[Any], float]:
        cfg = AMGConfig(points_per_side=side, points_per_batch=batch, **KEEP)
        fast = FastAMG(cuda_model, [cfg], CUDA, encoder_cache=cache)
        times = StageTimes()
        (masks,) = fast.generate_many(image, [times])
        return masks, times.peak_mb  # the image's peak (the encoder's is not stored: NaN)

    _check_retry(generate, side * side)


def test_reference_engine_retries_the_image_with_half_the_batch(cuda_model) -> None:
    image = _image(2048)
    side = 8

    def generate(batch: int) -> tuple[list[Any], float]:
        cfg = AMGConfig(points_per_side=side, points_per_batch=batch, **KEEP)
        masks = ReferenceEngine(cuda_model, cfg, CUDA).generate(image, StageTimes())
        return masks, torch.cuda.max_memory_allocated(CUDA) / 2**20

    _check_retry(generate, side * side)
