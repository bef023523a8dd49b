"""Which jobs may share encoder/decoder work."""

from __future__ import annotations

import copy

import pytest
from hydra import compose
from omegaconf import open_dict

from sam_bench.config import register_configs
from sam_bench.sweep_groups import group_key, plan

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


#: A value different from the default for every AMGConfig field (valid together with defaults).
CHANGED = {
    "name": "other", "points_per_side": 16, "points_per_batch": 32, "pred_iou_thresh": 0.1,
    "stability_score_thresh": 0.5, "stability_score_offset": 0.5, "mask_threshold": 1.0,
    "box_nms_thresh": 0.9, "crop_n_layers": 1, "crop_nms_thresh": 0.1,
    "crop_overlap_ratio": 0.5, "crop_n_points_downscale_factor": 2, "min_mask_region_area": 100,
    "output_mode": "coco_rle", "use_m2m": True, "multimask_output": False,
    "postfilter": {"max_area_fraction": 0.9}, "point_grids": [[[0.5, 0.5]]],
}  # fmt: skip


def _overrides(name: str) -> list[str]:
    value = CHANGED[name]
    if name == "postfilter":
        return [f"amg.postfilter.max_area_fraction={value['max_area_fraction']}"]
    if name == "point_grids":  # exclusive with points_per_side
        return ["amg.points_per_side=null", "amg.point_grids=[[[0.5,0.5]]]"]
    return [f"amg.{name}={str(value).lower() if isinstance(value, bool) else value}"]


def test_every_amg_field_is_classified_and_grouped_by_its_role() -> None:
    """A new AMGConfig field fails here until it has a role (candidate / postprocess / label)
    and a changed value in CHANGED; each role then decides the grouping."""
    import dataclasses

    from sam_bench.tasks.amg.settings import AMG_ROLES, AMGConfig, amg_fields

    names = [f.name for f in dataclasses.fields(AMGConfig)]
    roles = {f.name: f.metadata.get("role") for f in dataclasses.fields(AMGConfig)}
    unclassified = [n for n, r in roles.items() if r not in AMG_ROLES]
    assert not unclassified, f"AMGConfig fields without a role: {unclassified}"
    assert sorted(CHANGED) == sorted(names), "give every AMG field a changed value in CHANGED"
    assert sorted(n for r in AMG_ROLES for n in amg_fields(r)) == sorted(names)
    for name in names:
        if roles[name] == "candidate":
            assert key(*_overrides(name)) != key(), name
        else:
            assert key(*_overrides(name)) == key(), name


def test_the_fast_engine_shares_exactly_the_candidate_fields() -> None:
    """The engine's candidate key changes with every candidate field and no other one."""
    import dataclasses

    from sam_bench.engines.fast import candidate_key
    from sam_bench.tasks.amg.settings import AMGConfig, amg_fields

    base = AMGConfig()
    for name in (f.name for f in dataclasses.fields(AMGConfig)):
        value = CHANGED[name]
        if name == "postfilter":
            continue
        extra = {"points_per_side": None} if name == "point_grids" else {}
        changed = dataclasses.replace(base, **{name: value, **extra})
        if name == "point_grids":  # compare with the same grid given as points_per_side
            assert candidate_key(changed) != candidate_key(base)
            continue
        same = candidate_key(changed) == candidate_key(base)
        assert same == (name not in amg_fields("candidate")), name


def share(tmp_path, *jobs: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    """:func:`share_encoder` on the composed jobs; returns the jobs given the sweep's cache
    (and checks they name the sweep's folder, the others keep ``cache.dir=null``)."""
    from sam_bench.layout import SWEEP_ENCODER_CACHE
    from sam_bench.sweep_groups import share_encoder

    cfgs = [compose("config", overrides=o, return_hydra_config=True) for o in jobs]
    again = copy.deepcopy(cfgs)
    shared = share_encoder(cfgs, tmp_path)
    for i, cfg in enumerate(cfgs):
        assert cfg.cache.dir == (str(tmp_path / SWEEP_ENCODER_CACHE) if i in shared else None)
    # the launcher passes the plan it made: the same outcome
    assert share_encoder(again, tmp_path, plan(again)) == shared
    assert [c.cache.dir for c in again] == [c.cache.dir for c in cfgs]
    return shared


def test_job_dir_is_the_absolute_sweep_subdir(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sam_bench.sweep_groups import job_dir, job_spec

    monkeypatch.chdir(tmp_path)
    cfg = compose("config", overrides=["hydra.sweep.dir=runs/x"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.job.num = 3
    assert job_dir(cfg) == tmp_path / "runs" / "x" / "3"
    assert job_spec(cfg).job_dir == job_dir(cfg)


def test_groups_that_encode_the_same_images_share_the_sweeps_encoder_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pps = [f"amg.points_per_side={n}" for n in (4, 8)]
    assert share(tmp_path, [pps[0]], [pps[1]]) == [0, 1]
    # one group (post-processing settings only): one encoder pass already, no cache
    assert share(tmp_path, ["amg.pred_iou_thresh=0.1"], ["amg.pred_iou_thresh=0.5"]) == []
    # AMG and prompted on the same model and data: one encoder pass for both tasks
    assert share(tmp_path, [], ["task=prompted"]) == [0, 1]
    # with a third group of another model: only the two that encode alike
    assert share(tmp_path, [pps[0]], [pps[1]], ["model=sam2.1_hiera_small"]) == [0, 1]


@pytest.mark.parametrize(
    "setting",
    [
        "model=sam2.1_hiera_small", "preprocess=clahe", "dtype=bf16", "dataset.limit=3",
        "model.weights=random",
    ],
)  # fmt: skip
def test_groups_that_encode_differently_share_nothing(tmp_path, setting: str) -> None:  # type: ignore[no-untyped-def]
    assert share(tmp_path, ["amg.points_per_side=4"], ["amg.points_per_side=8", setting]) == []


@pytest.mark.parametrize(
    "setting", ["engine=official", "cache.in_sweep=false", "dry_run=true", "task=video"]
)
def test_no_in_sweep_cache_where_it_cannot_or_must_not_be_used(tmp_path, setting: str) -> None:  # type: ignore[no-untyped-def]
    assert (
        share(tmp_path, ["amg.points_per_side=4", setting], ["amg.points_per_side=8", setting])
        == []
    )


def test_a_cache_the_user_set_is_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sam_bench.sweep_groups import share_encoder

    cfgs = [
        compose("config", overrides=[f"amg.points_per_side={n}", "cache.dir=/tmp/mine"],
                return_hydra_config=True)
        for n in (4, 8)
    ]  # fmt: skip
    assert share_encoder(cfgs, tmp_path) == []
    assert [c.cache.dir for c in cfgs] == ["/tmp/mine", "/tmp/mine"]


@pytest.mark.parametrize(
    "override",
    ["semantic.crop=mask", "semantic.padding=0.5", "semantic.min_confidence=0.3",
     "semantic.batch_size=8", "semantic.overlap=area"],
)  # fmt: skip
def test_semantic_jobs_of_one_clip_share_a_group(override: str) -> None:
    assert key("task=semantic") is not None
    assert key("task=semantic", override) == key("task=semantic")


@pytest.mark.parametrize(
    "override",
    ["semantic.clip_model=ViT-S-32", "semantic.backend=transformers",
     "semantic.clip_weights=random", "semantic.clip_pretrained=laion2b_s34b_b79k"],
)  # fmt: skip
def test_semantic_jobs_of_another_clip_form_another_group(override: str) -> None:
    """One CLIP model per group (issue 21): a group never holds several on the GPU."""
    assert key("task=semantic", override) != key("task=semantic")
