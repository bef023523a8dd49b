"""The fast engine's torch-only image side equals sam2's ``SAM2Transforms`` and
``SAM2ImagePredictor.set_image`` bit for bit (the official classes are the reference)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2.utils.transforms import SAM2Transforms

from sam_bench.engines.image_features import ImageFeatures, ImageTransforms, to_tensor
from sam_bench.models import connected_components
from sam_bench.models.image_predictor import fit_image_predictor


def _image(h: int, w: int, seed: int, gray: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if gray:  # a grayscale image expanded to RGB, as the preprocessing does
        return np.repeat(rng.integers(0, 256, (h, w, 1), dtype=np.uint8), 3, axis=2)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


IMAGES = [
    (37, 53, False),
    (480, 641, False),
    (1023, 1, False),
    (299, 1500, True),
    (1024, 1024, False),
]


@pytest.mark.parametrize(("h", "w", "gray"), IMAGES)
@pytest.mark.parametrize("resolution", [1024, 1008])
def test_image_tensor_equals_sam2_transforms(h: int, w: int, gray: bool, resolution: int) -> None:
    image = _image(h, w, seed=h * w, gray=gray)
    ref = SAM2Transforms(resolution=resolution, mask_threshold=0.0)(image)
    ours = ImageTransforms(resolution=resolution, mask_threshold=0.0)(image)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape == (3, resolution, resolution)
    assert torch.equal(ours, ref)


def test_a_crop_view_and_a_grayscale_array_convert_as_to_tensor() -> None:
    """Non-contiguous crops (the engine's ``image[y0:y1, x0:x1, :]``) and HxW arrays."""
    from torchvision.transforms import ToTensor

    image = _image(300, 400, seed=1)
    crop = image[17:250, 33:390, :]
    assert torch.equal(to_tensor(crop), ToTensor()(crop))
    assert torch.equal(to_tensor(image[..., 0]), ToTensor()(image[..., 0]))
    tf = (SAM2Transforms(1024, 0.0), ImageTransforms(1024, 0.0))
    assert torch.equal(tf[1](crop), tf[0](crop))


@pytest.mark.parametrize("normalize", [True, False])
def test_coords_and_boxes_transform_as_sam2(normalize: bool) -> None:
    g = torch.Generator().manual_seed(0)
    coords = torch.rand(64, 1, 2, generator=g) * (640 if normalize else 1)
    boxes = torch.rand(9, 4, generator=g) * (640 if normalize else 1)
    hw = (481, 641) if normalize else None
    ref, ours = SAM2Transforms(1024, 0.0), ImageTransforms(1024, 0.0)
    assert torch.equal(
        ours.transform_coords(coords, normalize=normalize, orig_hw=hw),
        ref.transform_coords(coords, normalize=normalize, orig_hw=hw),
    )
    assert torch.equal(
        ours.transform_boxes(boxes, normalize=normalize, orig_hw=hw),
        ref.transform_boxes(boxes, normalize=normalize, orig_hw=hw),
    )


@pytest.mark.parametrize(("hole", "sprinkle"), [(0.0, 0.0), (40.0, 0.0), (0.0, 25.0), (60.0, 60.0)])
def test_postprocess_masks_equals_sam2(hole: float, sprinkle: float) -> None:
    """Upsampling, with hole filling / island removal on the low-res logits (sam_bench's CPU
    connected components, installed as the engine installs them)."""
    connected_components.install()
    g = torch.Generator().manual_seed(int(hole + sprinkle))
    # blobs with holes and islands: smooth noise, thresholded at 0
    logits = (
        torch.nn.functional.interpolate(
            torch.randn(6, 1, 32, 32, generator=g), (256, 256), mode="bilinear"
        )
        * 8
    )
    ref_tf = SAM2Transforms(1024, 0.0, max_hole_area=hole, max_sprinkle_area=sprinkle)
    ours_tf = ImageTransforms(1024, 0.0, max_hole_area=hole, max_sprinkle_area=sprinkle)
    ref = ref_tf.postprocess_masks(logits, (480, 641))
    ours = ours_tf.postprocess_masks(logits, (480, 641))
    assert ours.shape == (6, 1, 480, 641) and torch.equal(ours, ref)
    if hole or sprinkle:  # the clean-up changed the masks (the comparison covered it)
        plain = ImageTransforms(1024, 0.0).postprocess_masks(logits, (480, 641))
        assert not torch.equal(ours, plain)


def _features_equal(ours: ImageFeatures, ref: Any) -> None:
    assert ours._is_image_set and ref._is_image_set
    assert ours._orig_hw == ref._orig_hw and ours._is_batch == ref._is_batch
    a, b = ours._features, ref._features
    assert a is not None and b is not None
    assert torch.equal(a["image_embed"], b["image_embed"])
    assert a["image_embed"].stride() == b["image_embed"].stride()
    assert len(a["high_res_feats"]) == len(b["high_res_feats"]) == 2
    for x, y in zip(a["high_res_feats"], b["high_res_feats"], strict=True):
        assert x.shape == y.shape and x.stride() == y.stride() and torch.equal(x, y)


def test_set_image_equals_the_official_predictor(tiny_model: Any) -> None:
    """sam2.1 Hiera-tiny, random weights: the same features, shapes and strides."""
    ours, ref = ImageFeatures(tiny_model), SAM2ImagePredictor(tiny_model)
    image = _image(300, 451, seed=2, gray=True)
    with torch.inference_mode():
        ours.set_image(image)
        ref.set_image(image)
    _features_equal(ours, ref)
    assert ours.device == ref.device
    ours.reset_predictor()
    assert not ours._is_image_set and ours._features is None and ours._orig_hw is None


def test_a_models_own_feature_sizes_are_used(tiny_model: Any) -> None:
    """A family shell declares ``bb_feat_sizes`` (the fitted official predictor uses them):
    here a copy of the tiny model at 512 px input, whose levels are 128, 64 and 32."""
    model = copy.deepcopy(tiny_model)
    model.image_size = 512
    model.bb_feat_sizes = [(128, 128), (64, 64), (32, 32)]
    ours, ref = ImageFeatures(model), fit_image_predictor(SAM2ImagePredictor(model))
    assert ours._bb_feat_sizes == ref._bb_feat_sizes == [(128, 128), (64, 64), (32, 32)]
    image = _image(200, 333, seed=4)
    with torch.inference_mode():
        ours.set_image(image)
        ref.set_image(image)
    _features_equal(ours, ref)
    assert ours._features is not None and ours._features["image_embed"].shape[-2:] == (32, 32)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(
    "case",
    ["batched points", "one prompt set", "boxes", "boxes and points", "masks", "one mask", "none"],
)
def test_prompts_are_prepared_as_the_official_predictor(
    tiny_model: Any, case: str, normalize: bool
) -> None:
    """``_prep_prompts`` (what the prompted task decodes from) against sam2's own, tensor for
    tensor (values, dtype, shape), for the prompt shapes ``predict`` accepts."""
    rng = np.random.default_rng(5)
    scale = np.array([451.0, 300.0]) if normalize else np.ones(2)
    points = labels = box = masks = None
    if case in ("batched points", "boxes and points"):
        points, labels = rng.random((3, 2, 2)) * scale, rng.integers(0, 2, (3, 2))
    if case == "one prompt set":
        points, labels = (rng.random((4, 2)) * scale).tolist(), [1, 0, 1, 1]
    if case in ("boxes", "boxes and points"):
        box = np.sort(rng.random((3, 2, 2)) * scale, axis=1).reshape(3, 4)
    if case == "masks":
        masks = rng.normal(size=(3, 1, 256, 256)).astype(np.float32)
    if case == "one mask":
        masks = torch.from_numpy(rng.normal(size=(1, 256, 256)))  # float64: converted
    ours, ref = ImageFeatures(tiny_model), SAM2ImagePredictor(tiny_model)
    ours._orig_hw = ref._orig_hw = [(300, 451)]  # the state an image leaves (prompts only)
    got = ours._prep_prompts(points, labels, box, masks, normalize)
    want = ref._prep_prompts(points, labels, box, masks, normalize)
    assert [g is None for g in got] == [w is None for w in want]
    assert any(g is not None for g in got) is (case != "none")
    for g, w in zip(got, want, strict=True):
        if w is not None:
            assert g.dtype == w.dtype and g.device == w.device and torch.equal(g, w)


def test_points_without_labels_are_refused(tiny_model: Any) -> None:
    ours = ImageFeatures(tiny_model)
    ours._orig_hw = [(10, 10)]
    with pytest.raises(ValueError, match="point_labels"):
        ours._prep_prompts([[1.0, 2.0]], None, None, None, True)
