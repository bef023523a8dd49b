"""Tests of the class-agnostic instance metrics (sam_bench.metrics.instance)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from sam_bench.data.base import GroundTruth
from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.metrics.instance import (
    INSTANCE_METRICS,
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
    row = ev.add("a", [rle(m) for m in masks], [0.9, 0.8, 0.7], gt_of(masks))
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
    assert set(agg) == {m.name for m in INSTANCE_METRICS}


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
    row = ev.add("a", [rle(p1), rle(p2)], [0.5, 0.9], gt)
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
    row = InstanceEvaluator().add("a", [rle(a), rle(b)], [0.5, 0.5], gt)
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
    row = ev.add("a", [], [], gt)
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
    ev.add("with_gt", [rle(m)], [1.0], gt_of([m]))
    row = ev.add("no_gt", [rle(m), rle(rect(h, w, 20, 20, 30, 30))], [0.9, 0.8], empty_gt(h, w))
    assert row["n_gt"] == 0
    assert math.isnan(row["miou"]) and math.isnan(row["recall50"])
    assert row["sa50"] == 0.0 and row["msa"] == 0.0  # every prediction is a false positive
    agg = ev.evaluate()
    assert agg["miou"] == 1.0 and agg["miou_image"] == 1.0  # the GT-less image does not enter
    assert agg["msa"] == pytest.approx(0.5)
    assert agg["ar100"] == 1.0 and agg["n_instances"] == 1 and agg["n_images"] == 2
    only = InstanceEvaluator()
    only.add("no_gt", [rle(m)], [0.9], empty_gt(h, w))
    agg = only.evaluate()
    assert math.isnan(agg["miou"]) and math.isnan(agg["ar100"]) and agg["msa"] == 0.0


def test_neither_gt_nor_predictions_is_skipped():
    h = w = 50
    m = rect(h, w, 0, 0, 10, 10)
    ev = InstanceEvaluator()
    ev.add("a", [rle(m)], [1.0], gt_of([m]))
    row = ev.add("b", [], [], empty_gt(h, w))
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
    row = ev.add("a", [rle(obj), rle(inside), rle(half)], [0.9, 0.8, 0.7], gt)
    assert row["n_gt"] == 1 and row["miou"] == 1.0
    assert row["sa50"] == 1.0 and row["msa"] == 1.0
    agg = ev.evaluate()
    assert agg["n_instances"] == 1 and agg["ar1000"] == 1.0
    mostly_out = rect(h, w, 60, 86, 70, 96)  # 4 of 10 columns inside: 40 % -> a false positive
    row = InstanceEvaluator().add("b", [rle(obj), rle(inside), rle(mostly_out)], [1, 1, 1], gt)
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
    row = ev.add("a", [rle(m) for m in preds], rng.random(1000).tolist(), gt_of(gt_masks))
    assert row["mask_count"] == 1000 and row["mask_area_mean"] == pytest.approx(24 / 4096)
    agg = ev.evaluate()
    assert 0 <= agg["ar100"] <= agg["ar1000"] <= 1 and agg["mask_count_max"] == 1000.0


def test_input_validation_and_reset():
    h = w = 20
    m = rect(h, w, 0, 0, 5, 5)
    ev = InstanceEvaluator()
    with pytest.raises(ValueError, match="size"):
        ev.add("a", [rle(rect(h, w + 1, 0, 0, 5, 5))], [1.0], gt_of([m]))
    with pytest.raises(ValueError, match="scores"):
        ev.add("a", [rle(m)], [], gt_of([m]))
    ev.add("a", [rle(m)], [1.0], gt_of([m]))
    with pytest.raises(ValueError, match="twice"):
        ev.add("a", [rle(m)], [1.0], gt_of([m]))
    ev.reset()
    agg = ev.evaluate()
    assert agg["n_images"] == 0 and math.isnan(agg["miou"]) and math.isnan(agg["ar100"])
    assert set(agg) == {m.name for m in INSTANCE_METRICS}
    for m in INSTANCE_METRICS:  # every key is in the catalogue, documented, with a direction
        assert CATALOGUE.get(m.name) == m and m.description and m.reference
        assert m.direction in ("higher", "lower", "neither")


# ------------------------------------------------------------- real COCO sample vs references


def _coco_case(json_path: Path):
    """GT of a COCO json read by sam_bench's loader (so source areas and crowd flags are what
    a job sees) and deterministic perturbed predictions, run through the evaluator."""
    from sam_bench.data.coco import CocoDataset

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(json_path))
    dataset = CocoDataset(json_path, COCO_DIR / "train_2017_small")
    rng = np.random.default_rng(1234)
    ev, per_image = InstanceEvaluator(), []
    for k, ref in enumerate(dataset.refs()):
        img_id = int(ref.image_id)
        info = coco.loadImgs(img_id)[0]
        h, w = info["height"], info["width"]
        anns = sorted(coco.loadAnns(coco.getAnnIds(imgIds=img_id)), key=lambda a: a["id"])
        gt = dataset.load(ref).gt
        assert gt is not None and gt.areas == [float(a["area"]) for a in anns]
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
        ev.add(str(img_id), pred_rles, scores, gt)
        per_image.append((img_id, anns, gt, preds, pred_rles, scores))
    return coco, ev.evaluate(), per_image


@pytest.fixture(scope="module")
def coco_case():
    return _coco_case(COCO_JSON)


def _direct_cocoeval(coco: COCO, per_image: list) -> dict[str, float]:
    """Class-agnostic AR straight from pycocotools on the json's own GT."""
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
    return dict(zip(keys, ref.stats[7:12], strict=True))


@pytest.mark.shared_data
@needs_coco
def test_ar_matches_direct_cocoeval(coco_case):
    coco, agg, per_image = coco_case
    for key, value in _direct_cocoeval(coco, per_image).items():
        assert value > 0, key
        assert agg[key] == pytest.approx(value, abs=1e-12), key
    assert agg["ar100"] < agg["ar1000"]  # the 110-box image really exercises maxDets
    assert agg["n_instances"] == sum(not a["iscrowd"] for a in coco.dataset["annotations"])


@pytest.mark.shared_data
@needs_coco
def test_ar_by_size_uses_the_annotation_area_field(tmp_path: Path):
    """A copy of the sample where annotation areas and raster areas disagree across 32^2, and
    one area exactly 32^2 (COCOeval's ranges include both ends): AR by size still equals a
    direct COCOeval, and moves with the area field, not the raster."""
    data = json.loads(COCO_JSON.read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        orig = COCO(str(COCO_JSON))
    raster = {a["id"]: float(mask_utils.area(orig.annToRLE(a))) for a in data["annotations"]}
    # the sample itself has no annotation whose two areas fall on different sides of a bound
    for a in data["annotations"]:
        for bound in (32**2, 96**2):
            assert (raster[a["id"]] < bound) == (a["area"] < bound)
    medium = [a for a in data["annotations"] if not a["iscrowd"] and 1200 < raster[a["id"]] < 9000]
    medium[0]["area"] = 1000.0  # the field says small, the raster says medium
    medium[1]["area"] = float(32**2)  # exactly 32^2: small and medium both
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    coco, agg, per_image = _coco_case(path)
    direct = _direct_cocoeval(coco, per_image)
    for key, value in direct.items():
        assert agg[key] == pytest.approx(value, abs=1e-12), key
    _, agg_orig, _ = _coco_case(COCO_JSON)
    assert agg["ar1000_small"] != agg_orig["ar1000_small"]  # the moved instances count there
    assert agg["ar1000"] == pytest.approx(agg_orig["ar1000"], abs=1e-12)  # "all" is unchanged


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


# ------------------------------------------------------- micro-sam's painted-label variant


def test_label_variant_hand_computed():
    """Painted largest first, each mask taking only free pixels: the 200 px mask takes the
    whole top band, the mask equal to GT A gets no pixel, the two-blob mask becomes two
    components. Matching at IoU >= t, SA 0 without a true positive."""
    h = w = 20
    a, b = rect(h, w, 0, 0, 10, 10), rect(h, w, 0, 10, 10, 20)
    p1, p2 = rect(h, w, 0, 0, 10, 20), a.copy()
    p3 = rect(h, w, 12, 0, 14, 2) | rect(h, w, 12, 18, 14, 20)
    row = InstanceEvaluator().add("x", [rle(p2), rle(p3), rle(p1)], [1, 1, 1], gt_of([a, b]))
    # label image: p1 (IoU 0.5 with A and with B) and p3's two pieces; only t = 0.5 matches
    assert row["sa50_label"] == pytest.approx(1 / 4)  # TP 1, FP 2 (the pieces), FN 1
    assert row["sa75_label"] == 0.0
    assert row["msa_label"] == pytest.approx(0.25 / 10)
    # the overlapping masks as generated: p2 == A (IoU 1 > every t), p1 and p3 false positives
    assert row["msa"] == pytest.approx(1 / 4) and row["sa75"] == pytest.approx(1 / 4)


def _paint_reference(masks: list[np.ndarray]) -> np.ndarray:
    """micro-sam's painting written independently: OpenCV 4-connected components per label."""
    import cv2

    seg = np.zeros(masks[0].shape, np.int32)
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for label, i in enumerate(order, 1):
        seg[(seg == 0) & masks[i]] = label
    out, n = np.zeros_like(seg), 0
    for label in range(1, len(masks) + 1):
        k, comps = cv2.connectedComponents((seg == label).astype(np.uint8), connectivity=4)
        out[comps > 0] = comps[comps > 0] + n
        n += k - 1
    return out


def _elf_msa(seg: np.ndarray, gt: np.ndarray) -> list[float]:
    """elf.evaluation.mean_segmentation_accuracy re-derived from its definition: contingency
    table, IoU, matching of most pairs at IoU >= t (ties by total IoU), SA 0 without a TP."""
    from scipy.optimize import linear_sum_assignment

    p_ids, g_ids = np.unique(seg), np.unique(gt)
    table = np.array([[np.sum((seg == p) & (gt == g)) for g in g_ids] for p in p_ids], float)
    iou = table / (table.sum(1, keepdims=True) + table.sum(0, keepdims=True) - table)
    iou = iou[p_ids != 0][:, g_ids != 0]
    n_pred, n_true = iou.shape
    out = []
    for t in SA_THRESHOLDS:
        tp = 0
        if min(n_pred, n_true) and (iou >= t).any():
            cost = -(iou >= t).astype(float) - iou / (2 * min(n_pred, n_true))
            r, c = linear_sum_assignment(cost)
            tp = int((iou[r, c] >= t).sum())
        out.append(tp / (tp + (n_pred - tp) + (n_true - tp)) if tp else 0.0)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_label_variant_matches_an_independent_micro_sam_computation(seed: int):
    rng = np.random.default_rng(seed)
    h, w = 40, 48
    gt_label = np.zeros((h, w), np.int32)  # non-overlapping GT, as micro-sam's label images
    for k in range(1, 6):
        y, x = rng.integers(0, 30), rng.integers(0, 38)
        gt_label[y : y + rng.integers(4, 10), x : x + rng.integers(4, 10)] = k
    gt_masks = [gt_label == k for k in range(1, 6) if (gt_label == k).any()]
    preds = []
    for _ in range(int(rng.integers(1, 9))):
        y, x = rng.integers(0, 34), rng.integers(0, 42)
        m = rect(h, w, y, x, y + int(rng.integers(3, 12)), x + int(rng.integers(3, 12)))
        if rng.random() < 0.3:  # a second blob: painted as two components
            y2, x2 = rng.integers(0, 36), rng.integers(0, 44)
            m |= rect(h, w, y2, x2, y2 + 3, x2 + 3)
        preds.append(m)
    row = InstanceEvaluator().add("x", [rle(m) for m in preds], [0.5] * len(preds), gt_of(gt_masks))
    expect = _elf_msa(_paint_reference(preds), gt_label)
    assert row["msa_label"] == pytest.approx(np.mean(expect), abs=1e-12)
    assert row["sa50_label"] == pytest.approx(expect[0], abs=1e-12)
    assert row["sa75_label"] == pytest.approx(expect[5], abs=1e-12)


def test_label_iou_matrix_equals_pycocotools_on_the_labels():
    """The contingency-count IoUs equal pycocotools' IoUs of each label's RLE, crowd included."""
    from sam_bench.metrics.instance import label_iou_matrix, paint_label_image

    rng = np.random.default_rng(7)
    h, w = 37, 53
    preds = [rect(h, w, *sorted(rng.integers(0, 37, 2)), *sorted(rng.integers(0, 53, 2)))
             for _ in range(9)]  # fmt: skip
    preds = [p for p in preds if p.any()]
    gt = gt_of([rect(h, w, 2, 3, 20, 30), rect(h, w, 10, 10, 35, 50), rect(h, w, 0, 0, 5, 5)],
               [False, False, True])  # fmt: skip
    labels = paint_label_image([rle(p) for p in preds], h, w)
    ids = range(1, int(labels.max()) + 1)
    reference = mask_iou_matrix([rle(labels == i) for i in ids], gt.rles, gt.iscrowd)
    np.testing.assert_allclose(label_iou_matrix(labels, gt), reference, rtol=0, atol=1e-15)


def test_the_label_variant_stays_small_on_a_large_image():
    """Thousands of components on a 2000 x 2000 image: memory stays a few full-size arrays
    (one full-size mask per component would be gigabytes)."""
    import tracemalloc

    h = w = 2000
    rng = np.random.default_rng(0)
    preds = []
    for _ in range(300):  # each mask two blobs: two components
        y, x = rng.integers(0, h - 40, 2)
        m = rect(h, w, y, x, y + 20, x + 20)
        m[(y + 30) % h : (y + 35) % h, x : x + 5] = True
        preds.append(rle(m))
    gt = gt_of([rect(h, w, 0, 0, 100, 100), rect(h, w, 500, 500, 700, 900)])
    tracemalloc.start()
    row = InstanceEvaluator().add("big", preds, [0.5] * len(preds), gt)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0.0 <= row["msa_label"] <= 1.0
    assert peak < 300e6, f"peak {peak / 1e6:.0f} MB"
