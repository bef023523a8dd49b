"""CUDA checks of the engines and the cost measurement (``make test-gpu``).

Every test here is marked ``gpu``: where CUDA is unavailable it is skipped with the reason
(``tests/conftest.py``). The machines this project is developed on have no GPU, so these
tests are the only place the CUDA paths run. They use the random-weight tiny model (the
session ``tiny_model`` fixture, copied to the GPU) and small point grids.

* The fast engine gives the official generator's masks on CUDA, as on the CPU
  (``tests/integration/test_fast_engine.py``): RLE-identical, scores within 1e-4, over
  thresholds, crop layers, ``min_mask_region_area``, m2m, fp32 and bf16 autocast.
* The cost measurement: per-image peak GPU memory, the clock that waits for queued work.
* The encoder cache restores CUDA tensors that give the same masks.
* Connected components on CUDA tensors, what the record says ran, the device status.
* ``close()`` returns the model's GPU memory; the output records sync once per field.
"""

from __future__ import annotations

import copy
import gc
import subprocess
import sys
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.engines.fast import FastAMG, FastEngine
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.environment import cuda_status, describe, resolve_device
from sam_bench.errors import ConfigError
from sam_bench.metrics.cost import Clock, GpuPeak, StageTimes
from sam_bench.models import connected_components as cc
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
KEEP = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
#: AMG settings compared engine against engine (points_per_side=4 each).
VARIANTS = {
    "keep_all": dict(KEEP),
    "iou_and_nms": {**KEEP, "pred_iou_thresh": 0.5, "box_nms_thresh": 0.7},
    "stability": {
        **KEEP, "stability_score_thresh": 0.2, "stability_score_offset": 0.5,
        "mask_threshold": -0.5,
    },
    "min_area": {**KEEP, "min_mask_region_area": 50},
    "crop_layer": {**KEEP, "crop_n_layers": 1, "crop_nms_thresh": 0.7},
    "crop_layer_min_area": {
        **KEEP, "crop_n_layers": 1, "crop_nms_thresh": 0.7, "min_mask_region_area": 30,
    },
    "m2m": {**KEEP, "use_m2m": True},
}  # fmt: skip
MODEL = ModelConfig(
    name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
    sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
    url="http://127.0.0.1:9/x.pt", weights="random",
)  # fmt: skip


@pytest.fixture(scope="module")
def cuda_model(tiny_model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(tiny_model).to(CUDA)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    ds = build_dataset(DatasetConfig(scenes=["color", "dense_small"], limit=2), Path("."))
    return [to_model_input(ds.load(r).raw, PreprocessConfig())[0] for r in ds.refs()]


def _key(masks) -> list[tuple[bytes, float, float]]:
    return sorted((m.rle["counts"], m.predicted_iou, m.stability_score) for m in masks)


def assert_same(fast, ref, label: str) -> None:
    """RLE-identical masks, scores within 1e-4 (as ``test_fast_engine.assert_same``)."""
    a, b = _key(fast), _key(ref)
    assert [x[0] for x in a] == [x[0] for x in b], f"{label}: masks differ ({len(a)} vs {len(b)})"
    for (_, ia, sa), (_, ib, sb) in zip(a, b, strict=True):
        assert abs(ia - ib) <= 1e-4 and abs(sa - sb) <= 1e-4, label


# ------------------------------------------------------------------- fast == reference


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fast_engine_equals_reference_on_cuda(cuda_model, images, variant: str, dtype: str):
    cfg = AMGConfig(points_per_side=4, **VARIANTS[variant])
    kept = 0
    for image in images:
        fast = FastAMG(cuda_model, [cfg], CUDA, dtype=dtype)
        (out,) = fast.generate_many(image, [StageTimes()])
        ref = ReferenceEngine(cuda_model, cfg, CUDA, dtype=dtype).generate(image, StageTimes())
        assert_same(out, ref, f"{variant} {dtype}")
        kept += len(out)
    assert kept > 0, f"{variant} {dtype}: no mask kept, the case tests nothing"


def test_configurations_computed_together_equal_reference_on_cuda(cuda_model, images) -> None:
    names = ["keep_all", "iou_and_nms", "stability", "min_area"]
    cfgs = [AMGConfig(points_per_side=4, **VARIANTS[n]) for n in names]
    outs = FastAMG(cuda_model, cfgs, CUDA).generate_many(images[0], [StageTimes() for _ in cfgs])
    for name, cfg, out in zip(names, cfgs, outs, strict=True):
        ref = ReferenceEngine(cuda_model, cfg, CUDA).generate(images[0], StageTimes())
        assert_same(out, ref, f"shared {name}")


# ------------------------------------------------------------------------- cost figures


def test_gpu_peak_grows_with_the_prompt_batch(cuda_model, images) -> None:
    peaks = {}
    for points_per_side in (2, 8):  # one decoder batch of 4 prompts, then of 64
        engine = FastEngine(cuda_model, AMGConfig(points_per_side=points_per_side, **KEEP), CUDA)
        gpu = GpuPeak(CUDA)
        gpu.reset()
        times = StageTimes()
        assert engine.generate(images[0], times)
        peaks[points_per_side] = gpu.peak_mb()
        assert times.seconds["encoder"] > 0 and times.seconds["decoder"] > 0
        engine.close()
    assert 0 < peaks[2] < peaks[8], peaks


def test_clock_waits_for_queued_cuda_work() -> None:
    a = torch.randn(4096, 4096, device=CUDA)
    torch.cuda.synchronize()
    for _ in range(20):  # ~3 TFLOP queued; the host returns at once
        b = a @ a
    Clock(CUDA).now()
    assert torch.cuda.current_stream(CUDA).query(), "the clock was read before the work ended"
    del b


# ----------------------------------------------------------------------- encoder cache


def test_encoder_cache_cold_and_warm_on_cuda(cuda_model, images, tmp_path: Path) -> None:
    cfgs = [
        AMGConfig(points_per_side=4, **KEEP),
        AMGConfig(points_per_side=4, **{**KEEP, "box_nms_thresh": 0.7}),
    ]
    identity = encoder_identity(MODEL, "tiny-random-copy", "fp32", CUDA)
    assert identity["device"] == "cuda"
    assert identity["device_name"] == torch.cuda.get_device_name(CUDA)
    assert identity["cudnn_allow_tf32"] == str(torch.backends.cudnn.allow_tf32)

    def run(cache: EncoderCache | None):
        fast = FastAMG(cuda_model, cfgs, CUDA, encoder_cache=cache)
        return fast.generate_many(images[0], [StageTimes() for _ in cfgs])

    uncached = run(None)
    cold_cache = EncoderCache(tmp_path, 10.0, identity, CUDA)
    cold = run(cold_cache)
    warm_cache = EncoderCache(tmp_path, 10.0, identity, CUDA)
    warm = run(warm_cache)
    assert sum(len(o) for o in uncached) > 0
    assert cold == uncached and warm == cold  # MaskRecords: RLEs, scores, boxes all equal
    assert (cold_cache.stats.hits, cold_cache.stats.misses, cold_cache.stats.writes) == (0, 1, 1)
    assert (warm_cache.stats.hits, warm_cache.stats.misses, warm_cache.stats.writes) == (1, 0, 0)
    entry = warm_cache.get(warm_cache.key(images[0]))
    assert entry is not None and entry.image_embed.device.type == "cuda"


# ------------------------------------------------------- connected components, devices


def test_connected_components_of_cuda_tensors_match_the_cpu_step() -> None:
    import sam2.utils.misc as misc

    cc.install()
    masks = torch.from_numpy(np.random.default_rng(0).random((6, 1, 40, 50)) > 0.55)
    labels, counts = misc.get_connected_components(masks.to(CUDA))
    assert labels.device.type == "cuda" and counts.device.type == "cuda"
    _, want = cc.connected_components_cpu(masks)
    assert torch.equal(counts.cpu().to(torch.int32), want)
    assert torch.equal(labels.cpu() > 0, masks)
    # what the record says ran: the extension exactly when it loads (checked in a fresh
    # process) and has not failed on a call
    loads = (
        subprocess.run([sys.executable, "-c", "import sam2._C"], capture_output=True).returncode
        == 0
    )
    expected = "cuda_extension" if loads and cc.extension_error() is None else "opencv_cpu"
    assert cc.implementation(CUDA) == expected


def test_official_postprocess_fills_holes_on_cuda() -> None:
    """sam2's own ``postprocess_masks`` on CUDA logits runs the step, never skips it."""
    from sam2.utils.transforms import SAM2Transforms

    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[0, 0, 4:20, 4:20] = 5.0  # object
    logits[0, 0, 10:12, 10:12] = -5.0  # 4-pixel hole
    logits[0, 0, 28:30, 28:30] = 5.0  # 4-pixel island
    tf = SAM2Transforms(resolution=1024, mask_threshold=0.0, max_hole_area=10, max_sprinkle_area=10)
    cc.install()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the upstream "skipping post-processing" warning
        out = tf.postprocess_masks(logits.to(CUDA), (32, 32))
    binary = out[0, 0].cpu() > 0
    assert binary[10:12, 10:12].all(), "hole filled"
    assert not binary[28:30, 28:30].any(), "island removed"


def test_cuda_status_and_device_names_on_a_gpu_machine() -> None:
    status = cuda_status()
    assert status.available and status.reason is None
    assert status.device_count == torch.cuda.device_count() >= 1
    assert status.driver_cuda is not None  # libcuda is there, or CUDA would not run
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="CUDA device"):
        resolve_device(f"cuda:{status.device_count}")
    env = describe(CUDA, "fp32")
    assert env["cuda_available"] is True and env["cuda_unavailable_reason"] is None
    assert env["cuda_torch"] == torch.version.cuda and env["cuda_version"] == torch.version.cuda
    assert env["cudnn_version"] == torch.backends.cudnn.version() and env["cudnn_version"]
    assert env["cudnn_allow_tf32"] == torch.backends.cudnn.allow_tf32
    assert env["device_name"] == torch.cuda.get_device_name(CUDA)


# ------------------------------------------------------------- memory and host copies


def test_close_returns_the_models_cuda_memory(tiny_model, images) -> None:
    cfg = AMGConfig(points_per_side=2, **KEEP)

    def run_once() -> tuple[weakref.ref, list]:
        model = copy.deepcopy(tiny_model).to(CUDA)
        alive = weakref.ref(model)
        engines = [ReferenceEngine(model, cfg, CUDA), FastEngine(model, cfg, CUDA)]
        for engine in engines:
            assert engine.generate(images[0], StageTimes())
        for engine in engines:
            engine.close()
        return alive, engines

    run_once()  # the first use leaves cuBLAS / cuDNN workspaces allocated for good
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(CUDA)
    gc.disable()
    try:
        alive, _engines = run_once()  # the engines stay referenced, closed
        torch.cuda.synchronize()
        assert alive() is None, "a closed engine still holds the model"
        # a leaked tiny model would be ~150 MB; the slack covers small allocator caches
        assert torch.cuda.memory_allocated(CUDA) <= base + 8 * 2**20
    finally:
        gc.enable()


def test_output_records_sync_once_per_field_on_cuda(
    cuda_model, images, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's sync debug mode counts the device syncs while the records are built."""
    records = FastAMG._records
    syncs: list[int] = []

    def measured(self: FastAMG, *args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                return records(self, *args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")
                syncs.append(sum("synchroniz" in str(w.message) for w in caught))

    monkeypatch.setattr(FastAMG, "_records", measured)
    fast = FastAMG(cuda_model, [AMGConfig(points_per_side=4, **KEEP)], CUDA)
    (masks,) = fast.generate_many(images[0], [StageTimes()])
    assert len(masks) >= 20, "too few masks to tell per-mask syncs from per-field copies"
    assert syncs and 0 < syncs[0] <= 10, syncs  # 5 fields copied; per mask it was 3 each
