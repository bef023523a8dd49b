"""The sliced mask decoder is bit-identical to sam2's own ``MaskDecoder.forward``.

The reference is the model's ``sam_mask_decoder`` called as ``SAM2ImagePredictor._predict``
calls it (one image, a batch of point prompts, ``repeat_image=True``). Random weights; the
real image features of an embedded image. Equality is exact (``torch.equal``), not within a
tolerance: the fast engine's masks must be RLE-identical to the official generator's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.config import DatasetConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.decoder import SlicedMaskDecoder, slice_size_for
from sam_bench.engines.fast import FastAMG
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig


@pytest.fixture(scope="module")
def model(tiny_model: torch.nn.Module) -> torch.nn.Module:
    return tiny_model


@pytest.fixture(scope="module")
def predictor(model):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    image = to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]
    p = SAM2ImagePredictor(model)
    with torch.inference_mode():
        p.set_image(image)
    return p


def _inputs(model, predictor, n: int, with_masks: bool) -> dict[str, Any]:
    """Decoder inputs for ``n`` one-click prompts spread over the image."""
    h, w = predictor._orig_hw[0]
    rng = np.random.default_rng(n)
    pts = torch.as_tensor(rng.uniform(0, 1, (n, 2)) * [w, h], dtype=torch.float32)
    coords = predictor._transforms.transform_coords(pts, normalize=True, orig_hw=(h, w))
    labels = torch.ones(n, dtype=torch.int)
    masks = torch.as_tensor(rng.normal(0, 8, (n, 1, 256, 256)), dtype=torch.float32)
    sparse, dense = model.sam_prompt_encoder(
        points=(coords[:, None], labels[:, None]), boxes=None, masks=masks if with_masks else None
    )
    return {
        "image_embeddings": predictor._features["image_embed"][-1].unsqueeze(0),
        "image_pe": model.sam_prompt_encoder.get_dense_pe(),
        "sparse_prompt_embeddings": sparse,
        "dense_prompt_embeddings": dense,
        "high_res_features": [f[-1].unsqueeze(0) for f in predictor._features["high_res_feats"]],
    }


CASES = [  # (prompts, slice size, multimask_output, mask input)
    (16, 2, True, False),
    (16, 4, True, False),
    (5, 2, True, False),  # remainder merged into the last slice (2 + 3)
    (7, 3, False, False),  # single-mask output: dynamic multimask via stability
    (6, 2, False, True),  # m2m-style refinement: mask prompts, one mask per prompt
    (2, 2, True, False),
]


#: Every case in fp32; bf16 for the first case in CI and for all of them under ``slow``
#: (the fast engine's bf16 run against the official generator is in test_fast_engine.py).
PARAMS = [pytest.param(*c, "fp32") for c in CASES] + [
    pytest.param(*c, "bf16", marks=[pytest.mark.slow] if i else []) for i, c in enumerate(CASES)
]


@pytest.mark.parametrize("n,size,multimask,with_masks,dtype", PARAMS)
def test_sliced_decoder_is_bit_identical(model, predictor, n, size, multimask, with_masks, dtype):
    kwargs = _inputs(model, predictor, n, with_masks)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.inference_mode(), ctx:
        ref_masks, ref_iou, _, _ = model.sam_mask_decoder(
            multimask_output=multimask, repeat_image=True, **kwargs
        )
        masks, iou = SlicedMaskDecoder(model.sam_mask_decoder, size)(
            multimask_output=multimask, **kwargs
        )
    assert masks.shape == ref_masks.shape and masks.dtype == ref_masks.dtype
    assert torch.equal(masks, ref_masks)
    assert torch.equal(iou, ref_iou)


def test_slices_never_leave_a_single_prompt() -> None:
    dec = SlicedMaskDecoder(torch.nn.Module(), 2)
    assert [(s.start, s.stop) for s in dec._slices(5)] == [(0, 2), (2, 5)]
    assert [(s.start, s.stop) for s in dec._slices(4)] == [(0, 2), (2, 4)]
    assert [(s.start, s.stop) for s in dec._slices(1)] == [(0, 1)]
    assert [(s.start, s.stop) for s in SlicedMaskDecoder(torch.nn.Module(), 4)._slices(6)] == [
        (0, 6)
    ]
    with pytest.raises(ValueError, match="slice_size"):
        SlicedMaskDecoder(torch.nn.Module(), 1)


def test_fast_engine_slices_on_cpu_only(model) -> None:
    """The exactness tests of the fast engine (test_fast_engine.py) run the sliced decoder."""
    assert slice_size_for(torch.device("cpu")) is not None
    assert slice_size_for(torch.device("cuda")) is None
    fast = FastAMG(model, [AMGConfig(points_per_side=4)], torch.device("cpu"))
    assert isinstance(fast._sliced_decoder, SlicedMaskDecoder)


def test_image_side_terms_are_computed_once_per_image(model, predictor) -> None:
    """Batches of one image reuse the first layer's image-side terms (computed once), and every
    batch is still bit-identical to sam2's decoder; another image (here: the embedding
    shifted) computes them again; mask prompts (a dense embedding per prompt) do not use them."""
    dec = SlicedMaskDecoder(model.sam_mask_decoder, 2)
    with torch.inference_mode():
        for n in (4, 6, 5):
            kwargs = _inputs(model, predictor, n, with_masks=False)
            ref_masks, ref_iou, _, _ = model.sam_mask_decoder(
                multimask_output=True, repeat_image=True, **kwargs
            )
            masks, iou = dec(multimask_output=True, **kwargs)
            assert torch.equal(masks, ref_masks) and torch.equal(iou, ref_iou)
        assert dec.image_side.computed == 1
        kwargs["image_embeddings"] = kwargs["image_embeddings"] + 0.5
        ref_masks, _, _, _ = model.sam_mask_decoder(
            multimask_output=True, repeat_image=True, **kwargs
        )
        assert torch.equal(dec(multimask_output=True, **kwargs)[0], ref_masks)
        assert dec.image_side.computed == 2
        with_masks = _inputs(model, predictor, 4, with_masks=True)
        ref_masks, _, _, _ = model.sam_mask_decoder(
            multimask_output=False, repeat_image=True, **with_masks
        )
        assert torch.equal(dec(multimask_output=False, **with_masks)[0], ref_masks)
        assert dec.image_side.computed == 2


def test_image_side_cache_follows_the_autocast_state(model, predictor) -> None:
    """Terms computed in fp32 are not handed to a bf16 autocast batch (nor back)."""
    dec = SlicedMaskDecoder(model.sam_mask_decoder, 2)
    kwargs = _inputs(model, predictor, 4, with_masks=False)
    with torch.inference_mode():
        dec(multimask_output=True, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref, _, _, _ = model.sam_mask_decoder(multimask_output=True, repeat_image=True,
                                                  **kwargs)  # fmt: skip
            assert torch.equal(dec(multimask_output=True, **kwargs)[0], ref)
        assert dec.image_side.computed == 2
        ref, _, _, _ = model.sam_mask_decoder(multimask_output=True, repeat_image=True, **kwargs)
        assert torch.equal(dec(multimask_output=True, **kwargs)[0], ref)
        assert dec.image_side.computed == 3
