"""Semantic labelling metrics: a dataset-wide confusion matrix and what follows from it.

Definitions follow ``docs/metrics.md`` ("Semantic labelling") and mmsegmentation's
``IoUMetric`` (``intersect_and_union`` summed over the dataset, then
``total_area_to_metrics``):

* The confusion matrix ``M`` has one row per class of the class list but the void one (ground
  truth) and one column per such class plus a last column, *unlabelled* (prediction). Pixels
  whose ground truth is the void index are ignored everywhere (they enter no count). The
  prediction *unlabelled* (masks below ``semantic.min_confidence``, pixels in no mask) is its
  own value: never the void class, always wrong.
* IoU of class c = ``M[c, c] / (sum(M[c, :]) + sum(M[:, c]) - M[c, c])``: intersection over
  the union of the pixels labelled c in the ground truth and those predicted c (at non-void
  pixels). A class in neither has no IoU (NaN, ``null`` in JSON).
* ``semantic_miou``: the mean IoU over the classes present in the ground truth or the
  prediction (mmsegmentation's ``nanmean``).
* ``pixel_acc``: ``trace(M) / sum(M)``, the fraction of non-void pixels predicted right.
* ``unlabelled_frac``: the fraction of non-void pixels predicted *unlabelled*.
* ``class_iou_<name>``: each class's IoU (a categorical series, "IoU per class").

Per image (``per_image.csv``) the same quantities of that image's own matrix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam_bench.data.base import Sample
from sam_bench.metrics.catalogue import Metric, declare, declare_family, metric_maker
from sam_bench.metrics.instance import coverage_and_overlap, mask_areas

UNLABELLED = -1
"""The predicted map's value of pixels left unlabelled (never a class index)."""


@dataclass
class SemanticPrediction:
    """What the semantic evaluator scores for one image."""

    label_map: np.ndarray
    """HxW int32: class index per pixel, :data:`UNLABELLED` where no labelled mask won."""
    rles: list[dict[str, Any]] = field(default_factory=list)
    """The AMG masks (compressed RLEs), in the engine's order."""
    scores: list[float] = field(default_factory=list)
    """Predicted IoU of each mask."""
    labels: list[int] = field(default_factory=list)
    """Class index of each mask, :data:`UNLABELLED` below ``min_confidence``."""
    confidences: list[float] = field(default_factory=list)
    """Softmax probability of each mask's best class."""
    best: list[int] = field(default_factory=list)
    """Each mask's best class (its label before the confidence threshold)."""
    clip_seconds: float = 0.0
    """Time of the ``clip`` stage for this image (crops, image encoder, similarity)."""


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, class_ids: Sequence[int], void_index: int | None
) -> np.ndarray:
    """(K, K + 1) int64 counts: rows the ground-truth classes ``class_ids`` (sorted, void
    excluded), columns the same classes then *unlabelled*. Void pixels are skipped.

    Raises:
        ValueError: shapes differ, a ground-truth value is neither a class nor void, or a
            predicted value is neither a class nor :data:`UNLABELLED`.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    ids = np.asarray(sorted(int(c) for c in class_ids), dtype=np.int64)
    k = len(ids)
    g = gt.reshape(-1).astype(np.int64)
    p = pred.reshape(-1).astype(np.int64)
    if void_index is not None:
        keep = g != void_index
        g, p = g[keep], p[keep]
    gi = _positions(g, ids, "ground truth")
    pi = np.where(p == UNLABELLED, k, 0)
    labelled = p != UNLABELLED
    pi[labelled] = _positions(p[labelled], ids, "prediction")
    return np.bincount(gi * (k + 1) + pi, minlength=k * (k + 1)).reshape(k, k + 1)


def _positions(values: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    if values.size == 0:
        return values
    pos = np.searchsorted(ids, values).clip(0, max(len(ids) - 1, 0))
    bad = ids[pos] != values if len(ids) else np.ones(values.shape, bool)
    if bad.any():
        raise ValueError(f"{what} has values {sorted(set(values[bad].tolist()))[:10]} "
                         "that are not classes")  # fmt: skip
    return pos


def scores(matrix: np.ndarray) -> dict[str, Any]:
    """``iou`` (K,), ``semantic_miou``, ``pixel_acc``, ``unlabelled_frac`` of a confusion
    matrix (see the module docstring); NaN where undefined (no non-void pixel)."""
    m = np.asarray(matrix, dtype=np.float64)
    k = m.shape[0]
    inter = np.diag(m[:, :k])
    union = m.sum(axis=1) + m[:, :k].sum(axis=0) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), np.nan)
    total = m.sum()
    present = ~np.isnan(iou)
    return {
        "iou": iou,
        "semantic_miou": float(iou[present].mean()) if present.any() else math.nan,
        "pixel_acc": float(inter.sum() / total) if total > 0 else math.nan,
        "unlabelled_frac": float(m[:, k].sum() / total) if total > 0 else math.nan,
    }


def class_metric_names(names: Sequence[str]) -> list[str]:
    """``class_iou_<slug>`` per class display name (ASCII letters, digits and ``_``; a
    repeated or empty slug gets the class position appended)."""
    out: list[str] = []
    for i, name in enumerate(names):
        slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or f"class{i}"
        metric = f"class_iou_{slug}"
        if metric in out:
            metric = f"{metric}_{i}"
        out.append(metric)
    return out


class SemanticEvaluator:
    """reset / process / evaluate over :class:`SemanticPrediction` s. Keeps the confusion
    matrix (and a few numbers per image), never the maps.

    Args:
        class_ids: The class indices a pixel can have besides void.
        class_names: Their display names (same order).
        void_index: Ignored ground-truth value (``None``: none).
        masks: Whether predictions come with labelled masks (SAM 2 + CLIP). ``False`` (a
            saved class map without masks, ``predictions=DIR``): the mask-level values
            (``labelled_masks``, ``labelled_mask_frac``, ``mask_confidence_mean``,
            ``clip_ms_per_mask``) are left out, not reported as zeros or NaNs.
    """

    name = "semantic"

    def __init__(
        self,
        class_ids: Sequence[int],
        class_names: Sequence[str],
        void_index: int | None,
        *,
        masks: bool = True,
    ) -> None:
        order = np.argsort(np.asarray(class_ids))
        self.class_ids = [int(class_ids[i]) for i in order]
        self.class_names = [str(class_names[i]) for i in order]
        self.void_index = void_index
        self.masks = masks
        self.metric_names = class_metric_names(self.class_names)
        self.reset()

    def reset(self) -> None:
        k = len(self.class_ids)
        self.matrix = np.zeros((k, k + 1), dtype=np.int64)
        self.n_images = 0
        self.n_masks = 0
        self.n_labelled = 0
        self.confidences: list[float] = []
        self.clip_seconds = 0.0

    def process(self, sample: Sample, prediction: SemanticPrediction) -> dict[str, Any]:
        """Score one image; returns its row (``semantic_miou``, ``pixel_acc``,
        ``unlabelled_frac``, ``labelled_masks``, ``mask_confidence_mean``)."""
        if sample.semantic is None:
            raise ValueError(f"item {sample.ref.image_id} has no semantic ground truth")
        cm = confusion_matrix(
            sample.semantic.labels, prediction.label_map, self.class_ids, self.void_index
        )
        self.matrix += cm
        self.n_images += 1
        s = scores(cm)
        row: dict[str, Any] = {
            "semantic_miou": s["semantic_miou"],
            "pixel_acc": s["pixel_acc"],
            "unlabelled_frac": s["unlabelled_frac"],
        }
        if not self.masks:
            return row
        n = len(prediction.labels)
        labelled = sum(1 for v in prediction.labels if v != UNLABELLED)
        self.n_masks += n
        self.n_labelled += labelled
        self.confidences.extend(float(c) for c in prediction.confidences)
        self.clip_seconds += prediction.clip_seconds
        row["labelled_masks"] = labelled
        row["mask_confidence_mean"] = float(np.mean(prediction.confidences)) if n else math.nan
        return row

    def evaluate(self) -> dict[str, float]:
        s = scores(self.matrix)
        out: dict[str, float] = {
            "semantic_miou": s["semantic_miou"],
            "pixel_acc": s["pixel_acc"],
            "unlabelled_frac": s["unlabelled_frac"],
        }
        if self.masks:
            out["labelled_mask_frac"] = self.n_labelled / self.n_masks if self.n_masks else math.nan
            out["mask_confidence_mean"] = (
                float(np.mean(self.confidences)) if self.confidences else math.nan
            )
            out["clip_ms_per_mask"] = (
                1000.0 * self.clip_seconds / self.n_masks if self.n_masks else math.nan
            )
        out["n_classes_present"] = int(np.sum(~np.isnan(s["iou"])))
        for metric, value in zip(self.metric_names, s["iou"], strict=True):
            out[metric] = float(value)
        return out

    def per_class_rows(self) -> list[dict[str, Any]]:
        """``per_class.csv``: one row per class, then one for *unlabelled*."""
        m = self.matrix
        k = len(self.class_ids)
        s = scores(m)
        total = int(m.sum())
        rows: list[dict[str, Any]] = []
        for c in range(k):
            gt_px, pred_px, inter = int(m[c].sum()), int(m[:, c].sum()), int(m[c, c])
            rows.append({
                "index": self.class_ids[c],
                "name": self.class_names[c],
                "metric": self.metric_names[c],
                "iou": float(s["iou"][c]),
                "gt_pixels": gt_px,
                "pred_pixels": pred_px,
                "intersection": inter,
                "union": gt_px + pred_px - inter,
                "recall": inter / gt_px if gt_px else math.nan,
                "precision": inter / pred_px if pred_px else math.nan,
                "gt_frac": gt_px / total if total else math.nan,
                "predicted_unlabelled": int(m[c, k]),
            })  # fmt: skip
        rows.append({
            "index": None, "name": "(unlabelled)", "metric": "unlabelled_frac",
            "iou": None, "gt_pixels": 0, "pred_pixels": int(m[:, k].sum()), "intersection": 0,
            "union": None, "recall": None, "precision": None, "gt_frac": 0.0,
            "predicted_unlabelled": int(m[:, k].sum()),
        })  # fmt: skip
        return rows


class MaskStatsEvaluator:
    """Mask counts, coverage and overlap of the AMG masks, for data without instance ground
    truth (with instances, :class:`~sam_bench.metrics.instance.InstanceEvaluator` reports the
    same keys). Definitions as there."""

    name = "masks"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict[str, float]] = []

    def process(self, sample: Sample, prediction: SemanticPrediction) -> dict[str, float]:
        h, w = prediction.label_map.shape
        coverage, overlap = coverage_and_overlap(prediction.rles, h, w)
        areas = mask_areas(prediction.rles)
        row = {
            "mask_count": float(len(prediction.rles)),
            "coverage": coverage,
            "overlap": overlap,
            "mask_area_mean": float(np.mean(areas / float(h * w))) if len(areas) else math.nan,
        }
        self.rows.append(row)
        return dict(row)

    def evaluate(self) -> dict[str, float]:
        counts = [r["mask_count"] for r in self.rows]
        out = {
            "mask_count_mean": float(np.mean(counts)) if counts else math.nan,
            "mask_count_min": float(min(counts)) if counts else math.nan,
            "mask_count_max": float(max(counts)) if counts else math.nan,
        }
        for key in ("mask_area_mean", "coverage", "overlap"):
            vals = [r[key] for r in self.rows if not math.isnan(r[key])]
            out[key] = float(np.mean(vals)) if vals else math.nan
        return out


# ---------------------------------------------------------------------------------------------
# catalogue

_REF = "docs/metrics.md: Semantic labelling; mmsegmentation IoUMetric"
_TASKS = ("semantic",)
SERIES = "IoU per class"


_m = metric_maker(_TASKS, _REF)


SEMANTIC_METRICS = declare(
    _m("semantic_miou", "higher", "mIoU (sem)",
       "per-class IoU from the dataset-wide confusion matrix (void ignored, 'unlabelled' "
       "always wrong), mean over the classes present in ground truth or prediction"),
    _m("pixel_acc", "higher", "pixel acc",
       "fraction of non-void pixels whose predicted class is right ('unlabelled' is wrong)"),
    _m("unlabelled_frac", "neither", "unlabelled",
       "fraction of non-void pixels predicted 'unlabelled' (in no mask, or only in masks "
       "below semantic.min_confidence)", kind="count"),
    _m("labelled_mask_frac", "neither", "labelled masks",
       "fraction of masks whose best class reaches semantic.min_confidence", kind="count"),
    _m("mask_confidence_mean", "neither", "confidence",
       "CLIP softmax probability of each mask's best class, mean over all masks",
       kind="count", reference="sam_bench"),
    _m("clip_ms_per_mask", "lower", "CLIP ms/mask",
       "time of the clip stage (crops, CLIP image encoder, similarity) per mask, over the "
       "dataset", unit="ms", kind="cost", fmt="{:.1f}", reference="sam_bench"),
    _m("n_classes_present", "neither", "classes",
       "classes present in ground truth or prediction (those semantic_miou averages)",
       kind="info", fmt="{:.0f}"),
)  # fmt: skip
"""Catalogue entries of :meth:`SemanticEvaluator.evaluate` (plus the ``class_iou_*``
family)."""


def _class_metric(match: re.Match[str]) -> Metric:
    name = match.group("cls")
    return _m(
        f"class_iou_{name}", "higher", f"IoU {name}",
        f"IoU of class {name} from the dataset-wide confusion matrix (void ignored); "
        "null when the class is in neither ground truth nor prediction",
        group=SERIES, group_x=name,
    )  # fmt: skip


declare_family(r"class_iou_(?P<cls>[A-Za-z0-9_]+)", _class_metric)
