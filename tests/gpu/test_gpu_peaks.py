"""peak_gpu_mem_mb is what each configuration would use alone (issue 14, point 2): not the
peak of the jobs it was grouped with, and not lowered by an encoder-cache hit. CUDA only.

The image must make the configurations' peaks differ, or reverting the fix passes (issue 21,
item 6): on the dataset's 640x480 image the encoder's peak hides the keep-all configuration's
own post-processing. Here the image is upscaled to SIDE x SIDE and prompts go 4 at a time
(``points_per_batch=4``, so the shared decoder stays small): the keep-all configuration
upsamples 12 masks of SIDE x SIDE per batch (about 0.8 GB in float32 at 4096), the strict one
none (its IoU filter drops every candidate before upsampling). Each test first asserts that the
peaks do differ by a clear margin, so an image too small to move them fails instead of
passing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.engines.fast import FastAMG
from sam_bench.metrics.cost import StageTimes
from sam_bench.models.build import build_model
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

pytestmark = pytest.mark.gpu

SIDE = 4096
KEEP_ALL = AMGConfig(points_per_side=8, points_per_batch=4, pred_iou_thresh=0.0,
                     stability_score_thresh=0.0, box_nms_thresh=1.0)  # fmt: skip
STRICT = AMGConfig(points_per_side=8, points_per_batch=4, pred_iou_thresh=0.99,
                   stability_score_thresh=0.99)  # fmt: skip
#: How much more the keep-all configuration must need alone for the tests to mean anything.
MARGIN = 1.2


@pytest.fixture(scope="module")
def cuda_model() -> tuple[torch.nn.Module, np.ndarray]:
    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
        url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    model, _ = build_model(cfg, torch.device("cuda"), seed=0, progress=False)
    ds = build_dataset(DatasetConfig(limit=1), Path("."))
    raw = ds.load(ds.refs()[0]).raw
    assert raw is not None
    image = to_model_input(raw, PreprocessConfig())[0]
    big = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR)
    assert big.shape == (SIDE, SIDE, 3) and big.dtype == np.uint8
    return model, big


def _peaks(model: torch.nn.Module, image: np.ndarray, cfgs: list[AMGConfig], **kw) -> list[float]:
    engine = FastAMG(model, cfgs, torch.device("cuda"), **kw)
    times = [StageTimes() for _ in cfgs]
    engine.generate_many(image, times)
    engine.close()
    return [t.peak_mb for t in times]


def test_a_job_reports_its_own_peak_not_its_groups(cuda_model) -> None:
    model, image = cuda_model
    (alone_strict,) = _peaks(model, image, [STRICT])
    (alone_keep,) = _peaks(model, image, [KEEP_ALL])
    grouped_strict, grouped_keep = _peaks(model, image, [STRICT, KEEP_ALL])
    print(f"alone: strict {alone_strict:.0f} MB, keep-all {alone_keep:.0f} MB; grouped: "
          f"{grouped_strict:.0f} / {grouped_keep:.0f} MB")  # fmt: skip
    assert alone_strict > 0
    assert alone_keep > MARGIN * alone_strict, "the image does not move the peak"
    assert grouped_strict == pytest.approx(alone_strict, rel=0.05)
    assert grouped_keep == pytest.approx(alone_keep, rel=0.05)


def test_an_encoder_cache_hit_reports_the_stored_encoder_peak(cuda_model, tmp_path: Path) -> None:
    model, image = cuda_model
    identity = encoder_identity(ModelConfig(name="t", sam2_config="c"), "h", "fp32",
                                torch.device("cuda"))  # fmt: skip
    cache = EncoderCache(tmp_path, 1.0, identity, torch.device("cuda"))
    (cold,) = _peaks(model, image, [STRICT], encoder_cache=cache)
    (warm,) = _peaks(model, image, [STRICT], encoder_cache=cache)
    assert cache.stats.hits == 1 and cache.stats.writes == 1
    assert warm == pytest.approx(cold, rel=0.05)
