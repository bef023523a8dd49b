"""Semantic metrics against hand-computed cases: the confusion matrix (void ignored, absent
classes, "unlabelled" always wrong), per-class IoU, semantic_miou, pixel_acc, and the
evaluator's dataset-wide accumulation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sam_bench.data.base import ImageRef, Sample, SemanticMap
from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.tasks.semantic.metrics import (
    UNLABELLED,
    SemanticEvaluator,
    SemanticPrediction,
    class_metric_names,
    confusion_matrix,
    scores,
)

U = UNLABELLED
VOID = 9


def test_confusion_matrix_hand_computed_with_void_and_unlabelled() -> None:
    # classes 0, 1, 2 (2 absent from both), void 9
    gt = np.array([[0, 0, 1, 1],
                   [0, 9, 1, 9]])  # fmt: skip
    pred = np.array([[0, 1, 1, U],
                     [U, 0, 1, 1]])  # fmt: skip
    cm = confusion_matrix(gt, pred, [0, 1, 2], VOID)
    # non-void pixels: (0,0) 0->0, (0,1) 0->1, (0,2) 1->1, (0,3) 1->U, (1,0) 0->U, (1,2) 1->1
    expected = np.array([
        [1, 1, 0, 1],   # gt 0: one right, one as 1, one unlabelled
        [0, 2, 0, 1],   # gt 1: two right, one unlabelled
        [0, 0, 0, 0],   # gt 2: absent
    ])  # fmt: skip
    np.testing.assert_array_equal(cm, expected)
    s = scores(cm)
    # IoU 0 = 1 / (3 + 1 - 1) = 1/3 ; IoU 1 = 2 / (3 + 3 - 2) = 1/2 ; class 2: no pixel -> NaN
    assert s["iou"][0] == pytest.approx(1 / 3)
    assert s["iou"][1] == pytest.approx(1 / 2)
    assert math.isnan(s["iou"][2])
    assert s["semantic_miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)  # absent class left out
    assert s["pixel_acc"] == pytest.approx(3 / 6)  # void pixels not counted
    assert s["unlabelled_frac"] == pytest.approx(2 / 6)


def test_a_class_only_predicted_counts_with_iou_zero() -> None:
    gt = np.array([[0, 0, 0, 0]])
    pred = np.array([[0, 0, 2, 2]])
    s = scores(confusion_matrix(gt, pred, [0, 1, 2], None))
    assert s["iou"][0] == pytest.approx(0.5)  # 2 / (4 + 2 - 2)
    assert math.isnan(s["iou"][1])  # in neither
    assert s["iou"][2] == 0.0  # predicted only: present, IoU 0
    assert s["semantic_miou"] == pytest.approx(0.25)


def test_void_pixels_are_ignored_whatever_is_predicted_there() -> None:
    gt = np.array([[1, VOID, VOID]])
    a = confusion_matrix(gt, np.array([[1, 1, 1]]), [0, 1], VOID)
    b = confusion_matrix(gt, np.array([[1, U, 0]]), [0, 1], VOID)
    np.testing.assert_array_equal(a, b)
    assert scores(a)["pixel_acc"] == 1.0 and scores(a)["unlabelled_frac"] == 0.0


def test_all_void_image_has_no_score() -> None:
    s = scores(confusion_matrix(np.full((2, 2), VOID), np.zeros((2, 2)), [0, 1], VOID))
    assert math.isnan(s["pixel_acc"]) and math.isnan(s["semantic_miou"])


def test_unknown_values_are_errors() -> None:
    with pytest.raises(ValueError, match="ground truth has values \\[5\\]"):
        confusion_matrix(np.array([[5]]), np.array([[0]]), [0, 1], None)
    with pytest.raises(ValueError, match="prediction has values \\[7\\]"):
        confusion_matrix(np.array([[0]]), np.array([[7]]), [0, 1], None)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), [0], None)


def _sample(i: int, labels: np.ndarray) -> Sample:
    ref = ImageRef(f"im{i}", Path(f"im{i}.png"))
    return Sample(ref, None, None, SemanticMap(labels, VOID, {0: "a", 1: "b", 9: "void"}))


def test_evaluator_accumulates_one_matrix_over_the_dataset() -> None:
    """Dataset-wide IoU is not the mean of per-image IoUs: a class right on a small image
    and wrong on a large one."""
    ev = SemanticEvaluator([1, 0], ["b", "a"], VOID)  # unsorted input is sorted
    gt1, pred1 = np.array([[0, 1]]), np.array([[0, 1]])  # perfect, 2 pixels
    gt2 = np.array([[0, 0, 0, 0, 1, 1]])
    pred2 = np.array([[1, 1, 1, 0, 1, U]])
    row1 = ev.process(_sample(1, gt1), SemanticPrediction(pred1, labels=[0, 1],
                                                          confidences=[0.9, 0.8]))  # fmt: skip
    row2 = ev.process(_sample(2, gt2), SemanticPrediction(pred2, labels=[1, U],
                                                          confidences=[0.5, 0.1]))  # fmt: skip
    assert row1["semantic_miou"] == 1.0 and row1["pixel_acc"] == 1.0
    assert row2["pixel_acc"] == pytest.approx(2 / 6)
    assert row2["labelled_masks"] == 1
    out = ev.evaluate()
    # summed: gt a (5 px): 2 right, 3 as b ; gt b (3 px): 2 right, 1 unlabelled
    # IoU a = 2 / (5 + 2 - 2) = 0.4 ; IoU b = 2 / (3 + 5 - 2) = 1/3
    assert out["class_iou_a"] == pytest.approx(0.4)
    assert out["class_iou_b"] == pytest.approx(1 / 3)
    assert out["semantic_miou"] == pytest.approx((0.4 + 1 / 3) / 2)
    assert out["pixel_acc"] == pytest.approx(4 / 8)
    assert out["unlabelled_frac"] == pytest.approx(1 / 8)
    assert out["labelled_mask_frac"] == pytest.approx(3 / 4)
    assert out["mask_confidence_mean"] == pytest.approx((0.9 + 0.8 + 0.5 + 0.1) / 4)
    rows = ev.per_class_rows()
    assert [r["name"] for r in rows] == ["a", "b", "(unlabelled)"]
    assert rows[0]["gt_pixels"] == 5 and rows[0]["pred_pixels"] == 2
    assert rows[1]["predicted_unlabelled"] == 1 and rows[2]["pred_pixels"] == 1
    assert rows[0]["recall"] == pytest.approx(2 / 5) and rows[1]["precision"] == pytest.approx(
        2 / 5
    )
    ev.reset()
    assert ev.matrix.sum() == 0 and ev.n_images == 0


def test_class_metric_names_are_identifiers_and_unique() -> None:
    names = class_metric_names(["Road", "traffic light", "Road", "---", "Straße"])
    assert names == ["class_iou_Road", "class_iou_traffic_light", "class_iou_Road_2",
                     "class_iou_class3", "class_iou_Stra_e"]  # fmt: skip
    for n in names:  # every one is a valid catalogue entry of the "IoU per class" series
        m = CATALOGUE.require(n)
        assert m.group == "IoU per class" and m.direction == "higher"
        assert m.applies_to("semantic") and not m.applies_to("amg")


def test_catalogue_declares_the_semantic_metrics() -> None:
    from sam_bench.tasks.semantic import SemanticTask

    SemanticTask.spec.check_catalogue()
    assert CATALOGUE.require("semantic_miou").direction == "higher"
    assert CATALOGUE.require("clip_ms_per_mask").kind == "cost"
    assert CATALOGUE.require("clip_ms_mean").unit == "ms"  # the task's own stage
    assert "clip" in SemanticTask.spec.stages and "clip" in SemanticTask.spec.own_stages
