"""Catalogue entries of a job on a ``model.runtime`` other than ``eager``: the seconds spent
preparing it and its agreement with eager PyTorch (computed by
:mod:`sam_bench.models.agreement`; definitions in docs/metrics.md, "Runtimes"). Eager jobs
record none of them."""

from __future__ import annotations

from sam_bench.metrics.catalogue import Metric, declare

declare(
    Metric(
        "prepare_s", "lower", "prepare s",
        "model.runtime other than eager: seconds spent exporting / compiling / converting the "
        "model for its runtime (with torch.compile, the first compilation, in a warm-up call), "
        "kept out of every timed stage",
        unit="s", kind="cost", fmt="{:.1f}",
    ),
    Metric(
        "agreement_embed_max_abs", "lower", "embed max|d|",
        "max over the first model.agreement_items items of max |runtime - eager| over the "
        "image embedding",
        kind="info", fmt="{:.3g}",
    ),
    Metric(
        "agreement_embed_rel_l2", "lower", "embed rel L2",
        "max over the compared items of ||runtime - eager||_2 / ||eager||_2 of the image "
        "embedding",
        kind="info", fmt="{:.3g}",
    ),
    Metric(
        "agreement_logits_max_abs", "lower", "logits max|d|",
        "max over the compared items of max |runtime - eager| over the low-res mask logits "
        "of the same prompts (clamped to +-32 as SAM2ImagePredictor.predict returns them)",
        kind="info", fmt="{:.3g}",
    ),
    Metric(
        "agreement_mask_iou_min", "higher", "mask IoU min",
        "min over every mask of the compared items of its IoU with the eager mask of the "
        "same prompt and output (two empty masks: 1)",
        kind="info", fmt="{:.4f}",
    ),
    Metric(
        "agreement_mask_iou_mean", "higher", "mask IoU mean",
        "mean over every mask of the compared items of its IoU with the eager mask of the "
        "same prompt and output",
        kind="info", fmt="{:.4f}",
    ),
)  # fmt: skip
