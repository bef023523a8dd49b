"""Which jobs may share encoder/decoder work."""

from __future__ import annotations

import pytest
from hydra import compose

from sam_bench.config import register_configs
from sam_bench.sweep_groups import group_key

register_configs()
pytestmark = pytest.mark.usefixtures("hydra_conf")


def key(*overrides: str) -> str | None:
    return group_key(compose("config", overrides=list(overrides)))


@pytest.mark.parametrize(
    "override",
    [
        "amg.pred_iou_thresh=0.1", "amg.stability_score_thresh=0.5",
        "amg.stability_score_offset=0.5", "amg.mask_threshold=1.0", "amg.box_nms_thresh=0.9",
        "amg.crop_nms_thresh=0.1", "amg.min_mask_region_area=100", "amg.output_mode=coco_rle",
        "save_predictions=true", "task.save_masks=0", "cache.dir=/tmp/enc", "cache.max_gb=1",
    ],
)  # fmt: skip
def test_post_processing_settings_share_a_group(override: str) -> None:
    assert key() is not None
    assert key(override) == key()


@pytest.mark.parametrize(
    "override",
    [
        "amg.points_per_side=16", "amg.points_per_batch=32", "amg.crop_n_layers=1",
        "amg.crop_overlap_ratio=0.5", "amg.crop_n_points_downscale_factor=2",
        "amg.use_m2m=true", "amg.multimask_output=false", "model=sam2.1_hiera_small",
        "model.weights=random", "dtype=bf16", "preprocess=clahe", "dataset.limit=3", "seed=1",
    ],
)  # fmt: skip
def test_candidate_settings_split_groups(override: str) -> None:
    assert key(override) != key()


def test_reference_engine_and_dry_run_never_group() -> None:
    assert key("engine=reference") is None
    assert key("dry_run=true") is None
