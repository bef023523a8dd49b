"""Agreement of a runtime with eager PyTorch (the ``agreement_*`` metrics, docs/metrics.md).

For each of a job's first ``model.agreement_items`` items, one :class:`AgreementCase` (an RGB
image and a batch of prompts the task chooses: a point grid for AMG and semantic, one box per
ground-truth instance for prompted, the first frame's grid for video) is run through sam2's
official ``SAM2ImagePredictor`` on the eager reference (sam2's eager modules holding the
weights the runtime ran: :func:`sam_bench.models.runtimes.apply.eager_reference`) and on the
runtime's model (:func:`compare_case`), and :func:`aggregate` reduces the cases to the
recorded metrics:

* ``agreement_embed_max_abs``: max over items of max |runtime - eager| over the image
  embedding (``_features["image_embed"]``, 256 x 64 x 64);
* ``agreement_embed_rel_l2``: max over items of ||runtime - eager||_2 / ||eager||_2 of the
  image embedding;
* ``agreement_logits_max_abs``: max over items of max |runtime - eager| over the low-res mask
  logits ``predict`` returns for the same prompts (clamped to +-32, as it returns them);
* ``agreement_mask_iou_min`` / ``agreement_mask_iou_mean``: IoU of each full-resolution mask
  (logits > 0) with the eager mask of the same prompt and output slot, min / mean over every
  mask of every compared item; two empty masks have IoU 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Points per side of the grid prompts (:func:`grid_case`): 16 clicks, 3 masks each.
GRID_POINTS_PER_SIDE = 4

#: The metrics :func:`aggregate` returns (declared in :mod:`sam_bench.metrics.runtime`).
METRICS = (
    "agreement_embed_max_abs",
    "agreement_embed_rel_l2",
    "agreement_logits_max_abs",
    "agreement_mask_iou_min",
    "agreement_mask_iou_mean",
)


@dataclass
class AgreementCase:
    """One image and the prompts both models decode (``SAM2ImagePredictor.predict``'s
    arguments, in pixels of the image)."""

    image: np.ndarray
    """H x W x 3 uint8 RGB."""
    point_coords: np.ndarray | None = None
    """B x N x 2 (x, y)."""
    point_labels: np.ndarray | None = None
    """B x N (1 foreground, 0 background)."""
    boxes: np.ndarray | None = None
    """B x 4 XYXY."""
    multimask_output: bool = True
    what: str = ""
    """How the prompts were chosen (recorded)."""


def grid_case(image: np.ndarray, points_per_side: int = GRID_POINTS_PER_SIDE) -> AgreementCase:
    """A grid of single-click prompts over ``image`` (sam2's ``build_point_grid``, as the
    automatic mask generator places them), three masks each."""
    from sam2.utils.amg import build_point_grid

    h, w = image.shape[:2]
    grid = build_point_grid(points_per_side) * np.array([w, h], dtype=np.float64)
    return AgreementCase(
        image=image,
        point_coords=grid[:, None, :].astype(np.float32),
        point_labels=np.ones((len(grid), 1), dtype=np.int64),
        multimask_output=True,
        what=f"{points_per_side}x{points_per_side} point grid, multimask",
    )


def box_case(image: np.ndarray, masks: list[np.ndarray]) -> AgreementCase | None:
    """One box prompt per mask (its bounding box), one mask each; ``None`` without masks."""
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        if len(xs):
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    if not boxes:
        return None
    return AgreementCase(
        image=image,
        boxes=np.asarray(boxes, dtype=np.float32),
        multimask_output=False,
        what=f"{len(boxes)} instance boxes",
    )


@dataclass
class CaseAgreement:
    """What :func:`compare_case` measured on one case."""

    embed_max_abs: float
    embed_rel_l2: float
    logits_max_abs: float
    mask_ious: list[float] = field(default_factory=list)


def _run(model: torch.nn.Module, case: AgreementCase) -> tuple[torch.Tensor, np.ndarray, Any]:
    from sam_bench.models.image_predictor import image_predictor

    predictor = image_predictor(model)
    with torch.inference_mode():
        predictor.set_image(case.image)
        embed = predictor._features["image_embed"].detach().float().cpu()
        masks, _, low_res = predictor.predict(
            point_coords=case.point_coords,
            point_labels=case.point_labels,
            box=case.boxes,
            multimask_output=case.multimask_output,
            return_logits=True,
        )
    predictor.reset_predictor()
    return embed, np.asarray(masks) > 0.0, np.asarray(low_res, dtype=np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1 when both are empty."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def compare_case(
    reference: torch.nn.Module, candidate: torch.nn.Module, case: AgreementCase
) -> CaseAgreement:
    """Run ``case`` on both models (eager ``reference``, runtime ``candidate``) and compare."""
    ref_embed, ref_masks, ref_logits = _run(reference, case)
    embed, masks, logits = _run(candidate, case)
    diff = (embed - ref_embed).double()
    norm = float(ref_embed.double().norm())
    ious = [
        mask_iou(m, r)
        for m, r in zip(
            masks.reshape(-1, *masks.shape[-2:]), ref_masks.reshape(-1, *ref_masks.shape[-2:]),
            strict=True,
        )
    ]  # fmt: skip
    return CaseAgreement(
        embed_max_abs=float(diff.abs().max()),
        embed_rel_l2=float(diff.norm()) / norm if norm > 0 else math.nan,
        logits_max_abs=float(np.abs(logits - ref_logits).max()),
        mask_ious=ious,
    )


def aggregate(cases: list[CaseAgreement]) -> dict[str, float]:
    """The ``agreement_*`` metrics of the compared cases (see the module doc); NaN when no
    case was compared."""
    if not cases:
        return dict.fromkeys(METRICS, math.nan)
    ious = [i for c in cases for i in c.mask_ious]
    return {
        "agreement_embed_max_abs": max(c.embed_max_abs for c in cases),
        "agreement_embed_rel_l2": max(c.embed_rel_l2 for c in cases),
        "agreement_logits_max_abs": max(c.logits_max_abs for c in cases),
        "agreement_mask_iou_min": min(ious) if ious else math.nan,
        "agreement_mask_iou_mean": float(np.mean(ious)) if ious else math.nan,
    }
