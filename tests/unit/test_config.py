"""Config composition and validation: every preset composes; bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from sam_bench.config import CONF_DIR, register_configs, to_typed
from sam_bench.errors import ConfigError
from sam_bench.tasks.amg.settings import AMGConfig

register_configs()
pytestmark = pytest.mark.usefixtures("hydra_conf")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_model_preset_names_an_existing_sam2_config() -> None:
    from sam_bench.models.build import sam2_package_dir

    models = _options("model")
    assert len(models) == 10
    for name in models:
        cfg = to_typed(compose("config", overrides=[f"model={name}"]))
        assert cfg.model.name == name
        assert (sam2_package_dir() / cfg.model.sam2_config).is_file()
        assert cfg.model.url.endswith("/" + cfg.model.checkpoint_file)
        if cfg.model.family in ("edgetam", "sam3_tracker"):  # a hub id (transformers families)
            assert cfg.model.family == name and cfg.model.url.startswith("https://huggingface.co/")
        else:
            assert cfg.model.checkpoint_file == f"{name}.pt"


def test_model_size_choices_follow_the_family() -> None:
    from sam_bench.config import ModelConfig

    base = {"name": "m", "sam2_config": "x.yaml", "checkpoint_file": "x", "url": "u"}
    assert ModelConfig(family="edgetam", size="repvit_m1", **base).size == "repvit_m1"
    with pytest.raises(ConfigError, match=r"model\.size"):
        ModelConfig(family="edgetam", size="tiny", **base)
    with pytest.raises(ConfigError, match=r"model\.size"):
        ModelConfig(family="sam2.1", size="vit_l", **base)
    with pytest.raises(ConfigError, match=r"model\.family"):
        ModelConfig(family="sam4", size="tiny", **base)


@pytest.mark.parametrize("group", ["amg", "preprocess", "task", "tracking"])
def test_every_group_option_composes(group: str) -> None:
    for name in _options(group):
        to_typed(compose("config", overrides=[f"{group}={name}"]))


@pytest.mark.parametrize("sweep", _options("sweep"))
def test_every_sweep_preset_composes(sweep: str) -> None:
    cfg = compose("config", overrides=[f"sweep={sweep}"], return_hydra_config=True)
    assert cfg.hydra.mode is not None and str(cfg.hydra.mode).endswith("MULTIRUN")
    assert cfg.hydra.sweeper.params, "a sweep preset declares its parameters"
    assert cfg.sweep_name == sweep
    # the preset's own sweep directory wins over the primary config's default
    raw = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    assert f"multirun/{sweep}/" in raw["dir"], raw


def test_amg_default_matches_generator_signature() -> None:
    """Every SAM2AutomaticMaskGenerator argument is a typed field with the same default."""
    import inspect

    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    params = inspect.signature(SAM2AutomaticMaskGenerator.__init__).parameters
    upstream = {k: p.default for k, p in params.items() if k not in ("self", "model", "kwargs")}
    ours = AMGConfig().generator_kwargs()
    assert set(ours) == set(upstream)
    assert ours == upstream


def test_sa1b_and_notebook_presets() -> None:
    sa1b = to_typed(compose("config", overrides=["amg=sa1b"])).amg
    assert (sa1b.points_per_side, sa1b.crop_n_layers, sa1b.crop_n_points_downscale_factor) == (
        32, 2, 2)  # fmt: skip
    assert sa1b.pred_iou_thresh == 0.88 and sa1b.postfilter.max_area_fraction == 0.95
    nb = to_typed(compose("config", overrides=["amg=notebook"])).amg
    assert nb.points_per_side == 64 and nb.use_m2m and nb.min_mask_region_area == 25


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("amg.points_per_side=0", "amg.points_per_side"),
        ("amg.points_per_batch=0", "amg.points_per_batch"),
        ("amg.crop_n_points_downscale_factor=0", "amg.crop_n_points_downscale_factor"),
        ("amg.crop_n_layers=-1", "amg.crop_n_layers"),
        ("amg.min_mask_region_area=-5", "amg.min_mask_region_area"),
        ("amg.pred_iou_thresh=1.2", "amg.pred_iou_thresh"),
        ("amg.stability_score_thresh=-0.1", "amg.stability_score_thresh"),
        ("amg.box_nms_thresh=2", "amg.box_nms_thresh"),
        ("amg.crop_nms_thresh=-1", "amg.crop_nms_thresh"),
        ("amg.crop_overlap_ratio=1.5", "amg.crop_overlap_ratio"),
        ("amg.stability_score_offset=0", "amg.stability_score_offset"),
        ("amg.output_mode=png", "amg.output_mode"),
        ("model.weights=trained", "model.weights"),
        ("device=tpu", "device"),
        ("dtype=fp16", "dtype"),
        ("dataset.limit=0", "dataset.limit"),
        ("preprocess.percentile_low=99.5", "preprocess.percentile_low"),
    ],
)
def test_out_of_range_values_name_their_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_typed(compose("config", overrides=[override]))
    assert err.value.key == key
    assert f"`{key}`" in str(err.value)


def test_any_mask_threshold_is_allowed() -> None:
    assert (
        to_typed(compose("config", overrides=["amg.mask_threshold=-3.5"])).amg.mask_threshold
        == -3.5
    )


def test_misspelled_key_fails_at_composition_naming_it() -> None:
    with pytest.raises(ConfigCompositionException, match="points_per_sid"):
        compose("config", overrides=["amg.points_per_sid=8"])


@pytest.mark.parametrize(
    ("override", "key", "hint"),
    [
        ("+amg.pointz_per_side=8", "amg.pointz_per_side", "amg.points_per_side"),
        (
            "+amg.postfilter.max_area=0.5",
            "amg.postfilter.max_area",
            "amg.postfilter.max_area_fraction",
        ),
        ("+prompt.max_click=3", "prompt.max_click", "prompt.max_clicks"),
        ("+seeds=3", "seeds", "seed"),
    ],
)
def test_a_key_added_with_plus_must_exist(override: str, key: str, hint: str) -> None:
    """``+key=value`` adds a key Hydra's schema check never sees: refused when the schema of
    that section does not declare it, with the closest declared key."""
    with pytest.raises(ConfigError) as err:
        to_typed(compose("config", overrides=[override]))
    assert err.value.key == key
    assert "unknown key" in str(err.value) and f"did you mean '{hint}'" in str(err.value)


def test_wrong_type_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match="points_per_side"):
        compose("config", overrides=["amg.points_per_side=many"])


def test_generator_kwargs_drop_sam_bench_only_keys() -> None:
    kwargs = AMGConfig(name="x").generator_kwargs()
    assert "name" not in kwargs and "postfilter" not in kwargs


def test_conf_dir_is_inside_the_package() -> None:
    import sam_bench

    assert CONF_DIR.parent == Path(sam_bench.__file__).resolve().parent
