"""The prompted task's settings (no model): ``prompt.*`` validation naming the key, the task's
own checks, which jobs share the encoder pass, and what identifies a configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose
from omegaconf import OmegaConf

from sam_bench.config import DatasetConfig, register_configs, root_schema, to_typed
from sam_bench.data.registry import build_dataset
from sam_bench.errors import ConfigError
from sam_bench.identity import config_id
from sam_bench.sweep_groups import group_key
from sam_bench.tasks import get_task
from sam_bench.tasks.prompted import PromptedTask
from sam_bench.tasks.prompted.identity import protocol
from sam_bench.tasks.prompted.settings import PromptConfig

register_configs()
pytestmark = pytest.mark.usefixtures("hydra_conf")

BASE = ["task=prompted", "model.weights=random"]


def composed(*overrides: str):
    return compose("config", overrides=[*BASE, *overrides])


def test_task_prompted_composes_with_click_as_the_default_mode() -> None:
    cfg = to_typed(composed())
    assert cfg.task.name == "prompted" and cfg.prompt.mode is None
    assert get_task("prompted") is PromptedTask
    assert protocol(cfg)["mode"] == "click" and protocol(cfg)["multimask_output"] is True
    clicks = protocol(to_typed(composed("prompt.mode=clicks", "prompt.feed_logits=false")))
    assert clicks["max_clicks"] == 20 and clicks["feed_logits"] is False


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("prompt.mode=tap", "prompt.mode"),
        ("prompt.max_clicks=0", "prompt.max_clicks"),
        ("prompt.box_jitter=-0.1", "prompt.box_jitter"),
        ("prompt.box_match_iou=1.5", "prompt.box_match_iou"),
        ("prompt.batch_size=0", "prompt.batch_size"),
        ("prompt.boxes=''", "prompt.boxes"),
    ],
)
def test_bad_prompt_settings_name_their_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_typed(composed(override))
    assert err.value.key == key


def _check(tmp_path: Path, **prompt: object) -> None:
    dataset = build_dataset(DatasetConfig(limit=1), Path("."))
    PromptedTask.check(root_schema()(prompt=PromptConfig(**prompt)), dataset)  # type: ignore[arg-type]


def test_task_checks_modes_and_detector_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task=prompted takes click, box, clicks"):
        _check(tmp_path, mode="mask")  # the video task's mode
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    _check(tmp_path, mode="box", boxes=str(dets))  # synthetic image 1 is there
    with pytest.raises(ConfigError, match=r"use prompt\.mode=box") as err:
        _check(tmp_path, mode="click", boxes=str(dets))
    assert err.value.key == "prompt.boxes"
    with pytest.raises(ConfigError) as err:
        _check(tmp_path, mode="box", boxes=str(dets), box_jitter=0.1)
    assert err.value.key == "prompt.box_jitter"
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"image_id": 4242, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    with pytest.raises(ConfigError, match="every instance would be missed"):
        _check(tmp_path, mode="box", boxes=str(other))
    with pytest.raises(ConfigError, match="file not found"):
        _check(tmp_path, mode="box", boxes=str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    "override",
    ["prompt.mode=clicks", "prompt.max_clicks=3", "prompt.box_jitter=0.1", "prompt.batch_size=4",
     "prompt.feed_logits=false", "amg.points_per_side=8", "engine=reference"],
)  # fmt: skip
def test_jobs_differing_in_prompt_settings_share_the_encoder_pass(override: str) -> None:
    assert group_key(composed()) is not None
    assert group_key(composed(override)) == group_key(composed())


@pytest.mark.parametrize(
    "override", ["model=sam2.1_hiera_small", "dtype=bf16", "preprocess=clahe", "seed=1"]
)
def test_settings_that_change_the_encoding_split_groups(override: str) -> None:
    assert group_key(composed(override)) != group_key(composed())


def _id(*overrides: str) -> str:
    container = OmegaConf.to_container(composed(*overrides), resolve=True)
    identity = PromptedTask.identity(container, data="d", weights="w")  # type: ignore[arg-type]
    return config_id(identity)


def test_amg_settings_never_enter_the_config_id() -> None:
    assert _id("amg.points_per_side=8", "amg=sa1b", "engine=reference") == _id()
    assert _id("prompt.mode=box") != _id()
    assert _id("prompt.mode=clicks", "prompt.max_clicks=5") != _id("prompt.mode=clicks")


def test_only_the_modes_own_settings_enter_the_config_id() -> None:
    assert _id("prompt.mode=click") == _id()  # null stands for click
    # settings of another mode change nothing a job measures
    assert _id("prompt.max_clicks=5", "prompt.feed_logits=false", "prompt.box_jitter=0.2") == _id()
    assert _id("prompt.mode=box", "prompt.max_clicks=5") == _id("prompt.mode=box")
    assert _id("prompt.mode=clicks", "prompt.box_jitter=0.2") == _id("prompt.mode=clicks")
    # ... while the mode's own ones do
    assert _id("prompt.mode=box", "prompt.box_jitter=0.2") != _id("prompt.mode=box")
    for override in ("prompt.first_multimask=false", "prompt.feed_logits=false"):
        assert _id("prompt.mode=clicks", override) != _id("prompt.mode=clicks")
    assert _id("prompt.batch_size=4") != _id()  # bits of the logits can differ


def test_detector_boxes_enter_the_config_id_by_content(tmp_path: Path) -> None:
    dets = [{"image_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}]
    a, b, c = tmp_path / "a.json", tmp_path / "sub" / "b.json", tmp_path / "c.json"
    b.parent.mkdir()
    a.write_text(json.dumps(dets))
    b.write_text(json.dumps(dets))
    c.write_text(json.dumps([{**dets[0], "score": 0.8}]))
    box = "prompt.mode=box"
    assert _id(box, f"prompt.boxes={a}") == _id(box, f"prompt.boxes={b}")  # same bytes
    assert _id(box, f"prompt.boxes={a}") != _id(box, f"prompt.boxes={c}")
    assert _id(box, f"prompt.boxes={a}") != _id(box)  # detector vs ground-truth boxes
    assert _id(box, f"prompt.boxes={a}", "prompt.box_match_iou=0.7") != _id(
        box, f"prompt.boxes={a}"
    )
    # the identity a record carries names no path
    container = OmegaConf.to_container(composed(box, f"prompt.boxes={a}"), resolve=True)
    doc = PromptedTask.identity(container, data="d", weights="w")  # type: ignore[arg-type]
    assert str(tmp_path) not in json.dumps(doc)
