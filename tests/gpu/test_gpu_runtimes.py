"""CUDA checks of the PyTorch runtimes (``make test-gpu``; skipped without CUDA): ``compile``
gives eager's masks on the GPU beyond its logit tolerance, ``bf16`` agrees within its
tolerance, and the fast engine runs on a runtime's decoder there. The random-weight tiny
model (session ``tiny_model`` fixture) is copied to the GPU. (``onnxruntime`` with the CUDA
provider is checked by its own tests.)"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.models.agreement import compare_case, grid_case
from sam_bench.models.runtimes.apply import prepare_runtime
from sam_bench.preprocess import to_model_input
from tests.runtime_checks import assert_eagers_masks_beyond

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def eager(tiny_model: torch.nn.Module) -> Any:
    return copy.deepcopy(tiny_model).to(CUDA)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    return to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]


def _on(model: Any, runtime: str) -> Any:
    return prepare_runtime(copy.deepcopy(model), ModelConfig(name="t", runtime=runtime), CUDA, "w")


def test_compile_gives_eager_masks_on_cuda(eager: Any, image: np.ndarray) -> None:
    compiled = _on(eager, "compile")
    assert compiled.prepare_s > 0.0
    # inductor's kernels are not bit-identical to eager (task_info.runtime.exactness=float)
    assert_eagers_masks_beyond(eager, compiled.model, grid_case(image), compiled.logit_tol)


def test_bf16_agrees_with_eager_on_cuda(eager: Any, image: np.ndarray) -> None:
    got = compare_case(eager, _on(eager, "bf16").model, grid_case(image))
    assert np.mean(got.mask_ious) >= 0.98 and got.embed_rel_l2 > 0.0


def test_fast_engine_runs_on_a_runtimes_decoder_on_cuda(eager: Any, image: np.ndarray) -> None:
    from sam_bench.engines.fast import FastAMG
    from sam_bench.metrics.cost import StageTimes
    from sam_bench.tasks.amg.settings import AMGConfig

    amg = AMGConfig(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                    box_nms_thresh=1.0)  # fmt: skip
    model = _on(eager, "bf16").model
    masks = FastAMG(model, [amg], CUDA).generate_many(image, [StageTimes()])[0]
    assert masks, "the fast engine generated masks through the bf16 decoder on CUDA"
