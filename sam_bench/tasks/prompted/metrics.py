"""Prompted-segmentation metrics (``task=prompted``): definitions, per-instance outcomes and
their evaluator.

Definitions (``docs/metrics.md``, "Prompted segmentation"). Every IoU is the mask IoU
of one binary prediction with one non-crowd ground-truth instance, over the whole image.

* ``miou_click`` (``prompt.mode=click``): one positive click at the instance's farthest point
  from its boundary, 3 masks, the one with the highest *predicted* IoU kept; mean IoU over
  every instance of the dataset. ``miou_click_oracle``: the best of the 3 masks against the
  ground truth (the SAM paper's oracle).
* ``miou_box`` (``prompt.mode=box``): the box prompt's single mask; with detector boxes, an
  instance no detection matched counts with IoU 0 (``box_recall`` is the fraction matched).
* ``prompt.mode=clicks`` (RITM / SimpleClick protocol, ``max_clicks`` = K): the IoU after each
  click k = 1..K. ``miou_clicks_<k>``: the mean over instances after k clicks (the "mIoU after k
  clicks" curve). ``noc85`` / ``noc90``: per instance, the number of clicks after which the
  IoU first is >= 0.85 / 0.90, K when it never is within K clicks; mean over instances.
  ``nof85`` / ``nof90``: the number of instances whose IoU never reaches 0.85 / 0.90 within K
  clicks. (RITM's ``over_max`` counts instances whose NoC *equals* K, which also counts those
  that reach the IoU exactly at click K; sam_bench counts those that never reach it.)
* ``miou_prompted``: the mean IoU of every instance's final mask under the job's protocol
  (click: the kept mask; box: the box's mask; clicks: after K clicks): the task's objective,
  comparable across modes. ``miou_prompted_small`` / ``_medium`` / ``_large``: the same over
  instances by COCO size (area < 32^2, 32^2 <= area < 96^2, area >= 96^2; the source's area
  field where it has one, else the mask's pixel count).
* ``decoder_ms_per_prompt``: decoder time (prompt encoder + mask decoder, all batches) per
  prompt, one prompt being one instance's one query (one click step, or one box); the encoder
  is per image (``encoder_ms_mean``).

Crowd regions are never prompted; instances whose mask is empty are skipped with their reason
(``per_instance.csv``), as is an image without an instance to prompt (its row says so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sam_bench.data.base import Sample
from sam_bench.metrics.catalogue import Metric, declare, declare_family, metric_maker

#: COCO's object sizes by area (pixels): small < 32^2 <= medium < 96^2 <= large.
SIZES = ("small", "medium", "large")
NOC_THRESHOLDS = (0.85, 0.90)
MODES = ("click", "box", "clicks")

_REF = "docs/metrics.md: Prompted segmentation"
_TASKS = ("prompted",)
_NOC = "NoC: clicks to reach an IoU"
_SIZE = "mIoU by object size"
CLICKS_SERIES = "mIoU after k clicks"


def size_of(area: float) -> str:
    """COCO's size name of an object of ``area`` pixels."""
    if area < 32**2:
        return "small"
    if area < 96**2:
        return "medium"
    return "large"


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two HxW bool masks; 0 when both are empty."""
    inter = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    return inter / union if union else 0.0


def noc(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """Clicks after which the IoU first is >= ``threshold`` (1-based); ``max_clicks`` when it
    never is within ``max_clicks`` clicks (RITM's ``_get_noc``)."""
    for k, v in enumerate(ious[:max_clicks], start=1):
        if v >= threshold:
            return k
    return max_clicks


def fails(ious: Sequence[float], threshold: float, max_clicks: int) -> bool:
    """Whether the IoU never reaches ``threshold`` within ``max_clicks`` clicks."""
    return not any(v >= threshold for v in ious[:max_clicks])


def _pct(t: float) -> str:
    return f"{round(t * 100):d}"


_m = metric_maker(_TASKS, _REF)


PROMPTED_METRICS = declare(
    _m("miou_prompted", "higher", "mIoU",
       "mean IoU of every instance's final mask under the job's protocol (click: the kept "
       "mask; box: the box's mask, 0 for an instance no detection matched; clicks: after "
       "max_clicks clicks)"),
    _m("miou_click", "higher", "mIoU click",
       "prompt.mode=click: one positive click at the point farthest from the instance's "
       "boundary, 3 masks, the highest predicted IoU kept; mean IoU over instances"),
    _m("miou_click_oracle", "higher", "mIoU oracle",
       "prompt.mode=click: the best of the 3 masks against the ground truth (SAM paper's "
       "oracle); mean IoU over instances"),
    _m("miou_box", "higher", "mIoU box",
       "prompt.mode=box: the single mask of the instance's box (tight ground-truth box, "
       "jittered with prompt.box_jitter, or the matched detector box: 0 when none matched); "
       "mean IoU over instances"),
    _m("box_recall", "higher", "box recall",
       "prompt.boxes: fraction of ground-truth instances a detection matched (box IoU >= "
       "prompt.box_match_iou, greedy by score)", reference="COCO greedy matching"),
    _m("n_unmatched_boxes", "lower", "unmatched boxes",
       "prompt.boxes: detections (after prompt.box_min_score) that matched no instance; "
       "their masks are computed and timed, never scored", kind="count", fmt="{:.0f}"),
    *(
        _m(f"noc{_pct(t)}", "lower", f"NoC ({_pct(t)})",
           f"prompt.mode=clicks: clicks until the IoU first is >= {t:.2f}, max_clicks when it "
           "never is; mean over instances",
           reference="RITM / SimpleClick NoC (docs/metrics.md: Prompted segmentation)",
           unit="clicks", fmt="{:.2f}", group=_NOC, group_x=f"IoU {t:.2f}")
        for t in NOC_THRESHOLDS
    ),
    *(
        _m(f"nof{_pct(t)}", "lower", f"NoF ({_pct(t)})",
           f"prompt.mode=clicks: instances whose IoU never reaches {t:.2f} within max_clicks "
           "clicks (RITM counts NoC == max_clicks instead)",
           reference="RITM / SimpleClick NoF", fmt="{:.0f}")
        for t in NOC_THRESHOLDS
    ),
    *(
        _m(f"miou_prompted_{s}", "higher", f"mIoU ({s})",
           f"miou_prompted over {s} instances (COCO sizes: small < 32^2 <= medium < 96^2 <= "
           "large, pixels of area)", group=_SIZE, group_x=s)
        for s in SIZES
    ),
    _m("n_prompted", "neither", "instances", "instances prompted (non-crowd, non-empty)",
       kind="info", fmt="{:.0f}"),
    _m("n_skipped", "neither", "skipped",
       "annotations never prompted: crowd regions and empty masks (reasons in "
       "per_instance.csv)", kind="info", fmt="{:.0f}"),
    _m("n_prompts", "neither", "prompts",
       "decoder queries over the dataset (one per instance per click, or per box)",
       kind="info", fmt="{:.0f}"),
    Metric("decoder_ms_per_prompt", "lower", "ms/prompt",
           "prompt encoder + mask decoder time per prompt (one instance's one query); the "
           "image encoder runs once per image (encoder_ms_mean)",
           reference="docs/metrics.md: Cost", unit="ms", kind="cost", fmt="{:.1f}",
           tasks=_TASKS),
)  # fmt: skip
"""Catalogue entries of the fixed keys of :meth:`PromptedEvaluator.evaluate`."""


def _clicks_metric(match: Any) -> Metric:
    k = int(match.group("k"))
    return _m(
        f"miou_clicks_{k}", "higher", f"mIoU @{k} clicks",
        f"prompt.mode=clicks: mean IoU over instances after {k} click{'s' if k > 1 else ''} "
        "(RITM / SimpleClick protocol)",
        group=CLICKS_SERIES, group_x=k,
    )  # fmt: skip


declare_family(r"miou_clicks_(?P<k>[1-9][0-9]*)", _clicks_metric)


# ---------------------------------------------------------------------------------------------
# per-instance outcomes


@dataclass
class InstanceOutcome:
    """What happened to one annotation of an image under one job's protocol."""

    image_id: str
    index: int
    """Position of the annotation in the image's ground truth."""
    area: float
    category_id: int | None = None
    status: str = "ok"
    """``ok``; ``skipped`` (crowd, empty mask: never prompted); ``missed`` (no detection
    matched it: IoU 0)."""
    reason: str | None = None
    ious: list[float] = field(default_factory=list)
    """IoU after each prompt step (click: 1; box: 1; clicks: one per click)."""
    predicted_ious: list[float] = field(default_factory=list)
    """The decoder's predicted IoU of the kept mask after each step."""
    oracle_iou: float | None = None
    """click: the best IoU of the 3 masks."""
    clicks: list[list[int]] = field(default_factory=list)
    """``[x, y, label]`` of every click sent (label 1 positive, 0 negative)."""
    box: list[float] | None = None
    """The box sent (xyxy pixels)."""
    det_score: float | None = None
    det_box_iou: float | None = None
    stopped: int | None = None
    """clicks: the click after which no error pixel was left (the mask is kept after it)."""
    rle: dict[str, Any] | None = None
    """The final mask (compressed RLE), for saved examples and predictions."""

    @property
    def size(self) -> str:
        return size_of(self.area)

    @property
    def scored(self) -> bool:
        """Counts in the metrics (prompted, or missed by the detector)."""
        return self.status in ("ok", "missed")

    @property
    def final(self) -> float:
        """IoU of the final mask (0 when missed)."""
        return self.ious[-1] if self.ious else 0.0

    def row(self, max_clicks: int | None) -> dict[str, Any]:
        """This instance's ``per_instance.csv`` row (``iou_<k>`` columns with
        ``max_clicks``)."""
        out: dict[str, Any] = {
            "image_id": self.image_id,
            "instance": self.index,
            "category_id": self.category_id,
            "area": self.area,
            "size": self.size,
            "status": self.status,
            "reason": self.reason,
            "iou": self.final if self.scored else None,
            "predicted_iou": self.predicted_ious[-1] if self.predicted_ious else None,
        }
        if self.oracle_iou is not None:
            out["iou_oracle"] = self.oracle_iou
        if self.box is not None or self.det_score is not None:
            out["box"] = self.box
        if self.det_score is not None or self.status == "missed":
            out["det_score"] = self.det_score
            out["det_box_iou"] = self.det_box_iou
        if max_clicks is not None:
            for t in NOC_THRESHOLDS:
                out[f"noc{_pct(t)}"] = noc(self.ious, t, max_clicks) if self.scored else None
            for k in range(1, max_clicks + 1):
                out[f"iou_{k}"] = self.ious[k - 1] if k <= len(self.ious) else None
            out["stopped_after"] = self.stopped
        if self.clicks:
            out["clicks"] = self.clicks
        return out


@dataclass
class ImagePrompted:
    """One job's prediction for one image."""

    mode: str
    instances: list[InstanceOutcome]
    n_prompts: int = 0
    decoder_s: float = 0.0
    n_unmatched_boxes: int | None = None
    note: str | None = None
    detector_boxes: list[list[float]] | None = None
    """Every detector box prompted (matched or not), for the prompt fingerprint."""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the per-item log of a resumable job)."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> ImagePrompted:
        """The inverse of :meth:`to_json`."""
        fields = dict(data)
        fields["instances"] = [InstanceOutcome(**o) for o in fields.get("instances") or []]
        return ImagePrompted(**fields)


class PromptedEvaluator:
    """Aggregates :class:`ImagePrompted` outcomes (the IoUs were measured by the task, which
    needs them to place the next click); see the module docstring for the definitions."""

    name = "prompted"

    def __init__(self, mode: str, max_clicks: int, detector: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.max_clicks = max_clicks
        self.detector = detector
        self.reset()

    def reset(self) -> None:
        self.outcomes: list[InstanceOutcome] = []
        self.n_prompts = 0
        self.decoder_s = 0.0
        self.unmatched = 0

    def process(self, sample: Sample, prediction: ImagePrompted) -> dict[str, Any]:
        scored = [o for o in prediction.instances if o.scored]
        self.outcomes.extend(prediction.instances)
        self.n_prompts += prediction.n_prompts
        self.decoder_s += prediction.decoder_s
        self.unmatched += prediction.n_unmatched_boxes or 0
        row: dict[str, Any] = {
            "n_prompted": sum(o.status == "ok" for o in prediction.instances),
            "n_skipped": sum(o.status == "skipped" for o in prediction.instances),
            "n_prompts": prediction.n_prompts,
            "miou_prompted": float(np.mean([o.final for o in scored])) if scored else math.nan,
            "decoder_ms_per_prompt": (
                1000.0 * prediction.decoder_s / prediction.n_prompts
                if prediction.n_prompts
                else math.nan
            ),
            "note": prediction.note,
        }
        if self.detector:
            row["n_missed"] = sum(o.status == "missed" for o in prediction.instances)
            row["n_unmatched_boxes"] = prediction.n_unmatched_boxes
        return row

    def evaluate(self) -> dict[str, float]:
        scored = [o for o in self.outcomes if o.scored]
        out: dict[str, float] = {
            "miou_prompted": _mean([o.final for o in scored]),
            **{
                f"miou_prompted_{s}": _mean([o.final for o in scored if o.size == s]) for s in SIZES
            },
        }
        if self.mode == "click":
            out["miou_click"] = _mean([o.final for o in scored])
            out["miou_click_oracle"] = _mean(
                [o.oracle_iou for o in scored if o.oracle_iou is not None]
            )
        elif self.mode == "box":
            out["miou_box"] = _mean([o.final for o in scored])
            if self.detector:
                out["box_recall"] = _mean([float(o.status == "ok") for o in scored])
                out["n_unmatched_boxes"] = float(self.unmatched)
        else:
            k_max = self.max_clicks
            for k in range(1, k_max + 1):
                out[f"miou_clicks_{k}"] = _mean([_at(o.ious, k) for o in scored])
            for t in NOC_THRESHOLDS:
                out[f"noc{_pct(t)}"] = _mean([float(noc(o.ious, t, k_max)) for o in scored])
                out[f"nof{_pct(t)}"] = float(sum(fails(o.ious, t, k_max) for o in scored))
        out["n_prompted"] = float(sum(o.status == "ok" for o in self.outcomes))
        out["n_skipped"] = float(sum(o.status == "skipped" for o in self.outcomes))
        out["n_prompts"] = float(self.n_prompts)
        out["decoder_ms_per_prompt"] = (
            1000.0 * self.decoder_s / self.n_prompts if self.n_prompts else math.nan
        )
        return out


def _at(ious: list[float], k: int) -> float:
    """IoU after click ``k`` (the last one when the instance stopped earlier)."""
    if not ious:
        return 0.0
    return ious[min(k, len(ious)) - 1]


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan
