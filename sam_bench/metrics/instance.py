"""Class-agnostic instance metrics for automatic mask generation (AMG).

Definitions follow ``docs/metrics.md``, section "Automatic mask generation". All matching
uses mask IoU on compressed RLEs (``pycocotools.mask.iou``), never boxes. Crowd ground truth
(``iscrowd``) is never an instance to find.

Edge cases (per image; aggregates use NaN-aware means, so NaN rows are skipped):

* no predictions, some GT: best-match IoU 0 for every instance (``miou`` 0, recalls 0), SA 0;
  ``coverage`` 0, ``overlap`` and ``mask_area_mean`` NaN (no covered pixels / no masks).
* no (non-crowd) GT, some predictions: ``miou`` / recalls NaN (the image does not enter
  ``miou_image``); SA 0, since every prediction is a false positive -- unless all of them lie in
  crowd regions, in which case TP + FP + FN = 0 and SA is NaN.
* neither: ``miou`` / recalls / SA NaN.
* crowd regions (sam_bench's own rule, for SA): a prediction left unmatched by the one-to-one
  matching whose crowd IoU (pycocotools' crowd IoU = intersection / prediction area) with some
  crowd region is >= 0.5 is not counted as a false positive. In AR, COCOeval's own crowd rule
  applies.

Two SA variants:

* ``msa`` / ``sa50`` / ``sa75`` score the generator's masks as they are (they may overlap),
  matching at IoU **>** t as the Data Science Bowl 2018 defines a hit.
* ``msa_label`` / ``sa50_label`` / ``sa75_label`` follow micro-sam's evaluation of AMG output
  (``micro_sam.instance_segmentation.mask_data_to_segmentation`` with its defaults, then
  ``elf.evaluation.mean_segmentation_accuracy``): the masks are painted into one label image,
  largest first, each mask taking only pixels no earlier mask took; every label is split into
  its 4-connected components; the components are matched one-to-one at IoU **>=** t, and an
  image with no true positive scores 0. Only these are comparable with micro-sam's published
  mSA figures.

AR by object size uses COCOeval's area ranges, which include both ends (an instance of exactly
32² or 96² pixels counts in two ranges), and the area the source states (COCO's ``area``
field, :attr:`GroundTruth.areas`), as COCOeval does; the rasterised area where the source has
none.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam_bench.data.base import GroundTruth, Sample
from sam_bench.metrics.catalogue import declare, metric_maker

SA_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""IoU thresholds of mSA: 0.50, 0.55, ..., 0.95 (matching requires IoU strictly above)."""
CROWD_FP_THRESHOLD = 0.5
"""A prediction with crowd IoU (intersection / prediction area) >= this is not a false positive."""
AR_MAX_DETS: tuple[int, int, int] = (10, 100, 1000)
"""COCOeval ``params.maxDets`` used for AR."""
_AREA_INDEX = {"all": 0, "small": 1, "medium": 2, "large": 3}  # COCOeval params.areaRngLbl order


def _assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.optimize.linear_sum_assignment`` (scipy imported on first use: the metric
    catalogue reads this module without scoring anything, e.g. in a dry run)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def _nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean ignoring NaN; NaN (without a warning) when nothing is left."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def mask_iou_matrix(
    pred_rles: Sequence[dict[str, Any]],
    gt_rles: Sequence[dict[str, Any]],
    gt_iscrowd: Sequence[bool],
) -> np.ndarray:
    """IoU matrix of shape (n_pred, n_gt) from one ``pycocotools.mask.iou`` call.

    Columns of crowd GT hold pycocotools' crowd IoU: intersection / prediction area.
    """
    if len(pred_rles) == 0 or len(gt_rles) == 0:
        return np.zeros((len(pred_rles), len(gt_rles)), dtype=np.float64)
    crowd = [int(bool(c)) for c in gt_iscrowd]
    return np.asarray(mask_utils.iou(list(pred_rles), list(gt_rles), crowd), dtype=np.float64)


def _best_match(ious: np.ndarray) -> np.ndarray:
    """Column-wise maximum of a (n_pred, n_gt) matrix; 0 for every GT without predictions."""
    if ious.shape[0] == 0:
        return np.zeros(ious.shape[1], dtype=np.float64)
    return ious.max(axis=0)


def best_match_ious(
    gt_rles: Sequence[dict[str, Any]],
    gt_iscrowd: Sequence[bool],
    pred_rles: Sequence[dict[str, Any]],
) -> np.ndarray:
    """Best-match IoU of every non-crowd GT instance (the "AMG mIoU" of SAM users).

    For each non-crowd ground-truth instance, the highest mask IoU with any predicted mask (0 when
    there are no predictions). Crowd instances are dropped. Returns shape (n_non_crowd,).
    """
    crowd = np.asarray(gt_iscrowd, dtype=bool).reshape(-1)
    ious = mask_iou_matrix(pred_rles, gt_rles, gt_iscrowd)
    return _best_match(ious[:, ~crowd])


def segmentation_accuracy(
    iou_matrix: np.ndarray,
    thresholds: Sequence[float] = SA_THRESHOLDS,
    pred_ignore: np.ndarray | None = None,
) -> np.ndarray:
    """Segmentation accuracy SA(t) = TP / (TP + FP + FN) per threshold (DSB 2018, micro-sam).

    ``iou_matrix`` is (n_pred, n_gt) over non-crowd GT. Predictions and GT are matched one-to-one
    with ``scipy.optimize.linear_sum_assignment``, pairs counting only when IoU > t; the assignment
    maximises the number of such pairs, ties broken by larger total IoU (as StarDist / elf matching,
    used by micro-sam). FN = unmatched GT; FP = unmatched predictions, except those flagged in
    ``pred_ignore`` (lying in a crowd region). NaN where TP + FP + FN = 0.
    """
    ious = np.asarray(iou_matrix, dtype=np.float64)
    n_pred, n_gt = ious.shape
    ignore = np.zeros(n_pred, bool) if pred_ignore is None else np.asarray(pred_ignore, bool)
    out = np.empty(len(thresholds), dtype=np.float64)
    for k, t in enumerate(thresholds):
        valid = ious > t
        rows = np.flatnonzero(valid.any(axis=1))
        cols = np.flatnonzero(valid.any(axis=0))
        matched = np.zeros(n_pred, dtype=bool)
        tp = 0
        if rows.size:
            sub_valid = valid[np.ix_(rows, cols)]
            sub_iou = np.where(sub_valid, ious[np.ix_(rows, cols)], 0.0)
            n = min(rows.size, cols.size)
            # each valid pair is worth 1, plus at most 0.5 in total of IoU for tie-breaking
            cost = -(sub_valid.astype(np.float64) + sub_iou / (2 * n))
            r, c = _assignment(cost)
            ok = sub_valid[r, c]
            tp = int(ok.sum())
            matched[rows[r[ok]]] = True
        fp = int((~matched & ~ignore).sum())
        fn = n_gt - tp
        denom = tp + fp + fn
        out[k] = tp / denom if denom else math.nan
    return out


def mask_areas(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """Pixel areas of RLEs (``pycocotools.mask.area``, called on at most 255 masks at a time: with
    numpy 2, pycocotools 2.0.11 raises OverflowError on a list of 256 or more)."""
    parts = [mask_utils.area(list(rles[i : i + 255])) for i in range(0, len(rles), 255)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def coverage_and_overlap(
    pred_rles: Sequence[dict[str, Any]], height: int, width: int
) -> tuple[float, float]:
    """Pixel coverage and overlap of a set of masks.

    ``coverage`` = fraction of image pixels inside at least one mask; ``overlap`` = fraction of
    covered pixels inside two or more masks (NaN when no pixel is covered). Computed exactly in RLE
    space, never decoding: with U the union of the masks seen so far, the multiply-covered region
    grows by (mask & U) at each mask (~10x faster than decoding 1000 masks of 1 Mpx).
    """
    union: dict[str, Any] | None = None
    multi: dict[str, Any] | None = None
    for rle in pred_rles:
        if union is not None:
            inter = mask_utils.merge([rle, union], intersect=True)
            multi = inter if multi is None else mask_utils.merge([multi, inter], intersect=False)
            union = mask_utils.merge([union, rle], intersect=False)
        else:
            union = rle
    covered = float(mask_utils.area(union)) if union is not None else 0.0
    n_multi = float(mask_utils.area(multi)) if multi is not None else 0.0
    return covered / float(height * width), (n_multi / covered if covered else math.nan)


def _bboxes(rles: Sequence[dict[str, Any]]) -> np.ndarray:
    """XYWH boxes of RLEs (``pycocotools.mask.toBbox``, at most 255 at a time as in
    :func:`mask_areas`)."""
    parts = [mask_utils.toBbox(list(rles[i : i + 255])) for i in range(0, len(rles), 255)]
    return np.concatenate(parts).reshape(-1, 4) if parts else np.zeros((0, 4))


def paint_label_image(pred_rles: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """micro-sam's label image of a set of masks: largest mask first, each mask taking only the
    pixels no earlier mask took, then every label split into its 4-connected components
    (``mask_data_to_segmentation`` with ``merge_exclusively=True, label_masks=True``).
    Returns an HxW int32 array, 0 = background, labels 1..n consecutive (in label order,
    then raster order). Work and memory stay within each mask's bounding box."""
    painted = np.zeros((height, width), dtype=np.int32)
    if len(pred_rles):
        areas = mask_areas(pred_rles)
        boxes = np.floor(_bboxes(pred_rles)).astype(int)
        order = sorted(range(len(pred_rles)), key=lambda i: -areas[i])  # stable: ties keep order
        for label, i in enumerate(order, start=1):
            x, y, w, h = boxes[i]
            if w <= 0 or h <= 0:
                continue
            box = (slice(y, y + h + 1), slice(x, x + w + 1))
            m = mask_utils.decode(pred_rles[i])[box].astype(bool)
            region = painted[box]
            region[m & (region == 0)] = label
    from scipy import ndimage  # imported on use: the catalogue reads this module (dry runs)

    out = np.zeros_like(painted)
    n = 0
    for label, box in enumerate(ndimage.find_objects(painted), start=1):
        if box is None:  # a mask every earlier mask covered
            continue
        comps, k = ndimage.label(painted[box] == label)  # default structure: 4-connectivity
        region, sel = out[box], comps > 0
        region[sel] = comps[sel] + n
        n += k
    return out


def label_iou_matrix(labels: np.ndarray, gt: GroundTruth) -> np.ndarray:
    """IoU of every label of ``labels`` (rows, 1..max) with every GT instance (columns) from a
    contingency count, as elf computes it; crowd columns hold pycocotools' crowd IoU
    (intersection / label area). Equal to ``pycocotools.mask.iou`` on the labels' RLEs, without
    building one full-size mask per label."""
    n = int(labels.max()) if labels.size else 0
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    out = np.zeros((n, len(gt.rles)), dtype=np.float64)
    for j, (rle, crowd) in enumerate(zip(gt.rles, gt.iscrowd, strict=True)):
        g = mask_utils.decode(rle).astype(bool)
        inter = np.bincount(labels[g], minlength=n + 1)[1:].astype(np.float64)
        denom = area if crowd else area + float(g.sum()) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = np.where(denom > 0, inter / denom, 0.0)
    return out


def segmentation_accuracy_elf(
    iou_matrix: np.ndarray,
    thresholds: Sequence[float] = SA_THRESHOLDS,
    pred_ignore: np.ndarray | None = None,
) -> np.ndarray:
    """SA(t) as ``elf.evaluation.matching`` computes it (micro-sam): one-to-one matching at
    IoU **>=** t (most matches, ties by total IoU), SA = TP / (TP + FP + FN), and 0 when there
    is no true positive. ``pred_ignore``: unmatched predictions not counted as false positives
    (sam_bench's crowd rule; no effect on data without crowd regions)."""
    ious = np.asarray(iou_matrix, dtype=np.float64)
    n_pred, n_gt = ious.shape
    ignore = np.zeros(n_pred, bool) if pred_ignore is None else np.asarray(pred_ignore, bool)
    out = np.zeros(len(thresholds), dtype=np.float64)
    n = min(n_pred, n_gt)
    for k, t in enumerate(thresholds):
        valid = ious >= t
        if n == 0 or not valid.any():
            continue
        cost = -(valid.astype(np.float64) + ious / (2 * n))
        r, c = _assignment(cost)
        ok = valid[r, c]
        tp = int(ok.sum())
        matched = np.zeros(n_pred, dtype=bool)
        matched[r[ok]] = True
        fp = int((~matched & ~ignore).sum())
        fn = n_gt - tp
        out[k] = tp / (tp + fp + fn) if tp > 0 else 0.0
    return out


@dataclass
class InstancePredictions:
    """What the instance evaluator scores for one image: masks and the score ranking them."""

    rles: list[dict[str, Any]]
    """Compressed RLEs, full image size."""
    scores: list[float]
    """One score per mask (SAM 2's predicted IoU): ranks the masks for AR."""


@dataclass
class _ImageRecord:
    image_id: str
    gt: GroundTruth
    pred_rles: list[dict[str, Any]]
    pred_scores: list[float]
    best_ious: np.ndarray
    row: dict[str, float]


class InstanceEvaluator:
    """detectron2-style: reset / process / evaluate; keeps per-image statistics + compressed RLEs,
    never dense masks. AR over the whole dataset is computed once, in :meth:`evaluate`.

    ``process(sample, InstancePredictions)`` is the evaluator interface
    (:class:`sam_bench.metrics.base.Evaluator`); :meth:`add` takes the parts directly.
    """

    name = "instance"

    IMPORTS: ClassVar[tuple[str, ...]] = ("scipy.ndimage", "scipy.optimize")
    """What scoring imports (~0.3 s): imported when the evaluator is created."""

    def __init__(self) -> None:
        # scipy is imported here, before any image is scored, so its import never counts in
        # the first image's ``metrics`` stage (the module itself imports it on use)
        for name in self.IMPORTS:
            importlib.import_module(name)

        self._records: list[_ImageRecord] = []
        self._ids: set[str] = set()

    def reset(self) -> None:
        """Forget every processed image."""
        self._records = []
        self._ids = set()

    def process(self, sample: Sample, prediction: InstancePredictions) -> dict[str, float]:
        """Score one image (see :meth:`add`)."""
        if sample.gt is None:
            raise ValueError(f"item {sample.ref.image_id} has no instance ground truth")
        return self.add(sample.ref.image_id, prediction.rles, prediction.scores, sample.gt)

    def add(
        self,
        image_id: str,
        pred_rles: list[dict[str, Any]],
        pred_scores: list[float],
        gt: GroundTruth,
    ) -> dict[str, float]:
        """Score one image and keep what :meth:`evaluate` needs.

        ``pred_scores`` (the predicted IoU of each mask) rank the masks for AR. Returns the
        per-image row: n_gt (non-crowd), mask_count, miou, recall50, recall75, msa, sa50, sa75,
        msa_label, sa50_label, sa75_label, coverage, overlap, mask_area_mean (mean mask area /
        image area); edge cases in the module docstring.
        """
        if image_id in self._ids:
            raise ValueError(f"image {image_id!r} processed twice")
        if len(pred_rles) != len(pred_scores):
            raise ValueError(f"{len(pred_rles)} masks but {len(pred_scores)} scores")
        h, w = gt.height, gt.width
        for rle in [*pred_rles, *gt.rles]:
            if [int(s) for s in rle["size"]] != [h, w]:
                raise ValueError(f"RLE size {list(rle['size'])} != image size {[h, w]}")
        crowd = np.asarray(gt.iscrowd, dtype=bool).reshape(-1)
        ious = mask_iou_matrix(pred_rles, gt.rles, gt.iscrowd)  # the one IoU call of this image
        best = _best_match(ious[:, ~crowd])
        if crowd.any() and len(pred_rles):
            in_crowd = ious[:, crowd].max(axis=1) >= CROWD_FP_THRESHOLD
        else:
            in_crowd = np.zeros(len(pred_rles), dtype=bool)
        sa = segmentation_accuracy(ious[:, ~crowd], SA_THRESHOLDS, in_crowd)
        sa_label = self._label_sa(pred_rles, gt, crowd, h, w)
        coverage, overlap = coverage_and_overlap(pred_rles, h, w)
        areas = mask_areas(pred_rles)
        has_gt = best.size > 0
        row: dict[str, float] = {
            "n_gt": int(best.size),
            "mask_count": len(pred_rles),
            "miou": float(best.mean()) if has_gt else math.nan,
            "recall50": float((best >= 0.5).mean()) if has_gt else math.nan,
            "recall75": float((best >= 0.75).mean()) if has_gt else math.nan,
            "msa": _nanmean(sa),
            "sa50": float(sa[SA_THRESHOLDS.index(0.5)]),
            "sa75": float(sa[SA_THRESHOLDS.index(0.75)]),
            "msa_label": float(sa_label.mean()),
            "sa50_label": float(sa_label[SA_THRESHOLDS.index(0.5)]),
            "sa75_label": float(sa_label[SA_THRESHOLDS.index(0.75)]),
            "coverage": coverage,
            "overlap": overlap,
            "mask_area_mean": _nanmean(areas / float(h * w)),
        }
        scores = [float(s) for s in pred_scores]
        self._records.append(_ImageRecord(image_id, gt, list(pred_rles), scores, best, row))
        self._ids.add(image_id)
        return dict(row)

    @staticmethod
    def _label_sa(
        pred_rles: list[dict[str, Any]], gt: GroundTruth, crowd: np.ndarray, h: int, w: int
    ) -> np.ndarray:
        """SA per threshold of micro-sam's painted label image (see the module docstring)."""
        ious = label_iou_matrix(paint_label_image(pred_rles, h, w), gt)
        in_crowd = (
            ious[:, crowd].max(axis=1) >= CROWD_FP_THRESHOLD
            if crowd.any() and ious.shape[0]
            else np.zeros(ious.shape[0], dtype=bool)
        )
        return segmentation_accuracy_elf(ious[:, ~crowd], SA_THRESHOLDS, in_crowd)

    def evaluate(self) -> dict[str, float]:
        """Aggregate metrics over every processed image (catalogue: :data:`INSTANCE_METRICS`)."""
        rows = [r.row for r in self._records]
        best = (
            np.concatenate([r.best_ious for r in self._records]) if self._records else np.zeros(0)
        )
        counts = [r["mask_count"] for r in rows]
        out: dict[str, float] = {
            "miou": _nanmean(best),
            "miou_image": _nanmean([r["miou"] for r in rows]),
            "recall50": _nanmean(best >= 0.5),
            "recall75": _nanmean(best >= 0.75),
        }
        for key in ("msa", "sa50", "sa75", "msa_label", "sa50_label", "sa75_label"):
            out[key] = _nanmean([r[key] for r in rows])
        out.update(self._average_recall())
        out["mask_count_mean"] = _nanmean(counts)
        out["mask_count_min"] = float(min(counts)) if counts else math.nan
        out["mask_count_max"] = float(max(counts)) if counts else math.nan
        for key in ("mask_area_mean", "coverage", "overlap"):
            out[key] = _nanmean([r[key] for r in rows])
        out["n_images"] = len(rows)
        out["n_instances"] = int(best.size)
        return out

    def _average_recall(self) -> dict[str, float]:
        """Class-agnostic AR@K with pycocotools COCOeval (SAM paper's proposal protocol).

        ``iouType="segm"``, ``useCats=0``, ``maxDets=[10, 100, 1000]``, masks ranked by score.
        AR = mean over the 10 IoU thresholds of ``eval["recall"][:, 0, a, m]`` with area index a
        (0 all, 1 small, 2 medium, 3 large) and maxDet index m (1 -> 100, 2 -> 1000); COCOeval's -1
        (no GT in that area range) becomes NaN. No predictions at all gives 0 where there is GT.
        """
        keys = {
            "ar100": ("all", 100),
            "ar1000": ("all", 1000),
            "ar1000_small": ("small", 1000),
            "ar1000_medium": ("medium", 1000),
            "ar1000_large": ("large", 1000),
        }
        if not self._records:
            return dict.fromkeys(keys, math.nan)
        images: list[dict[str, Any]] = []
        gt_anns: list[dict[str, Any]] = []
        dt_anns: list[dict[str, Any]] = []
        for i, rec in enumerate(self._records, start=1):
            images.append({"id": i, "height": rec.gt.height, "width": rec.gt.width})
            areas: list[float | None] = [None] * len(rec.gt.rles)
            if rec.gt.areas is not None:
                areas = list(rec.gt.areas)
            for rle, is_crowd, src_area in zip(rec.gt.rles, rec.gt.iscrowd, areas, strict=True):
                gt_anns.append(
                    _ann(len(gt_anns) + 1, i, rle, iscrowd=int(bool(is_crowd)), area=src_area)
                )
            for rle, score in zip(rec.pred_rles, rec.pred_scores, strict=True):
                dt_anns.append(_ann(len(dt_anns) + 1, i, rle, iscrowd=0, score=score))
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt, coco_dt = _coco(images, gt_anns), _coco(images, dt_anns)
            ev = COCOeval(coco_gt, coco_dt, iouType="segm")
            ev.params.useCats = 0
            ev.params.maxDets = list(AR_MAX_DETS)
            ev.evaluate()
            ev.accumulate()
        recall = ev.eval["recall"]  # (T iou thresholds, K=1 category, A=4 areas, M=3 maxDets)
        out = {}
        for key, (rng, max_det) in keys.items():
            r = recall[:, 0, _AREA_INDEX[rng], AR_MAX_DETS.index(max_det)]
            out[key] = float(r.mean()) if np.all(r > -1) else math.nan
        return out


def _ann(
    ann_id: int, image_id: int, rle: dict[str, Any], area: float | None = None, **extra: Any
) -> dict[str, Any]:
    """COCO annotation for an RLE; fields as ``COCO.loadRes`` sets them for segm results.
    ``area``: the source's own area (COCOeval's area ranges use it); ``None``: the RLE's."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": rle,
        "area": float(mask_utils.area(rle)) if area is None else float(area),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        **extra,
    }


def _coco(images: list[dict[str, Any]], anns: list[dict[str, Any]]) -> COCO:
    """In-memory COCO object (works with no annotations, unlike ``COCO.loadRes([])``)."""
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "obj"}]}
    coco.createIndex()
    return coco


_AMG = "docs/metrics.md: Automatic mask generation"
_TASKS = ("amg", "semantic")
_SIZE = "AR@1000 by object size"


_m = metric_maker(_TASKS, _AMG)


INSTANCE_METRICS = declare(
    _m("miou", "higher", "mIoU",
       "best-match mask IoU of every non-crowd GT instance, mean over all instances of the "
       "dataset (more masks never lower it)"),
    _m("miou_image", "higher", "mIoU/img",
       "best-match mask IoU averaged per image, then over the images with GT"),
    _m("recall50", "higher", "R@50", "fraction of GT instances whose best-match IoU >= 0.5"),
    _m("recall75", "higher", "R@75", "fraction of GT instances whose best-match IoU >= 0.75"),
    _m("msa", "higher", "mSA",
       "mean over t = 0.50..0.95 of SA(t) = TP/(TP+FP+FN), one-to-one matching at IoU > t on "
       "the masks as generated (they may overlap); a prediction mostly inside a crowd region "
       "is no false positive (sam_bench's rule); mean over images. Harsh on partially "
       "labelled data (COCO)",
       reference="Data Science Bowl 2018 (IoU > t); crowd rule: sam_bench"),
    _m("sa50", "higher", "SA50", "SA(0.5) of msa (IoU > 0.5), mean over images",
       reference="Data Science Bowl 2018"),
    _m("sa75", "higher", "SA75", "SA(0.75) of msa (IoU > 0.75), mean over images",
       reference="Data Science Bowl 2018"),
    _m("msa_label", "higher", "mSA (label)",
       "mSA after painting the masks into one label image, largest first, each taking only "
       "free pixels, split into 4-connected components; matching at IoU >= t, 0 without a "
       "true positive: comparable with micro-sam's published mSA",
       reference="micro-sam mask_data_to_segmentation + elf mean_segmentation_accuracy"),
    _m("sa50_label", "higher", "SA50 (label)", "SA(0.5) of msa_label (IoU >= 0.5)",
       reference="micro-sam / elf"),
    _m("sa75_label", "higher", "SA75 (label)", "SA(0.75) of msa_label (IoU >= 0.75)",
       reference="micro-sam / elf"),
    _m("ar100", "higher", "AR@100",
       "class-agnostic COCOeval segm AR, 100 masks per image ranked by predicted IoU",
       reference="pycocotools COCOeval, useCats=0 (SAM paper's proposal protocol)"),
    _m("ar1000", "higher", "AR@1000", "class-agnostic COCOeval segm AR, 1000 masks per image",
       reference="pycocotools COCOeval, useCats=0"),
    _m("ar1000_small", "higher", "AR small",
       "AR@1000 over GT with area in [0, 32^2] (COCOeval's range, both ends included; the "
       "source's area field where it has one)",
       reference="pycocotools COCOeval areaRng", group=_SIZE, group_x="small"),
    _m("ar1000_medium", "higher", "AR medium",
       "AR@1000 over GT with area in [32^2, 96^2] (both ends included)",
       reference="pycocotools COCOeval areaRng", group=_SIZE, group_x="medium"),
    _m("ar1000_large", "higher", "AR large",
       "AR@1000 over GT with area in [96^2, 1e10] (both ends included)",
       reference="pycocotools COCOeval areaRng", group=_SIZE, group_x="large"),
    _m("mask_count_mean", "neither", "masks/img", "predicted masks per image, mean",
       kind="count", fmt="{:.1f}"),
    _m("mask_count_min", "neither", "masks min", "predicted masks per image, minimum",
       kind="count", fmt="{:.0f}"),
    _m("mask_count_max", "neither", "masks max", "predicted masks per image, maximum",
       kind="count", fmt="{:.0f}"),
    _m("mask_area_mean", "neither", "mask area",
       "mean mask area as a fraction of the image, mean over images", kind="count"),
    _m("coverage", "neither", "coverage",
       "fraction of pixels inside at least one mask, mean over images", kind="count"),
    _m("overlap", "neither", "overlap",
       "fraction of covered pixels inside two or more masks, mean over images", kind="count"),
    _m("n_images", "neither", "images", "images scored", kind="info", fmt="{:.0f}"),
    _m("n_instances", "neither", "instances", "non-crowd GT instances", kind="info",
       fmt="{:.0f}"),
)  # fmt: skip
"""Catalogue entries of every key returned by :meth:`InstanceEvaluator.evaluate`."""
