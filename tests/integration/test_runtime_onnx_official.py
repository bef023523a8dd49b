"""``model.runtime=onnxruntime`` against eager PyTorch through sam2's OFFICIAL classes.

The same random-weight sam2.1 tiny model twice: as built (eager) and a deep copy prepared with
:class:`OnnxRuntime` (its image encoder, prompt encoder and mask decoder swapped for ONNX
Runtime sessions). ``SAM2ImagePredictor``, ``SAM2AutomaticMaskGenerator`` and
``SAM2VideoPredictor`` run unchanged on both, on an image of the embedded synthetic dataset.
What holds (measured, and asserted): image embeddings within 1e-4, logits within 1e-4 and
masks identical (every pixel of every mask, not a tolerance).
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.data.synthetic import make_scene
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.runtimes.base import RuntimeOptions
from sam_bench.models.runtimes.onnx import OnnxRuntime, export_versions, versions_tag
from sam_bench.preprocess import to_model_input

pytest.importorskip("onnxruntime")

TOL = 1e-4
CPU = torch.device("cpu")


def _prepare(model: torch.nn.Module, cache: Path, **options: Any) -> Any:
    options.setdefault("intra_op_threads", 1)
    opts = RuntimeOptions(
        weights_hash=state_dict_hash(model.state_dict())[:16], cache_dir=cache, options=options
    )
    return OnnxRuntime().prepare(copy.deepcopy(model), CPU, opts)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def prepared(tiny_model: torch.nn.Module, cache: Path) -> Any:
    return _prepare(tiny_model, cache)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    return to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]


@pytest.fixture(scope="module")
def predictors(tiny_model: torch.nn.Module, prepared: Any, image: np.ndarray) -> tuple[Any, Any]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pair = SAM2ImagePredictor(tiny_model), SAM2ImagePredictor(prepared.model)
    with torch.inference_mode():
        for p in pair:
            p.set_image(image)
    return pair


def _max_diff(a: Any, b: Any) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_prepare_swaps_the_three_components_and_records_the_export(prepared: Any) -> None:
    m = prepared.model
    names = {type(m.image_encoder).__name__, type(m.sam_prompt_encoder).__name__}
    assert names == {"OrtImageEncoder", "OrtPromptEncoder"}
    assert type(m.sam_mask_decoder).__name__ == "OrtMaskDecoder"
    d = prepared.details
    assert prepared.exact and d["providers"] == ["CPUExecutionProvider"] and d["opset"] == 17
    assert prepared.exactness == "float" and prepared.logit_tol == TOL  # what these tests assert
    assert d["cache_hit"] is False and d["export_s"] > 0 and prepared.prepare_s >= d["export_s"]
    assert all(Path(f["file"]).is_file() for f in d["files"].values())
    assert d["export_versions"] == export_versions("torchscript")  # the cache key's versions
    tag = versions_tag(d["export_versions"])
    assert all(f["file"].endswith(f"-{tag}.onnx") for f in d["files"].values())
    print(f"export {d['export_s']:.1f} s, prepare {prepared.prepare_s:.1f} s")


def test_image_features_agree(predictors: tuple[Any, Any]) -> None:
    eager, onnx = predictors
    for key in ("image_embed", "high_res_feats"):
        e, o = eager._features[key], onnx._features[key]
        pairs = list(zip(e, o, strict=True)) if isinstance(e, list) else [(e, o)]
        for a, b in pairs:
            assert a.shape == b.shape and a.dtype == b.dtype
            diff = float((a - b).abs().max())
            print(f"{key} {tuple(a.shape)}: max abs diff {diff:.2e}")
            assert diff < TOL


PROMPTS: dict[str, dict[str, Any]] = {
    "one_click_multimask": {"point_coords": [[200, 150]], "point_labels": [1]},
    "two_clicks_single": {
        "point_coords": [[200, 150], [60, 40]], "point_labels": [1, 0], "multimask_output": False,
    },
    "box": {"box": [40, 30, 260, 200], "multimask_output": False},
    "box_and_click": {"box": [40, 30, 260, 200], "point_coords": [[150, 120]], "point_labels": [1]},
    "batched_clicks": {
        "point_coords": [[[200, 150]], [[30, 200]], [[300, 20]]], "point_labels": [[1], [1], [1]],
    },
}  # fmt: skip


def _predict(p: Any, **prompt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    multimask = prompt.pop("multimask_output", True)
    arrays = {k: np.asarray(v) for k, v in prompt.items()}
    with torch.inference_mode():
        masks, iou, low = p.predict(**arrays, multimask_output=multimask)
    return masks, iou, low


def _check_round(eager: Any, onnx: Any, name: str, **prompt: Any) -> np.ndarray:
    me, ie, le = _predict(eager, **dict(prompt))
    mo, io_, lo = _predict(onnx, **dict(prompt))
    assert me.shape == mo.shape and me.dtype == mo.dtype
    differing = int((me != mo).sum())
    print(f"{name}: {me.shape} masks, {differing} differing pixels, logits max diff "
          f"{_max_diff(le, lo):.2e}, iou max diff {_max_diff(ie, io_):.2e}")  # fmt: skip
    assert me.any(), "the eager masks are empty: the comparison would compare nothing"
    assert differing == 0
    assert _max_diff(le, lo) < TOL and _max_diff(ie, io_) < TOL
    return le


@pytest.mark.parametrize("name", list(PROMPTS))
def test_image_predictor_masks_identical(predictors: tuple[Any, Any], name: str) -> None:
    _check_round(*predictors, name, **PROMPTS[name])


def test_image_predictor_mask_input_from_previous_round(predictors: tuple[Any, Any]) -> None:
    eager, onnx = predictors
    low = _check_round(eager, onnx, "round 1", point_coords=[[200, 150]], point_labels=[1],
                       multimask_output=False)  # fmt: skip
    _check_round(eager, onnx, "round 2", point_coords=[[200, 150], [120, 100]],
                 point_labels=[1, 0], mask_input=low, multimask_output=False)  # fmt: skip
    _check_round(eager, onnx, "mask only", mask_input=low, multimask_output=True)


def test_automatic_mask_generator_identical(
    tiny_model: torch.nn.Module, prepared: Any, image: np.ndarray
) -> None:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    settings = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                "box_nms_thresh": 1.0}  # fmt: skip
    with torch.inference_mode():
        out_e = SAM2AutomaticMaskGenerator(tiny_model, **settings).generate(image)
        out_o = SAM2AutomaticMaskGenerator(prepared.model, **settings).generate(image)
    assert len(out_e) == len(out_o) == 3 * 16
    differing = sum(int((a["segmentation"] != b["segmentation"]).sum())
                    for a, b in zip(out_e, out_o, strict=True))  # fmt: skip
    iou = _max_diff([a["predicted_iou"] for a in out_e], [b["predicted_iou"] for b in out_o])
    stab = _max_diff([a["stability_score"] for a in out_e], [b["stability_score"] for b in out_o])
    print(f"AMG: {len(out_e)} masks, {differing} differing pixels, "
          f"predicted_iou max diff {iou:.2e}, stability max diff {stab:.2e}")  # fmt: skip
    assert differing == 0 and iou < TOL
    assert [a["bbox"] for a in out_e] == [b["bbox"] for b in out_o]


def test_second_prepare_reuses_the_files(tiny_model: torch.nn.Module, cache: Path,
                                         prepared: Any) -> None:  # fmt: skip
    again = _prepare(tiny_model, cache)
    assert again.details["cache_hit"] is True
    assert all(f["cache_hit"] and f["export_s"] == 0 for f in again.details["files"].values())
    assert again.details["files"] == {
        k: {**v, "cache_hit": True, "export_s": 0.0} for k, v in prepared.details["files"].items()
    }
    print(f"prepare from the cache: {again.prepare_s:.2f} s")


@pytest.mark.slow
def test_another_opset_misses_the_cache(tiny_model: torch.nn.Module, cache: Path,
                                        prepared: Any) -> None:  # fmt: skip
    other = _prepare(tiny_model, cache, opset=18)
    assert other.details["cache_hit"] is False and other.details["opset"] == 18
    assert not any(f["cache_hit"] for f in other.details["files"].values())
    old = {f["file"] for f in prepared.details["files"].values()}
    assert old.isdisjoint(f["file"] for f in other.details["files"].values())


@pytest.mark.slow
def test_dynamo_exporter_masks_identical(
    tiny_model: torch.nn.Module, predictors: tuple[Any, Any], image: np.ndarray, tmp_path: Path
) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    pytest.importorskip("onnxscript")
    prepared = _prepare(tiny_model, tmp_path, exporter="dynamo", opset=18)
    tag = versions_tag(prepared.details["export_versions"])
    assert "onnxscript" in prepared.details["export_versions"]
    assert all(
        f["file"].endswith(f"-dynamo-{tag}.onnx") for f in prepared.details["files"].values()
    )
    print(f"dynamo export {prepared.details['export_s']:.1f} s")
    onnx = SAM2ImagePredictor(prepared.model)
    with torch.inference_mode():
        onnx.set_image(image)
    eager = predictors[0]
    for name in ("two_clicks_single", "box_and_click", "batched_clicks"):
        _check_round(eager, onnx, f"dynamo {name}", **PROMPTS[name])
    low = _check_round(eager, onnx, "dynamo round 1", point_coords=[[200, 150]],
                       point_labels=[1], multimask_output=False)  # fmt: skip
    _check_round(eager, onnx, "dynamo mask only", mask_input=low, multimask_output=True)


# ------------------------------------------------------------------ video


def _write_clip(folder: Path, n: int) -> None:
    """``n`` JPEG frames of a synthetic scene drifting right by 6 px per frame."""
    from PIL import Image

    base = make_scene("color", seed=3, size=(320, 240)).image
    for i in range(n):
        Image.fromarray(np.roll(base, 6 * i, axis=1)).save(folder / f"{i:05d}.jpg", quality=95)


@pytest.mark.slow
def test_video_predictor_masks_identical(tmp_path: Path) -> None:
    from sam_bench.models.build import build_video_model

    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
        url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    video = SimpleNamespace(apply_postprocessing=False, non_overlap_masks=True,
                            fill_hole_area=None, vos_optimized=False)  # fmt: skip
    eager, _ = build_video_model(cfg, video, CPU, seed=0, progress=False)
    onnx = _prepare(eager, tmp_path / "cache").model
    (tmp_path / "clip").mkdir()
    _write_clip(tmp_path / "clip", 3)
    results = []
    for predictor in (eager, onnx):
        with torch.inference_mode():
            state = predictor.init_state(str(tmp_path / "clip"))
            predictor.add_new_points_or_box(
                state, frame_idx=0, obj_id=1, points=np.array([[160.0, 120.0]], np.float32),
                labels=np.array([1], np.int32),
            )  # fmt: skip
            frames = {f: logits.clone() for f, _, logits in predictor.propagate_in_video(state)}
        results.append(frames)
    assert sorted(results[0]) == sorted(results[1]) == [0, 1, 2]
    for f in range(3):
        le, lo = results[0][f], results[1][f]
        differing = int(((le > 0) != (lo > 0)).sum())
        print(f"frame {f}: {differing} differing pixels, logits max diff "
              f"{float((le - lo).abs().max()):.2e}")  # fmt: skip
        assert (le > 0).any() and differing == 0
        assert float((le - lo).abs().max()) < TOL
