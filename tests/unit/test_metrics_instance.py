"""Tests of the class-agnostic instance metrics (sam_bench.metrics.instance)."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from sam_bench.data.base import GroundTruth
from sam_bench.metrics.instance import (
    METRIC_INFO,
    SA_THRESHOLDS,
    InstanceEvaluator,
    best_match_ious,
    coverage_and_overlap,
    mask_areas,
    mask_iou_matrix,
    segmentation_accuracy,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
COCO_DIR = SHARED / "data" / "coco_tiny_train2017" / "small_coco"
COCO_JSON = COCO_DIR / "instances_train2017_small.json"
needs_coco = pytest.mark.skipif(not COCO_JSON.is_file(), reason=f"shared data absent: {COCO_JSON}")


def rle(m: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def rect(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def gt_of(masks: list[np.ndarray], crowd: list[bool] | None = None) -> GroundTruth:
    h, w = masks[0].shape
    return GroundTruth([rle(m) for m in masks], crowd or [False] * len(masks), h, w)


def empty_gt(h: int, w: int) -> GroundTruth:
    return GroundTruth([], [], h, w)


# ---------------------------------------------------------------------------- hand-made cases


def test_identical_masks_score_one_everywhere():
    h = w = 200
    masks = [rect(h, w, 0, 0, 20, 20), rect(h, w, 0, 30, 50, 80), rect(h, w, 90, 90, 190, 190)]
    ev = InstanceEvaluator()
    row = ev.process("a", [rle(m) for m in masks], [0.9, 0.8, 0.7], gt_of(masks))
    assert row["n_gt"] == 3 and row["mask_count"] == 3
    for key in ("miou", "recall50", "recall75", "msa", "sa50", "sa75"):
        assert row[key] == 1.0, key
    assert row["coverage"] == pytest.approx((400 + 2500 + 10000) / 40000)
    assert row["overlap"] == 0.0
    assert row["mask_area_mean"] == pytest.approx((400 + 2500 + 10000) / 3 / 40000)
    agg = ev.evaluate()
    # one instance per COCO area range: small 400 < 32^2, medium 2500, large 10000 >= 96^2
    for key in ("miou", "miou_image", "msa", "ar100", "ar1000", "ar1000_small", "ar1000_medium"):
        assert agg[key] == 1.0, key
    assert agg["ar1000_large"] == 1.0
    assert agg["n_images"] == 1 and agg["n_instances"] == 3
    assert set(agg) == set(METRIC_INFO)


def test_partial_overlap_hand_computed():
    h = w = 30
    gt = gt_of([rect(h, w, 0, 0, 10, 10)])  # area 100
    p1 = rect(h, w, 5, 5, 15, 15)  # inter 25, union 175 -> 1/7
    p2 = rect(h, w, 0, 2, 10, 12)  # inter 80, union 120 -> 2/3
    assert best_match_ious(gt.rles, gt.iscrowd, [rle(p1)])[0] == pytest.approx(1 / 7)
    np.testing.assert_allclose(
        mask_iou_matrix([rle(p1), rle(p2)], gt.rles, [False]), [[1 / 7], [2 / 3]]
    )
    ev = InstanceEvaluator()
    row = ev.process("a", [rle(p1), rle(p2)], [0.5, 0.9], gt)
    assert row["miou"] == pytest.approx(2 / 3)
    assert row["recall50"] == 1.0 and row["recall75"] == 0.0
    assert row["sa50"] == pytest.approx(0.5)  # TP p2, FP p1, FN none
    assert row["sa75"] == 0.0  # TP none, FP 2, FN 1
    assert row["msa"] == pytest.approx(4 * 0.5 / 10)  # IoU 2/3 > t for t = 0.50 ... 0.65
    # p1 and p2 overlap on rows 5-9, cols 5-11 (35 px); union 100 + 100 - 35 = 165
    assert row["coverage"] == pytest.approx(165 / 900)
    assert row["overlap"] == pytest.approx(35 / 165)
    agg = ev.evaluate()
    assert agg["ar100"] == pytest.approx(0.4)  # IoU 2/3 >= t for 4 of the 10 COCO thresholds
    assert agg["ar1000_small"] == pytest.approx(0.4)
    assert math.isnan(agg["ar1000_medium"]) and math.isnan(agg["ar1000_large"])


def _greedy_tp(ious: np.ndarray, t: float) -> int:
    """Greedy matching, highest IoU first (what one-to-one optimal matching must beat)."""
    pairs = sorted(zip(*np.nonzero(ious > t), strict=True), key=lambda rc: -ious[rc])
    used_r, used_c = set(), set()
    for r, c in pairs:
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
    return len(used_r)


def test_sa_one_to_one_matching_beats_greedy():
    h, w = 10, 120
    gt = gt_of([rect(h, w, 0, 0, 10, 100), rect(h, w, 0, 20, 10, 110)])  # overlapping GT
    a, b = rect(h, w, 0, 0, 10, 90), rect(h, w, 0, 0, 10, 60)
    ious = mask_iou_matrix([rle(a), rle(b)], gt.rles, gt.iscrowd)
    np.testing.assert_allclose(ious, [[90 / 100, 70 / 110], [60 / 100, 40 / 110]])
    assert _greedy_tp(ious, 0.5) == 1  # greedy takes a-GT1 (0.9) and strands b
    sa = segmentation_accuracy(ious, (0.5, 0.6, 0.95))
    # t=0.5: a-GT2, b-GT1 -> TP 2 -> SA 1; t=0.6: b-GT1 (0.6) not > 0.6 -> TP 1, FP 1, FN 1
    np.testing.assert_allclose(sa, [1.0, 1 / 3, 0.0])
    row = InstanceEvaluator().process("a", [rle(a), rle(b)], [0.5, 0.5], gt)
    assert row["sa50"] == 1.0 and row["sa75"] == pytest.approx(1 / 3)


def test_sa_maximises_match_count_not_iou_sum():
    ious = np.array([[0.95, 0.55, 0.0], [0.0, 0.95, 0.55], [0.55, 0.0, 0.0]])
    # max IoU sum: a-1, b-2 (1.90, 2 TP); max number of matches: a-2, b-3, c-1 (1.65, 3 TP)
    assert segmentation_accuracy(ious, (0.5,))[0] == 1.0
    assert segmentation_accuracy(ious, (0.6,))[0] == pytest.approx(2 / 4)  # TP 2, FP 1, FN 1


def test_sa_empty_and_pure_matrix_cases():
    assert math.isnan(segmentation_accuracy(np.zeros((0, 0)), (0.5,))[0])
    assert segmentation_accuracy(np.zeros((0, 3)), (0.5,))[0] == 0.0
    assert segmentation_accuracy(np.zeros((2, 0)), (0.5,))[0] == 0.0
    ignored = segmentation_accuracy(np.zeros((2, 0)), (0.5,), pred_ignore=np.array([True, True]))
    assert math.isnan(ignored[0])
    assert len(SA_THRESHOLDS) == 10 and SA_THRESHOLDS[0] == 0.5 and SA_THRESHOLDS[-1] == 0.95


def test_no_predictions():
    h = w = 100
    gt = gt_of([rect(h, w, 0, 0, 20, 20), rect(h, w, 50, 50, 90, 90)])  # small 400, medium 1600
    ev = InstanceEvaluator()
    row = ev.process("a", [], [], gt)
    assert row["n_gt"] == 2 and row["mask_count"] == 0
    for key in ("miou", "recall50", "recall75", "msa", "sa50", "sa75", "coverage"):
        assert row[key] == 0.0, key
    assert math.isnan(row["overlap"]) and math.isnan(row["mask_area_mean"])
    agg = ev.evaluate()
    assert agg["miou"] == 0.0 and agg["miou_image"] == 0.0 and agg["msa"] == 0.0
    assert agg["ar100"] == 0.0 and agg["ar1000_small"] == 0.0 and agg["ar1000_medium"] == 0.0
    assert math.isnan(agg["ar1000_large"])  # no large GT: COCOeval's -1 -> NaN
    assert agg["mask_count_mean"] == 0.0 and agg["mask_count_max"] == 0.0
    assert agg["n_instances"] == 2


def test_no_ground_truth_image():
    h = w = 50
    m = rect(h, w, 0, 0, 10, 10)
    ev = InstanceEvaluator()
    ev.process("with_gt", [rle(m)], [1.0], gt_of([m]))
    row = ev.process("no_gt", [rle(m), rle(rect(h, w, 20, 20, 30, 30))], [0.9, 0.8], empty_gt(h, w))
    assert row["n_gt"] == 0
    assert math.isnan(row["miou"]) and math.isnan(row["recall50"])
    assert row["sa50"] == 0.0 and row["msa"] == 0.0  # every prediction is a false positive
    agg = ev.evaluate()
    assert agg["miou"] == 1.0 and agg["miou_image"] == 1.0  # the GT-less image does not enter
    assert agg["msa"] == pytest.approx(0.5)
    assert agg["ar100"] == 1.0 and agg["n_instances"] == 1 and agg["n_images"] == 2
    only = InstanceEvaluator()
    only.process("no_gt", [rle(m)], [0.9], empty_gt(h, w))
    agg = only.evaluate()
    assert math.isnan(agg["miou"]) and math.isnan(agg["ar100"]) and agg["msa"] == 0.0


def test_neither_gt_nor_predictions_is_skipped():
    h = w = 50
    m = rect(h, w, 0, 0, 10, 10)
    ev = InstanceEvaluator()
    ev.process("a", [rle(m)], [1.0], gt_of([m]))
    row = ev.process("b", [], [], empty_gt(h, w))
    assert all(math.isnan(row[k]) for k in ("miou", "msa", "sa50", "sa75", "overlap"))
    agg = ev.evaluate()
    assert agg["msa"] == 1.0 and agg["miou_image"] == 1.0
    assert agg["coverage"] == pytest.approx((100 / 2500 + 0.0) / 2)
    assert agg["mask_count_min"] == 0.0 and agg["mask_count_max"] == 1.0


def test_crowd_region_is_not_an_instance_nor_a_false_positive():
    h = w = 100
    obj, crowd = rect(h, w, 0, 0, 20, 20), rect(h, w, 50, 50, 90, 90)
    gt = gt_of([obj, crowd], [False, True])
    inside = rect(h, w, 60, 60, 80, 80)  # fully inside the crowd region
    half = rect(h, w, 60, 80, 70, 100)  # cols 80-89 inside: 50 % of its area -> ignored
    assert best_match_ious(gt.rles, gt.iscrowd, [rle(obj)]).tolist() == [1.0]
    ev = InstanceEvaluator()
    row = ev.process("a", [rle(obj), rle(inside), rle(half)], [0.9, 0.8, 0.7], gt)
    assert row["n_gt"] == 1 and row["miou"] == 1.0
    assert row["sa50"] == 1.0 and row["msa"] == 1.0
    agg = ev.evaluate()
    assert agg["n_instances"] == 1 and agg["ar1000"] == 1.0
    mostly_out = rect(h, w, 60, 86, 70, 96)  # 4 of 10 columns inside: 40 % -> a false positive
    row = InstanceEvaluator().process("b", [rle(obj), rle(inside), rle(mostly_out)], [1, 1, 1], gt)
    assert row["sa50"] == pytest.approx(1 / 2)  # TP 1, FP 1, FN 0


def test_coverage_and_overlap_matches_dense_counts():
    rng = np.random.default_rng(0)
    masks = rng.random((70, 16, 24)) < 0.05  # fragmented masks: many RLE runs
    rles = [rle(m) for m in masks]
    for n in (1, 2, 3, 70):
        count = masks[:n].sum(axis=0)
        expect = ((count >= 1).mean(), (count >= 2).sum() / (count >= 1).sum())
        assert coverage_and_overlap(rles[:n], 16, 24) == pytest.approx(expect, abs=1e-12), n
    empty = rle(np.zeros((16, 24), bool))
    assert coverage_and_overlap([empty], 16, 24)[0] == 0.0
    np.testing.assert_array_equal(mask_areas(rles * 4), np.tile(masks.sum(axis=(1, 2)), 4))
    cov, ovl = coverage_and_overlap([], 16, 24)
    assert cov == 0.0 and math.isnan(ovl)


def test_many_predictions():
    """~1000 masks per image: pycocotools' area() overflows on lists of >= 256 masks."""
    h = w = 64
    rng = np.random.default_rng(3)
    gt_masks = [rect(h, w, y, x, y + 8, x + 8) for y, x in rng.integers(0, 56, (20, 2))]
    preds = [rect(h, w, y, x, y + 4, x + 6) for y, x in rng.integers(0, 58, (1000, 2))]
    ev = InstanceEvaluator()
    row = ev.process("a", [rle(m) for m in preds], rng.random(1000).tolist(), gt_of(gt_masks))
    assert row["mask_count"] == 1000 and row["mask_area_mean"] == pytest.approx(24 / 4096)
    agg = ev.evaluate()
    assert 0 <= agg["ar100"] <= agg["ar1000"] <= 1 and agg["mask_count_max"] == 1000.0


def test_input_validation_and_reset():
    h = w = 20
    m = rect(h, w, 0, 0, 5, 5)
    ev = InstanceEvaluator()
    with pytest.raises(ValueError, match="size"):
        ev.process("a", [rle(rect(h, w + 1, 0, 0, 5, 5))], [1.0], gt_of([m]))
    with pytest.raises(ValueError, match="scores"):
        ev.process("a", [rle(m)], [], gt_of([m]))
    ev.process("a", [rle(m)], [1.0], gt_of([m]))
    with pytest.raises(ValueError, match="twice"):
        ev.process("a", [rle(m)], [1.0], gt_of([m]))
    ev.reset()
    agg = ev.evaluate()
    assert agg["n_images"] == 0 and math.isnan(agg["miou"]) and math.isnan(agg["ar100"])
    assert set(agg) == set(METRIC_INFO)
    assert all(info.description for info in METRIC_INFO.values())


# ------------------------------------------------------------- real COCO sample vs references


@pytest.fixture(scope="module")
def coco_case():
    """GT of the COCO sample and deterministic perturbed predictions, run through the evaluator."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(COCO_JSON))
    rng = np.random.default_rng(1234)
    ev, per_image = InstanceEvaluator(), []
    for k, img_id in enumerate(sorted(coco.getImgIds())):
        info = coco.loadImgs(img_id)[0]
        h, w = info["height"], info["width"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        gt = GroundTruth([coco.annToRLE(a) for a in anns], [bool(a["iscrowd"]) for a in anns], h, w)
        preds: list[np.ndarray] = []
        for j, a in enumerate(anns):
            if k == 0 or a["iscrowd"]:
                continue  # image 0 gets no predictions at all
            m = coco.annToMask(a).astype(bool)
            op = j % 5
            if op == 1:
                m = ndimage.binary_erosion(m, iterations=2)
            elif op == 2:
                m = ndimage.binary_dilation(m, iterations=3)
            elif op == 3:
                continue  # dropped
            elif op == 4:
                m = np.roll(m, (4, -3), axis=(0, 1))
            preds.append(m)
        n_boxes = 110 if k == 1 else 3  # image 1 has > 100 masks: AR@100 != AR@1000 there
        for _ in range(n_boxes):
            y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
            bh, bw = rng.integers(4, min(120, h - y0) + 1), rng.integers(4, min(120, w - x0) + 1)
            preds.append(rect(h, w, y0, x0, y0 + bh, x0 + bw))
        scores = rng.random(len(preds)).tolist()
        pred_rles = [rle(m) for m in preds]
        ev.process(str(img_id), pred_rles, scores, gt)
        per_image.append((img_id, anns, gt, preds, pred_rles, scores))
    return coco, ev.evaluate(), per_image


@pytest.mark.shared_data
@needs_coco
def test_ar_matches_direct_cocoeval(coco_case):
    coco, agg, per_image = coco_case
    # The reference uses the json's own GT (polygons, polygon areas, real ids, 80 categories);
    # the evaluator uses RLE areas. Valid only if no instance changes COCO area range between them:
    for a in coco.dataset["annotations"]:
        mask_area = float(mask_utils.area(coco.annToRLE(a)))
        for bound in (32**2, 96**2):
            assert (mask_area < bound) == (a["area"] < bound)
    dets = [
        {"image_id": img_id, "category_id": 1, "segmentation": copy.deepcopy(r), "score": s}
        for img_id, _, _, _, rles, scores in per_image
        for r, s in zip(rles, scores, strict=True)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCOeval(coco, coco.loadRes(dets), iouType="segm")
        ref.params.useCats = 0
        ref.params.maxDets = [10, 100, 1000]
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    # summarize(): stats[7] AR@maxDets[1], stats[8] AR@maxDets[2], stats[9:12] S/M/L @maxDets[2]
    keys = ["ar100", "ar1000", "ar1000_small", "ar1000_medium", "ar1000_large"]
    expect = dict(zip(keys, ref.stats[7:12], strict=True))
    for key, value in expect.items():
        assert value > 0, key
        assert agg[key] == pytest.approx(value, abs=1e-12), key
    assert agg["ar100"] < agg["ar1000"]  # the 110-box image really exercises maxDets
    assert agg["n_instances"] == sum(not a["iscrowd"] for a in coco.dataset["annotations"])


@pytest.mark.shared_data
@needs_coco
def test_best_match_miou_matches_brute_force(coco_case):
    _, agg, per_image = coco_case
    best_all, per_image_miou = [], []
    for _, _, gt, preds, _, _ in per_image:
        keep = [i for i, c in enumerate(gt.iscrowd) if not c]
        g = np.stack([mask_utils.decode(gt.rles[i]).ravel() for i in keep]).astype(np.float32)
        if preds:
            p = np.stack([m.ravel() for m in preds]).astype(np.float32)
            inter = g @ p.T  # exact: integer counts far below 2^24
            union = g.sum(1)[:, None] + p.sum(1)[None, :] - inter
            best = (inter / union).max(axis=1)
        else:
            best = np.zeros(len(keep))
        best_all.append(best)
        per_image_miou.append(best.mean())
    best = np.concatenate(best_all)
    assert agg["miou"] == pytest.approx(best.mean(), abs=1e-9)
    assert agg["recall50"] == pytest.approx((best >= 0.5).mean(), abs=1e-12)
    assert agg["recall75"] == pytest.approx((best >= 0.75).mean(), abs=1e-12)
    assert agg["miou_image"] == pytest.approx(np.mean(per_image_miou), abs=1e-9)
    assert 0 < agg["msa"] < agg["sa50"] <= 1
