"""The fast engine gives the official generator's masks, configuration by configuration.

Random weights; thresholds near 0 and ``box_nms_thresh=1.0`` keep many candidates so that
every post-processing step has masks to act on. Masks must be RLE-identical and scores equal
within 1e-4; the reference is ``SAM2AutomaticMaskGenerator`` itself (ReferenceEngine).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sam_bench.config import DatasetConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.fast import FastAMG, candidate_key
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.metrics.cost import StageTimes
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

KEEP = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}

#: Configurations sharing one candidate key: computed together by one FastAMG.
SHARED = [
    dict(KEEP),
    {**KEEP, "pred_iou_thresh": 0.5},
    {**KEEP, "box_nms_thresh": 0.7},
    {**KEEP, "stability_score_thresh": 0.2, "stability_score_offset": 0.5, "mask_threshold": -0.5},
    {**KEEP, "min_mask_region_area": 50},
    {**KEEP, "pred_iou_thresh": 0.3, "box_nms_thresh": 0.5, "min_mask_region_area": 20},
    # the same candidate masks as configurations 0 and 3 (computed once), other filters
    {**KEEP, "box_nms_thresh": 0.8},
    {**KEEP, "stability_score_thresh": 0.6, "stability_score_offset": 0.5, "mask_threshold": -0.5},
]
#: Configurations that change the candidates (each its own FastAMG).
ALONE = [
    {**KEEP, "multimask_output": False},
    {**KEEP, "use_m2m": True},
    {**KEEP, "use_m2m": True, "min_mask_region_area": 30, "pred_iou_thresh": 0.2},
    {**KEEP, "crop_n_layers": 1, "crop_nms_thresh": 0.7},
    {**KEEP, "points_per_batch": 5},
]


@pytest.fixture(scope="module")
def model(tiny_model: torch.nn.Module) -> torch.nn.Module:
    return tiny_model


@pytest.fixture(scope="module")
def images() -> list:
    ds = build_dataset(DatasetConfig(scenes=["color", "dense_small"], limit=2), Path("."))
    return [to_model_input(ds.load(r).raw, PreprocessConfig())[0] for r in ds.refs()]


def _key(masks) -> list[tuple[bytes, float, float]]:
    return sorted((m.rle["counts"], m.predicted_iou, m.stability_score) for m in masks)


def assert_same(fast, ref, label: str) -> None:
    a, b = _key(fast), _key(ref)
    assert [x[0] for x in a] == [x[0] for x in b], f"{label}: masks differ ({len(a)} vs {len(b)})"
    for (_, ia, sa), (_, ib, sb) in zip(a, b, strict=True):
        assert abs(ia - ib) <= 1e-4 and abs(sa - sb) <= 1e-4, label
    assert len(a) > 0, f"{label}: the case kept no mask, it tests nothing"


def _reference(model, amg: AMGConfig, image, dtype: str = "fp32"):
    return ReferenceEngine(model, amg, torch.device("cpu"), dtype=dtype).generate(
        image, StageTimes()
    )


def test_shared_configurations_equal_reference(model, images) -> None:
    cfgs = [AMGConfig(points_per_side=4, **v) for v in SHARED]
    assert len({candidate_key(c) for c in cfgs}) == 1
    fast = FastAMG(model, cfgs, torch.device("cpu"))
    assert fast.mask_groups == [[0, 2, 6], [1], [3, 7], [4], [5]]
    for image in images:
        times = [StageTimes() for _ in cfgs]
        outs = fast.generate_many(image, times)
        for cfg, out in zip(cfgs, outs, strict=True):
            assert_same(out, _reference(model, cfg, image), str(cfg))
        # shared stages are attributed in full to every configuration
        assert len({t.seconds["encoder"] for t in times}) == 1 and times[0].seconds["encoder"] > 0
        assert len({t.seconds["decoder"] for t in times}) == 1


@pytest.mark.parametrize(
    "variant",
    ALONE,
    ids=lambda v: "-".join(f"{k}={v[k]}" for k in v if k not in KEEP or v[k] != KEEP[k]),
)
def test_candidate_changing_configurations_equal_reference(model, images, variant) -> None:
    cfg = AMGConfig(points_per_side=4, **variant)
    fast = FastAMG(model, [cfg], torch.device("cpu"))
    image = images[0]
    assert_same(
        fast.generate_many(image, [StageTimes()])[0], _reference(model, cfg, image), str(variant)
    )


def test_bf16_equals_reference(model, images) -> None:
    cfgs = [AMGConfig(points_per_side=4, **v) for v in SHARED[:2]]
    fast = FastAMG(model, cfgs, torch.device("cpu"), dtype="bf16")
    outs = fast.generate_many(images[1], [StageTimes(), StageTimes()])
    for cfg, out in zip(cfgs, outs, strict=True):
        assert_same(out, _reference(model, cfg, images[1], dtype="bf16"), f"bf16 {cfg}")


@pytest.mark.slow
def test_two_crop_layers_equal_reference(model, images) -> None:
    cfg = AMGConfig(points_per_side=4, crop_n_layers=2, crop_n_points_downscale_factor=2, **KEEP)
    fast = FastAMG(model, [cfg], torch.device("cpu"))
    image = images[0]
    assert_same(
        fast.generate_many(image, [StageTimes()])[0], _reference(model, cfg, image), "2 crop layers"
    )


def test_configurations_with_different_candidates_cannot_share(model) -> None:
    with pytest.raises(ValueError, match="candidate key"):
        FastAMG(
            model, [AMGConfig(points_per_side=4), AMGConfig(points_per_side=8)], torch.device("cpu")
        )
