"""Runtimes on the real architecture (sam2.1 tiny, random weights, CPU): eager is unchanged,
bf16 agrees with eager within its tolerance, compile gives identical masks (slow), the engines
call a runtime's components (a counting test double checks the wiring, not a model's
output), and the agreement metrics equal an independent computation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.decoder import CPU_SLICE_SIZE, slice_size_for
from sam_bench.models.agreement import AgreementCase, box_case, compare_case, grid_case
from sam_bench.models.runtimes.apply import prepare_runtime
from sam_bench.models.runtimes.base import APPROXIMATE, FLOAT, Prepared, RuntimeOptions
from sam_bench.models.runtimes.swap import COMPONENTS, Delegating, swap
from sam_bench.preprocess import to_model_input
from sam_bench.prompts.boxes import tight_box
from tests.runtime_checks import assert_eagers_masks_beyond

CPU = torch.device("cpu")


def _on(model: torch.nn.Module, runtime: str) -> Prepared:
    """A deep copy of ``model`` on ``runtime`` (sam_bench's own preparation)."""
    return prepare_runtime(copy.deepcopy(model), ModelConfig(name="t", runtime=runtime), CPU, "w")


@pytest.fixture(scope="module")
def sample() -> Any:
    """The embedded color scene (several instances)."""
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    s = ds.load(ds.refs()[0])
    image = to_model_input(s.raw, PreprocessConfig())[0]
    masks = [np.asarray(mask_utils.decode(r), dtype=bool) for r in s.gt.rles]
    return image, masks


@pytest.fixture(scope="module")
def bf16(tiny_model: torch.nn.Module) -> Prepared:
    return _on(tiny_model, "bf16")


def test_eager_is_the_model_as_built(tiny_model: torch.nn.Module) -> None:
    before = {name: getattr(tiny_model, name) for name in COMPONENTS}
    prepared = _on(tiny_model, "eager")
    assert prepared.exact and prepared.prepare_s == 0.0
    eager = prepared.model
    for name in COMPONENTS:
        assert type(getattr(eager, name)) is type(before[name]), name
    assert slice_size_for(CPU, tiny_model) == CPU_SLICE_SIZE, "eager keeps the sliced decoder"


def _independent(reference: Any, candidate: Any, case: AgreementCase) -> dict[str, float]:
    """The agreement figures computed apart from sam_bench.models.agreement: the official
    predictor's calls, numpy differences and pycocotools' IoU."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    out = []
    for model in (reference, candidate):
        p = SAM2ImagePredictor(model)
        with torch.inference_mode():
            p.set_image(case.image)
            emb = p._features["image_embed"].float().numpy().astype(np.float64)
            logits, _, low = p.predict(point_coords=case.point_coords,
                                       point_labels=case.point_labels, box=case.boxes,
                                       multimask_output=case.multimask_output,
                                       return_logits=True)  # fmt: skip
        out.append((emb, logits.reshape(-1, *logits.shape[-2:]) > 0, low))
    (e0, m0, l0), (e1, m1, l1) = out
    rle = lambda m: mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))  # noqa: E731
    ious = [
        1.0 if not (a.any() or b.any()) else float(mask_utils.iou([c], [r], [0])[0][0])
        for a, b, c, r in zip(m1, m0, rle(m1), rle(m0), strict=True)
    ]  # fmt: skip
    return {
        "embed_max_abs": float(np.abs(e1 - e0).max()),
        "embed_rel_l2": float(np.linalg.norm(e1 - e0) / np.linalg.norm(e0)),
        "logits_max_abs": float(np.abs(l1 - l0).max()),
        "iou_min": min(ious),
        "iou_mean": float(np.mean(ious)),
        "n": len(ious),
    }


def _check_against_independent(got: Any, ref: dict[str, float]) -> None:
    assert len(got.mask_ious) == ref["n"]
    assert got.embed_max_abs == pytest.approx(ref["embed_max_abs"], rel=1e-6)
    assert got.embed_rel_l2 == pytest.approx(ref["embed_rel_l2"], rel=1e-6)
    assert got.logits_max_abs == pytest.approx(ref["logits_max_abs"], rel=1e-6)
    assert min(got.mask_ious) == pytest.approx(ref["iou_min"], abs=1e-9)
    assert float(np.mean(got.mask_ious)) == pytest.approx(ref["iou_mean"], abs=1e-9)


def test_bf16_agrees_with_eager_per_prompted_instance(
    tiny_model: Any, bf16: Prepared, sample
) -> None:
    """The prompted case (one box per instance, one mask each) on one embedded image: bf16
    is approximate (not identical) with mask IoU >= 0.98 on average; the metrics equal an
    independent computation of the same quantities."""
    assert not bf16.exact and bf16.exactness == APPROXIMATE and bf16.logit_tol is None
    image, masks = sample
    case = box_case(image, masks)
    assert case is not None and case.boxes is not None and len(case.boxes) == len(masks) >= 2
    np.testing.assert_array_equal(case.boxes[0], tight_box(masks[0]))
    got = compare_case(tiny_model, bf16.model, case)
    _check_against_independent(got, _independent(tiny_model, bf16.model, case))
    assert len(got.mask_ious) == len(masks), "one mask per instance"
    assert 0.0 < got.embed_rel_l2 < 0.05, "bf16 ran (not identical) and stayed close"
    assert np.mean(got.mask_ious) >= 0.98, got.mask_ious


@pytest.mark.slow
def test_bf16_agrees_with_eager_on_an_amg_grid(tiny_model: Any, bf16: Prepared, sample) -> None:
    """AMG's case (a 4 x 4 point grid, 3 masks each): mask IoU >= 0.98 on average, against
    an independent computation too (slow: four encoder passes)."""
    case = grid_case(sample[0])
    got = compare_case(tiny_model, bf16.model, case)
    _check_against_independent(got, _independent(tiny_model, bf16.model, case))
    assert len(got.mask_ious) == 48
    assert np.mean(got.mask_ious) >= 0.98, got.mask_ious


class Counting:
    """A runtime test double: each component delegates to sam2's own module and counts its
    calls (and the prompts its decoder saw). It checks which module the engines call."""

    name = "counting"
    exact = True

    def __init__(self) -> None:
        self.calls = dict.fromkeys(COMPONENTS, 0)
        self.prompts = 0

    def prepare(self, model: Any, device: Any, options: RuntimeOptions) -> Prepared:
        def make(name: str, module: torch.nn.Module) -> torch.nn.Module:
            def call(inner: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                out = inner(*args, **kwargs)
                if name == "sam_mask_decoder":
                    self.prompts += int(out[0].shape[0])
                return out

            return Delegating(module, call)

        swap(model, make)
        return Prepared(model=model, prepare_s=0.0, exact=True)


def test_the_engines_call_a_runtimes_components(tiny_model: Any, sample) -> None:
    """The fast AMG engine and the prompted decoder call the runtime's image encoder, prompt
    encoder and mask decoder (not their own sliced / factored copies of the eager weights),
    and through the upstream call they give the eager engine's masks."""
    from sam_bench.engines.fast import FastAMG
    from sam_bench.metrics.cost import StageTimes
    from sam_bench.tasks.amg.settings import AMGConfig
    from sam_bench.tasks.prompted.decoder import PromptDecoder

    image, masks = sample
    counting = Counting()
    model = counting.prepare(copy.deepcopy(tiny_model), CPU, RuntimeOptions("w", Path("."))).model
    assert slice_size_for(CPU, model) is None
    amg = AMGConfig(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                    box_nms_thresh=1.0)  # fmt: skip
    ours = FastAMG(model, [amg], CPU).generate_many(image, [StageTimes()])[0]
    assert counting.calls["image_encoder"] == 1
    assert counting.calls["sam_prompt_encoder"] >= 1
    assert counting.prompts == 9, "every grid point went through the runtime's decoder"
    eager = FastAMG(tiny_model, [amg], CPU).generate_many(image, [StageTimes()])[0]
    assert sorted(m.rle["counts"] for m in ours) == sorted(m.rle["counts"] for m in eager)

    decoder = PromptDecoder(model, CPU)
    decoder.set_image(image, [])
    boxes = np.stack([tight_box(m) for m in masks[:3]])
    before = counting.prompts
    decoder.decode(box=boxes, multimask_output=False, factored=True)
    assert counting.prompts - before == 3
    assert decoder._factored_decoder is None and decoder._sliced_decoder is None
    assert counting.calls["image_encoder"] == 2


@pytest.mark.slow
def test_compile_masks_are_eagers_beyond_its_logit_tolerance(tiny_model: Any, sample) -> None:
    """torch.compile (inductor, CPU) is not bit-identical to eager: its generated kernels
    (decomposed layer norms, softmax and GELU, fused and vectorised) round in another order
    (measured here: the mask decoder alone, on equal inputs, within ~1e-6; through the
    encoder, logits within ~5e-5). What holds, and is asserted on the grid and box prompts
    of the embedded scene: every full-resolution logit within ``logit_tol`` (1e-4) of eager's,
    so every mask pixel whose eager logit is farther than that from 0 is eager's; the pixels
    that flip (all within it) are counted: at most 1 in 10^4 of the pixels."""
    compiled = _on(tiny_model, "compile")
    assert compiled.exact and compiled.prepare_s > 0.0
    assert compiled.exactness == FLOAT and compiled.logit_tol == 1e-4
    assert compiled.details["backend"] == "inductor"
    image, masks = sample
    for case in (grid_case(image), box_case(image, masks)):
        assert case is not None
        assert_eagers_masks_beyond(tiny_model, compiled.model, case, compiled.logit_tol)
