"""Prompted-segmentation metrics (sam_bench.tasks.prompted.metrics): NoC / NoF on hand-computed IoU
sequences, mask IoU against pycocotools, COCO size bins, the evaluator's aggregates on
hand-made outcomes, and the catalogue entries the report plots from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam_bench.data.base import ImageRef, Sample
from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.tasks.prompted.metrics import (
    CLICKS_SERIES,
    ImagePrompted,
    InstanceOutcome,
    PromptedEvaluator,
    fails,
    mask_iou,
    noc,
    size_of,
)

SAMPLE = Sample(ref=ImageRef("img", Path("img.png")), raw=None, gt=None)


def test_noc_counts_clicks_to_the_first_iou_at_or_above_the_threshold() -> None:
    ious = [0.50, 0.86, 0.84, 0.90, 0.95]
    assert noc(ious, 0.85, 5) == 2  # first >= 0.85 at click 2 (a later drop does not matter)
    assert noc(ious, 0.90, 5) == 4  # exactly 0.90 counts
    assert noc(ious, 0.96, 5) == 5  # never: max_clicks
    assert noc([0.95], 0.90, 20) == 1
    assert noc(ious, 0.90, 3) == 3  # only the first max_clicks clicks count
    assert fails(ious, 0.96, 5) and not fails(ious, 0.90, 5)
    assert fails(ious, 0.90, 3)  # reached at click 4 > max_clicks
    # NoF counts instances that never reach it; reaching it at the last click is no failure
    assert not fails([0.1, 0.2, 0.91], 0.90, 3) and noc([0.1, 0.2, 0.91], 0.90, 3) == 3


def test_mask_iou_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = rng.random((30, 40)) < 0.3
        b = rng.random((30, 40)) < 0.5
        ra, rb = (mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (a, b))
        assert mask_iou(a, b) == pytest.approx(float(mask_utils.iou([ra], [rb], [0])[0, 0]))
    empty = np.zeros((3, 3), dtype=bool)
    assert mask_iou(empty, empty) == 0.0


def test_sizes_follow_coco() -> None:
    assert [size_of(a) for a in (1, 1023, 1024, 9215, 9216, 1e6)] == [
        "small", "small", "medium", "medium", "large", "large",
    ]  # fmt: skip


def outcome(index: int, ious: list[float], area: float = 100.0, **kw: object) -> InstanceOutcome:
    return InstanceOutcome("img", index, area, ious=ious, **kw)  # type: ignore[arg-type]


def test_clicks_evaluator_on_hand_computed_sequences() -> None:
    ev = PromptedEvaluator("clicks", max_clicks=3)
    a = outcome(0, [0.50, 0.86, 0.92])  # NoC85 2, NoC90 3
    b = outcome(1, [0.91, 0.91, 0.91], area=5000.0)  # 1, 1
    c = outcome(2, [0.10, 0.20, 0.30], area=20000.0)  # never: 3, 3
    skipped = InstanceOutcome("img", 3, 0.0, status="skipped", reason="crowd")
    row = ev.process(SAMPLE, ImagePrompted("clicks", [a, b, c, skipped], n_prompts=9,
                                           decoder_s=0.9))  # fmt: skip
    assert row["n_prompted"] == 3 and row["n_skipped"] == 1
    assert row["miou_prompted"] == pytest.approx((0.92 + 0.91 + 0.30) / 3)
    assert row["decoder_ms_per_prompt"] == pytest.approx(100.0)
    m = ev.evaluate()
    assert m["miou_clicks_1"] == pytest.approx((0.50 + 0.91 + 0.10) / 3)
    assert m["miou_clicks_2"] == pytest.approx((0.86 + 0.91 + 0.20) / 3)
    assert m["miou_clicks_3"] == pytest.approx(m["miou_prompted"])
    assert m["noc85"] == pytest.approx((2 + 1 + 3) / 3)
    assert m["noc90"] == pytest.approx((3 + 1 + 3) / 3)
    assert m["nof85"] == 1 and m["nof90"] == 1
    assert m["miou_prompted_small"] == pytest.approx(0.92)
    assert m["miou_prompted_medium"] == pytest.approx(0.91)
    assert m["miou_prompted_large"] == pytest.approx(0.30)
    assert m["n_prompted"] == 3 and m["n_skipped"] == 1 and m["n_prompts"] == 9
    assert "miou_click" not in m and "miou_box" not in m


def test_click_and_box_evaluators() -> None:
    ev = PromptedEvaluator("click", max_clicks=20)
    ev.process(SAMPLE, ImagePrompted("click", [outcome(0, [0.4], oracle_iou=0.7),
                                               outcome(1, [0.6], oracle_iou=0.6)]))  # fmt: skip
    m = ev.evaluate()
    assert m["miou_click"] == pytest.approx(0.5) and m["miou_click_oracle"] == pytest.approx(0.65)
    assert "noc90" not in m and "miou_clicks_1" not in m
    assert math.isnan(m["miou_prompted_large"])  # no large instance
    assert math.isnan(m["decoder_ms_per_prompt"])  # nothing decoded in this hand-made case

    det = PromptedEvaluator("box", max_clicks=20, detector=True)
    missed = outcome(1, [0.0], status="missed", reason="no detection matched it")
    row = det.process(SAMPLE, ImagePrompted("box", [outcome(0, [0.8]), missed],
                                            n_unmatched_boxes=2))  # fmt: skip
    assert row["n_missed"] == 1 and row["n_unmatched_boxes"] == 2
    m = det.evaluate()
    assert m["miou_box"] == pytest.approx(0.4)  # the missed instance counts 0
    assert m["box_recall"] == pytest.approx(0.5) and m["n_unmatched_boxes"] == 2


def test_catalogue_entries_draw_the_report_series() -> None:
    for k in (1, 7, 20):
        m = CATALOGUE.require(f"miou_clicks_{k}")
        assert m.group == CLICKS_SERIES and m.group_x == k and m.direction == "higher"
        assert m.tasks == ("prompted",)
    assert CATALOGUE.get("miou_clicks_0") is None
    for name in ("noc85", "noc90", "nof85", "nof90"):
        assert CATALOGUE.require(name).direction == "lower"
    assert {CATALOGUE.require(f"noc{t}").group for t in (85, 90)} == {"NoC: clicks to reach an IoU"}
    sizes = [CATALOGUE.require(f"miou_prompted_{s}").group_x for s in ("small", "medium", "large")]
    assert sizes == ["small", "medium", "large"]
    assert CATALOGUE.require("decoder_ms_per_prompt").kind == "cost"
    assert CATALOGUE.require("miou_click_oracle").direction == "higher"


def test_outcomes_survive_the_per_item_log_round_trip() -> None:
    """``resume=true`` scores an image's logged outcomes again: same metrics."""
    pred = ImagePrompted(
        "clicks",
        [outcome(0, [0.5, 0.95], clicks=[[3, 4, 1], [5, 6, 0]], predicted_ious=[0.7, 0.8],
                 rle={"size": [2, 2], "counts": "04"}, stopped=None),
         InstanceOutcome("img", 1, 0.0, status="skipped", reason="crowd")],
        n_prompts=2, decoder_s=0.25, note=None,
    )  # fmt: skip
    back = ImagePrompted.from_json(json.loads(json.dumps(pred.to_json())))
    assert back == pred
    a, b = PromptedEvaluator("clicks", 2), PromptedEvaluator("clicks", 2)
    assert a.process(SAMPLE, pred) == b.process(SAMPLE, back)
    assert a.evaluate() == b.evaluate()
