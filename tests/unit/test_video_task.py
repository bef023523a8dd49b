"""The video task's pieces that need no model: prompts derived from masks, painting per-object
masks into one label map, DAVIS palette PNGs written and read back, a folder of predictions
scored, the settings the task refuses, and hole filling on the CPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose
from pycocotools import mask as mask_utils

from sam_bench.config import to_typed
from sam_bench.data.base import ImageRef, Sample, VideoTruth
from sam_bench.data.davis import read_annotation
from sam_bench.errors import ConfigError
from sam_bench.tasks.video import VideoTask
from sam_bench.tasks.video.inputs import derive_prompts
from sam_bench.tasks.video.metrics import VideoEvaluator
from sam_bench.tasks.video.outputs import PredictionFolder, davis_palette, write_label_png
from sam_bench.tasks.video.settings import fill_hole_area, prompt_mode
from sam_bench.tasks.video.tracking import paint


def _video(masks: dict[int, dict[int, np.ndarray]], n: int, h: int = 40, w: int = 60):
    names = [f"{t:05d}" for t in range(n)]
    rles = {
        t: {o: mask_utils.encode(np.asfortranarray(m, dtype=np.uint8)) for o, m in objs.items()}
        for t, objs in masks.items()
    }
    return VideoTruth([Path(f"{x}.jpg") for x in names], names, rles, h, w)


def test_prompts_from_the_first_annotated_frame() -> None:
    a = np.zeros((40, 60), dtype=bool)
    a[10:21, 5:16] = True  # an 11 x 11 square: farthest point from the boundary row 15, col 10
    b = np.zeros((40, 60), dtype=bool)
    b[30:35, 40:50] = True
    video = _video({0: {1: a}, 1: {1: a}, 2: {1: a, 2: b}}, 4)
    masks = derive_prompts(video, "mask")
    assert [(p.obj, p.frame) for p in masks] == [(1, 0), (2, 2)]
    assert masks[0].mask is not None and np.array_equal(masks[0].mask, a)
    clicks = derive_prompts(video, "click")
    assert clicks[0].point == (10, 15)  # (x, y)
    assert clicks[1].frame == 2 and clicks[1].point is not None
    boxes = derive_prompts(video, "box")
    assert boxes[0].box == (5.0, 10.0, 16.0, 21.0)  # x1 / y1 one past the last pixel
    assert boxes[1].box == (40.0, 30.0, 50.0, 35.0)


def test_paint_gives_overlaps_to_the_lowest_id() -> None:
    logits = torch.full((3, 1, 4, 4), -5.0)
    logits[0, 0, :2] = 3.0  # object 7: top half
    logits[1, 0, 1:3] = 3.0  # object 2: rows 1-2 (row 1 overlaps object 7)
    logits[2, 0, 3, 3] = 0.0  # object 9: logit exactly at the threshold: not the object
    labels = paint(logits, [7, 2, 9], 0.0)
    assert labels.dtype == np.uint8
    assert labels[:, 0].tolist() == [7, 2, 2, 0]
    assert labels[3, 3] == 0
    assert paint(logits[:1], [300], 0.0)[0, 0] == 300  # ids beyond 8 bits (16-bit maps)


def test_palette_png_round_trip(tmp_path: Path) -> None:
    lab = np.zeros((5, 6), dtype=np.uint8)
    lab[1:3, 1:3] = 1
    lab[4, :] = 12
    write_label_png(tmp_path / "s" / "00000.png", lab)
    ids, style, void = read_annotation(tmp_path / "s" / "00000.png")
    assert style == "davis2017" and not void and np.array_equal(ids, lab)
    pal = davis_palette()
    # the PASCAL VOC / DAVIS map: 1 dark red, 2 dark green, 3 olive, 4 navy; 12 = 0b001100:
    # bits (r, g, b) of the low triple (0, 0, 1) -> b 128, of the next (1, 0, 0) -> r 64
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[12].tolist() == [64, 0, 128]
    with pytest.raises(ValueError, match=r"does not fit"):
        write_label_png(tmp_path / "x.png", np.full((2, 2), 300, dtype=np.int32))


def test_prediction_folder_scored_by_name(tmp_path: Path) -> None:
    a = np.zeros((40, 60), dtype=bool)
    a[10:20, 10:30] = True
    video = _video({t: {1: np.roll(a, t, axis=1)} for t in range(5)}, 5)
    pred = tmp_path / "pred"
    for t in range(5):  # frame 2 shifted by 10 columns: J = 10 * 10 / (10 * 30) = 1/3
        m = np.roll(a, t + (10 if t == 2 else 0), axis=1)
        write_label_png(pred / "seq" / f"{t:05d}.png", m.astype(np.uint8))

    class OneSeq:
        def refs(self):
            return [ImageRef("seq", Path("seq")), ImageRef("gone", Path("gone"))]

    folder = PredictionFolder(pred, OneSeq())  # type: ignore[arg-type]
    assert folder.found == ["seq"] and len(folder.sha256) == 64
    prediction = folder.get(ImageRef("seq", Path("seq")))
    ev = VideoEvaluator()
    row = ev.process(Sample(ImageRef("seq", Path("seq")), None, None, video=video), prediction)
    assert row["j_mean"] == pytest.approx((1 + 1 / 3 + 1) / 3)  # frames 1, 2, 3
    with pytest.raises(Exception, match=r"no predictions for this sequence"):
        folder.get(ImageRef("gone", Path("gone")))
    with pytest.raises(ConfigError, match=r"not a folder"):
        PredictionFolder(tmp_path / "nope", OneSeq())  # type: ignore[arg-type]


def _cfg(*overrides: str):
    return to_typed(compose("config", overrides=["task=video", "dataset=davis",
                                                 "dataset.root=x", *overrides]))  # fmt: skip


def test_settings_the_task_refuses(hydra_conf: None) -> None:
    cfg = _cfg()
    assert prompt_mode(cfg) == "mask" and fill_hole_area(cfg) == 0
    assert fill_hole_area(_cfg("video.apply_postprocessing=true")) == 8
    assert fill_hole_area(_cfg("video.apply_postprocessing=true", "video.fill_hole_area=0")) == 0
    VideoTask.check(_cfg("prompt.mode=box"))
    with pytest.raises(ConfigError, match=r"prompt.mode.*mask, click, box"):
        VideoTask.check(_cfg("prompt.mode=clicks"))
    with pytest.raises(ConfigError, match=r"video.apply_postprocessing"):
        VideoTask.check(_cfg("model.apply_postprocessing=true"))
    with pytest.raises(ConfigError, match=r"prompt.box_jitter"):
        VideoTask.check(_cfg("prompt.box_jitter=0.1"))
    with pytest.raises(ConfigError, match=r"video.vos_optimized.*CUDA only.*runs on cpu"):
        VideoTask.build_model(_cfg("video.vos_optimized=true"), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"video.warmup_frames"):
        _cfg("video.warmup_frames=1")


def _id(*overrides: str) -> str:
    from omegaconf import OmegaConf

    from sam_bench.identity import config_id

    base = ["task=video", "dataset=davis", "dataset.root=x", "model.weights=random"]
    config = OmegaConf.to_container(compose("config", overrides=[*base, *overrides]), resolve=True)
    return config_id(VideoTask.identity(config, data="d", weights="w"))  # type: ignore[arg-type]


def test_only_settings_that_change_results_enter_the_config_id(hydra_conf: None) -> None:
    assert _id("prompt.mode=mask") == _id()  # null stands for mask
    assert _id("video.save_overlay=true") == _id()  # an output for a person to watch
    assert _id("prompt.max_clicks=3", "prompt.feed_logits=false", "prompt.batch_size=2") == _id()
    assert _id("prompt.mode=click") != _id()
    for override in ("video.score_thresh=0.5", "video.non_overlap_masks=false",
                     "video.offload_video_to_cpu=true", "amg=sa1b"):  # fmt: skip
        changed = _id(override) != _id()
        assert changed == (override != "amg=sa1b"), override


def test_fill_holes_runs_on_the_cpu() -> None:
    """sam2's hole filling (fill_hole_area) uses the CPU connected-components step instead of
    silently skipping it without the CUDA extension."""
    from sam2.utils.misc import fill_holes_in_mask_scores

    from sam_bench.models import connected_components

    connected_components.install()
    scores = torch.full((1, 1, 32, 32), 5.0)
    scores[0, 0, 4:6, 4:6] = -3.0  # a 4-pixel hole
    scores[0, 0, 10:20, 10:20] = -3.0  # a 100-pixel hole
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sam2 warns when it skips the step
        out = fill_holes_in_mask_scores(scores, 8)
    assert (out[0, 0, 4:6, 4:6] > 0).all()  # filled (score 0.1)
    assert (out[0, 0, 10:20, 10:20] < 0).all()  # larger than 8: kept
