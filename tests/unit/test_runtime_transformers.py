"""``model.runtime=transformers``: sam2's OFFICIAL image predictor, automatic mask generator
and video predictor on the eager model and on a copy whose prompt path runs transformers'
``Sam2Model`` (converted from the same random weights): with ``match_eager`` (the default)
the same embeddings, logits, IoU predictions and masks bit for bit; without it, logits within
1e-5 and the masks equal wherever the eager logit is not within 1e-5 of the threshold."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.models.runtimes.base import RuntimeOptions
from sam_bench.models.runtimes.transformers import TransformersRuntime
from tests.hf_fixtures import embedded_image

transformers = pytest.importorskip("transformers", minversion="4.56")

LOGIT_TOL = 1e-5


def _options(tmp: Path, **extra: Any) -> RuntimeOptions:
    return RuntimeOptions(weights_hash="test", cache_dir=tmp, options=extra)


def _prepare(model: torch.nn.Module, tmp: Path, **extra: Any) -> Any:
    return TransformersRuntime().prepare(
        copy.deepcopy(model), torch.device("cpu"), _options(tmp, **extra)
    )


def assert_identical(eager: np.ndarray, ours: np.ndarray) -> None:
    """Equal arrays, bit for bit (logits, IoU predictions, masks)."""
    assert eager.shape == ours.shape
    diff = float(np.abs(np.asarray(eager, np.float64) - np.asarray(ours, np.float64)).max())
    assert np.array_equal(eager, ours), f"max-abs difference {diff:.3e}"


def assert_same_masks(eager: np.ndarray, ours: np.ndarray) -> int:
    """Without ``match_eager``: logits within :data:`LOGIT_TOL`, and the thresholded masks
    identical wherever the eager logit is farther than :data:`LOGIT_TOL` from the threshold
    0. (transformers' modules round differently: logits differ by ~3e-7, so with random
    weights, whose logits crowd around 0, a pixel whose eager logit is ~1e-7 can fall on
    the other side; measured: 0 or 1 such pixel per prompt.) Returns the number of flipped
    pixels (all within :data:`LOGIT_TOL` of the threshold)."""
    assert eager.shape == ours.shape
    diff = float(np.abs(eager - ours).max())
    assert diff < LOGIT_TOL, diff
    flips = (eager > 0) != (ours > 0)
    confident = np.abs(eager) >= LOGIT_TOL
    assert not (flips & confident).any(), (
        f"{int((flips & confident).sum())} mask pixels differ where the eager logit is "
        f"beyond {LOGIT_TOL} (logit max-abs diff {diff:.2e})"
    )
    return int(flips.sum())


@pytest.fixture(scope="module")
def predictors(tiny_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    prepared = _prepare(tiny_model, tmp_path_factory.mktemp("hf"))
    image = embedded_image()
    eager, ours = SAM2ImagePredictor(tiny_model), SAM2ImagePredictor(prepared.model)
    with torch.no_grad():
        eager.set_image(image)
        ours.set_image(image)
    return eager, ours, prepared


def test_prepare_records_details_and_swaps_modules(predictors: Any) -> None:
    from sam_bench.models.runtimes.hf_adapters import HFImageEncoder, HFMaskDecoder

    _, _, prepared = predictors
    assert prepared.exact is True
    assert prepared.details["transformers"] == transformers.__version__
    assert prepared.details["source"] == "converted"
    assert prepared.details["match_eager"] is True
    assert prepared.exactness == "bitwise" and prepared.logit_tol is None
    assert prepared.details["numerics"] == [
        "prompt_encoder.mask_embed.layer_norm1: sam2 LayerNorm2d",
        "prompt_encoder.mask_embed.layer_norm2: sam2 LayerNorm2d",
        "mask_decoder.upscale_layer_norm: sam2 LayerNorm2d",
        "mask_decoder.output_hypernetworks_mlps: called on 2-D rows",
        "mask_decoder.iou_prediction_head: called on 2-D rows",
        "mask_decoder.pred_obj_score_head: called on 2-D rows",
        "mask_decoder.transformer: image embeddings in sam2's memory layout",
    ]
    assert isinstance(prepared.model.image_encoder, HFImageEncoder)
    assert isinstance(prepared.model.sam_mask_decoder, HFMaskDecoder)
    assert prepared.prepare_s > 0


def test_embeddings_bit_identical(predictors: Any) -> None:
    eager, ours, _ = predictors
    assert torch.equal(eager._features["image_embed"], ours._features["image_embed"])
    for a, b in zip(
        eager._features["high_res_feats"], ours._features["high_res_feats"], strict=True
    ):
        assert torch.equal(a, b)


PROMPTS: dict[str, dict[str, Any]] = {
    "clicks_multimask": {
        "point_coords": np.array([[60, 50], [150, 120]]),
        "point_labels": np.array([1, 0]),
        "multimask_output": True,
    },
    "click_single": {
        "point_coords": np.array([[200, 90]]),
        "point_labels": np.array([1]),
        "multimask_output": False,
    },
    "box": {"box": np.array([20, 30, 180, 200]), "multimask_output": False},
    "box_and_click": {
        "box": np.array([20, 30, 180, 200]),
        "point_coords": np.array([[100, 100]]),
        "point_labels": np.array([0]),
        "multimask_output": True,
    },
    "batched_boxes": {
        "box": np.array([[20, 30, 180, 200], [100, 10, 300, 230]]),
        "multimask_output": True,
    },
    "batched_clicks": {
        "point_coords": np.array([[[60, 50]], [[150, 120]], [[280, 200]]]),
        "point_labels": np.array([[1], [1], [0]]),
        "multimask_output": True,
    },
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
@pytest.mark.parametrize("with_mask_input", [False, True])
def test_image_predictor_same_masks(predictors: Any, name: str, with_mask_input: bool) -> None:
    eager, ours, _ = predictors
    kwargs = dict(PROMPTS[name], return_logits=True)
    with torch.no_grad():
        if with_mask_input:  # the previous prediction's best low-res logits, as sam2's notebook
            _, scores, low = eager.predict(**kwargs)
            if low.ndim == 3:  # one prompt: 1 x H x W
                kwargs["mask_input"] = low[scores.argmax()][None]
            else:  # batched prompts: B x 1 x H x W
                kwargs["mask_input"] = low[np.arange(len(low)), scores.argmax(-1)][:, None]
        masks_e, iou_e, low_e = eager.predict(**kwargs)
        masks_o, iou_o, low_o = ours.predict(**kwargs)
    assert_identical(masks_e, masks_o)  # full-resolution logits (return_logits=True)
    assert_identical(low_e, low_o)
    assert_identical(iou_e, iou_o)


@pytest.mark.slow  # two encoder passes and 2 x 16 decoder points: ~55 s on a busy 2-core CPU
def test_automatic_mask_generator_same_masks(tiny_model: Any, predictors: Any) -> None:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    _, _, prepared = predictors
    # thresholds 0 and no NMS: every candidate (16 points x 3 masks) reaches the output
    kwargs = {
        "points_per_side": 4,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 1.0,
    }
    image = embedded_image()
    with torch.no_grad():
        eager = SAM2AutomaticMaskGenerator(tiny_model, **kwargs).generate(image)
        ours = SAM2AutomaticMaskGenerator(prepared.model, **kwargs).generate(image)
    assert len(eager) == len(ours) == 48
    for a, b in zip(eager, ours, strict=True):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        assert a["point_coords"] == b["point_coords"]
        assert a["predicted_iou"] == b["predicted_iou"]
        assert a["stability_score"] == b["stability_score"]


def test_hf_id_loads_a_saved_model(predictors: Any, tiny_model: Any, tmp_path: Path) -> None:
    """``runtime_options.hf_id`` (here a local ``save_pretrained`` folder, as offline users
    would pass): the same modules and weights as converting in memory, and the same masks."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from sam_bench.models.runtimes.hf_convert import convert_model

    convert_model(copy.deepcopy(tiny_model)).save_pretrained(tmp_path / "hf")
    prepared = _prepare(tiny_model, tmp_path, hf_id=str(tmp_path / "hf"))
    assert prepared.details["source"] == str(tmp_path / "hf")
    _, converted, by_conversion = predictors
    theirs = by_conversion.model.state_dict()
    ours = prepared.model.state_dict()
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert torch.equal(value, theirs[key]), key
    loaded = SAM2ImagePredictor(prepared.model)
    loaded._features, loaded._orig_hw, loaded._is_image_set = (
        converted._features, converted._orig_hw, True,
    )  # fmt: skip
    kwargs = dict(PROMPTS["clicks_multimask"], return_logits=True)
    with torch.no_grad():
        assert np.array_equal(converted.predict(**kwargs)[0], loaded.predict(**kwargs)[0])


def test_bad_options_and_hub_ids_are_one_line_errors(tiny_model: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        _prepare(tiny_model, tmp_path, opset=17)
    with pytest.raises(SamBenchError, match="hf_id") as info:
        _prepare(tiny_model, tmp_path, hf_id=str(tmp_path / "missing"))
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_video_predictor_runs_on_swapped_modules(tmp_path: Path) -> None:
    """The official ``SAM2VideoPredictor`` on 3 frames: same masks with the prompt path on
    transformers (memory encoder / attention stay eager)."""
    from PIL import Image

    from sam_bench.config import ModelConfig
    from sam_bench.models.build import build_video_model

    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
        url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    settings = SimpleNamespace(
        apply_postprocessing=False, non_overlap_masks=False, fill_hole_area=None,
        vos_optimized=False,
    )  # fmt: skip
    eager, _ = build_video_model(cfg, settings, torch.device("cpu"), seed=0, progress=False)
    ours = _prepare(eager, tmp_path).model
    frames = tmp_path / "frames"
    frames.mkdir()
    image = embedded_image()
    for i in range(3):
        Image.fromarray(np.roll(image, 8 * i, axis=1)).save(frames / f"{i:05d}.jpg")

    def track(predictor: Any) -> list[np.ndarray]:
        with torch.no_grad():
            state = predictor.init_state(video_path=str(frames))
            predictor.add_new_points_or_box(
                state, frame_idx=0, obj_id=1, points=np.array([[60, 50]], dtype=np.float32),
                labels=np.array([1], dtype=np.int32),
            )  # fmt: skip
            return [logits[0, 0].numpy() for _, _, logits in predictor.propagate_in_video(state)]

    a, b = track(eager), track(ours)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b, strict=True):
        assert_identical(x, y)


def test_hf_id_records_its_weights_and_agreement_compares_the_same_weights(
    tiny_model: Any, tmp_path: Path
) -> None:
    """``hf_id`` naming OTHER weights than the eager build's (a ``save_pretrained`` folder
    of a perturbed copy, offline): the job records the ``Sam2Model``'s hash and source (the
    eager build's block kept under ``weights.eager``), and the eager reference of the
    agreement metrics is sam2's eager model holding those same weights (image path; video
    memory modules the eager build's): its logits match the runtime's, while the eager
    build's own weights would not."""
    from transformers import Sam2Model

    from sam_bench.config import ModelConfig
    from sam_bench.models.agreement import compare_case, grid_case
    from sam_bench.models.checkpoints import state_dict_hash
    from sam_bench.models.runtimes.apply import eager_reference, recorded_weights, runtime_info
    from sam_bench.models.runtimes.hf_convert import convert_model, is_video_only

    other = copy.deepcopy(tiny_model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    folder = str(tmp_path / "hf")
    convert_model(copy.deepcopy(other)).save_pretrained(folder)
    saved_hash = state_dict_hash(Sam2Model.from_pretrained(folder).state_dict())

    prepared = _prepare(tiny_model, tmp_path, hf_id=folder)
    assert prepared.weights is not None
    assert prepared.weights.source == f"model.runtime_options.hf_id={folder}"
    assert prepared.weights.state_dict_hash == saved_hash
    converted = state_dict_hash(convert_model(copy.deepcopy(tiny_model)).state_dict())
    assert saved_hash != converted
    assert _prepare(tiny_model, tmp_path).weights is None  # converted: the eager weights ran

    info = runtime_info("transformers", prepared)
    eager_block = {"kind": "random", "label": "random", "hash": "e" * 64, "sha256": None,
                   "state_dict_hash": "e" * 64, "requested": "random",
                   "checkpoint_path": None, "fallback_reason": None}  # fmt: skip
    block = recorded_weights(eager_block, info)
    assert block["hash"] == block["state_dict_hash"] == saved_hash
    assert block["label"] == block["checkpoint_path"] == prepared.weights.source
    assert block["eager"] == eager_block and block["kind"] == "random"
    assert recorded_weights(eager_block, runtime_info("bf16", None)) == eager_block

    cfg = ModelConfig(name="t", runtime="transformers", runtime_options={"hf_id": folder})
    reference = copy.deepcopy(tiny_model)
    described = eager_reference(reference, cfg, "e" * 64, info["weights"])
    assert described["runtime_weights_hash"] == saved_hash
    assert described["implementation"] == "sam2 eager" and folder in described["weights"]
    assert described["state_dict_hash"] == state_dict_hash(reference.state_dict())
    theirs, eager_sd = other.state_dict(), tiny_model.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(value, eager_sd[key] if is_video_only(key) else theirs[key]), key

    case = grid_case(embedded_image(), points_per_side=2)
    honest = compare_case(reference, prepared.model, case)
    naive = compare_case(tiny_model, prepared.model, case)
    assert honest.logits_max_abs == 0.0 and honest.embed_max_abs == 0.0
    assert naive.logits_max_abs > 1e-2, "the eager build's own weights are another model"

    with pytest.raises(SamBenchError, match="does not hold the weights"):
        eager_reference(copy.deepcopy(tiny_model), cfg, "e" * 64, {"state_dict_hash": "x"})


def test_without_match_eager_masks_agree_beyond_float_noise(
    tiny_model: Any, predictors: Any, tmp_path: Path
) -> None:
    """``match_eager=false``: transformers' modules untouched (nothing recorded as changed);
    every mask pixel whose eager logit is farther than 1e-5 from the threshold is eager's."""
    eager, _, _ = predictors
    plain = _prepare(tiny_model, tmp_path, match_eager=False)
    assert plain.details["match_eager"] is False and plain.details["numerics"] == []
    assert plain.exactness == "float" and plain.logit_tol == LOGIT_TOL
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ours = SAM2ImagePredictor(plain.model)
    flipped = 0
    with torch.no_grad():
        ours.set_image(embedded_image())
        for name in sorted(PROMPTS):
            kwargs = dict(PROMPTS[name], return_logits=True)
            masks_e, iou_e, low_e = eager.predict(**kwargs)
            masks_o, iou_o, low_o = ours.predict(**kwargs)
            flipped += assert_same_masks(masks_e, masks_o)
            assert_same_masks(low_e, low_o)
            assert np.abs(iou_e - iou_o).max() < LOGIT_TOL
    print(f"match_eager=false: {flipped} mask pixels flipped (all within {LOGIT_TOL} of 0)")
    with pytest.raises(ConfigError, match="match_eager"):
        _prepare(tiny_model, tmp_path, match_eager="yes")


def test_layout_hook_swaps_only_equal_values() -> None:
    """The layout hook hands the transformer sam2's tensor only when its values equal
    transformers' own (a layout change, never other numbers)."""
    from sam_bench.models.runtimes.hf_numerics import _sam2_src

    module = torch.nn.Module()
    ours = torch.randn(1, 4, 3, 3)
    src = ours.contiguous(memory_format=torch.channels_last)
    module.sam2_src = src
    _, kwargs = _sam2_src(module, (), {"image_embeddings": ours})
    assert kwargs["image_embeddings"] is src and not hasattr(module, "sam2_src")
    module.sam2_src = src + 1.0
    assert _sam2_src(module, (), {"image_embeddings": ours}) is None
    assert _sam2_src(module, (), {"image_embeddings": ours}) is None  # nothing handed over
