"""``model.runtime=onnxruntime`` on CUDA: ONNX Runtime's CUDA execution provider against eager
PyTorch on the same GPU, through sam2's official image predictor and generator.

Marked ``gpu`` (skipped without CUDA, ``tests/conftest.py``). Where CUDA works but the
installed onnxruntime has no CUDA execution provider (``onnxruntime`` rather than
``onnxruntime-gpu``), the agreement test skips saying so and the error test checks the
one-line message. On the GPU both sides may use TF32 convolutions (torch's cuDNN default,
ONNX Runtime's CUDA default), so agreement is checked within tolerances and per-mask IoU,
with the numbers printed, not bit for bit.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.config import DatasetConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.errors import SamBenchError
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.runtimes.base import RuntimeOptions
from sam_bench.models.runtimes.onnx import OnnxRuntime
from sam_bench.preprocess import to_model_input

pytestmark = pytest.mark.gpu
ort = pytest.importorskip("onnxruntime")
CUDA = torch.device("cuda")
HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()


def _options(model: torch.nn.Module, cache: Path) -> RuntimeOptions:
    return RuntimeOptions(weights_hash=state_dict_hash(model.state_dict())[:16], cache_dir=cache)


@pytest.fixture(scope="module")
def cuda_model(tiny_model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(tiny_model).to(CUDA)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    return to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.skipif(HAS_CUDA_EP, reason="onnxruntime-gpu installed: the CUDA provider exists")
def test_cuda_without_the_cuda_provider_is_a_one_line_error(cuda_model, tmp_path: Path) -> None:
    with pytest.raises(SamBenchError) as info:
        OnnxRuntime().prepare(copy.deepcopy(cuda_model), CUDA, _options(cuda_model, tmp_path))
    assert "pip install onnxruntime-gpu" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not HAS_CUDA_EP, reason="onnxruntime has no CUDAExecutionProvider here")
def test_cuda_provider_agrees_with_eager(cuda_model, image, tmp_path: Path) -> None:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    prepared = OnnxRuntime().prepare(
        copy.deepcopy(cuda_model), CUDA, _options(cuda_model, tmp_path)
    )
    assert prepared.details["providers"][0] == "CUDAExecutionProvider"
    print(f"export {prepared.details['export_s']:.1f} s, prepare {prepared.prepare_s:.1f} s")
    eager_p, onnx_p = SAM2ImagePredictor(cuda_model), SAM2ImagePredictor(prepared.model)
    with torch.inference_mode():
        for p in (eager_p, onnx_p):
            p.set_image(image)
        emb_e, emb_o = eager_p._features["image_embed"], onnx_p._features["image_embed"]
        assert emb_o.device.type == "cuda"
        diff = float((emb_e - emb_o).abs().max())
        print(f"image_embed max abs diff {diff:.2e}")
        assert diff < 1e-2
        prompt: dict[str, Any] = {"point_coords": np.array([[200, 150]]),
                                  "point_labels": np.array([1])}  # fmt: skip
        me, ie, _ = eager_p.predict(**prompt)
        mo, io_, _ = onnx_p.predict(**prompt)
    ious = [_iou(a, b) for a, b in zip(me, mo, strict=True)]
    print(f"click masks: IoU {ious}, differing pixels {int((me != mo).sum())}")
    assert me.any() and min(ious) >= 0.99 and float(np.abs(ie - io_).max()) < 1e-2

    settings = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                "box_nms_thresh": 1.0}  # fmt: skip
    with torch.inference_mode():
        out_e = SAM2AutomaticMaskGenerator(cuda_model, **settings).generate(image)
        out_o = SAM2AutomaticMaskGenerator(prepared.model, **settings).generate(image)
    assert len(out_e) == len(out_o) == 48
    amg_ious = [
        _iou(a["segmentation"], b["segmentation"]) for a, b in zip(out_e, out_o, strict=True)
    ]
    print(f"AMG: min IoU {min(amg_ious):.5f}")
    assert min(amg_ious) >= 0.99
