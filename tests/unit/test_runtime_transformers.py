"""``model.runtime=transformers``: sam2's OFFICIAL image predictor, automatic mask generator
and video predictor on the eager model and on a copy whose prompt path runs transformers'
``Sam2Model`` (converted from the same random weights): same embeddings, logits within 1e-5,
same masks."""

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


def assert_same_masks(eager: np.ndarray, ours: np.ndarray) -> float:
    """Logits within :data:`LOGIT_TOL`, and the thresholded masks identical wherever the
    eager logit is farther than :data:`LOGIT_TOL` from the threshold 0. (transformers' decoder
    orders its float operations differently: logits differ by ~3e-7, so with random weights,
    whose logits crowd around 0, a pixel whose eager logit is ~1e-7 can fall on the other
    side; measured: 0 or 1 such pixel per prompt.) Returns the max-abs logit difference."""
    assert eager.shape == ours.shape
    diff = float(np.abs(eager - ours).max())
    assert diff < LOGIT_TOL, diff
    flips = (eager > 0) != (ours > 0)
    confident = np.abs(eager) >= LOGIT_TOL
    assert not (flips & confident).any(), (
        f"{int((flips & confident).sum())} mask pixels differ where the eager logit is "
        f"beyond {LOGIT_TOL} (logit max-abs diff {diff:.2e})"
    )
    return diff


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
    assert_same_masks(masks_e, masks_o)
    assert_same_masks(low_e, low_o)
    assert np.abs(iou_e - iou_o).max() < LOGIT_TOL


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
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < LOGIT_TOL
        assert abs(a["stability_score"] - b["stability_score"]) < 1e-3


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
        assert_same_masks(x, y)
