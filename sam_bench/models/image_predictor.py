"""sam2's official ``SAM2ImagePredictor`` fitted to the model it serves.

sam2 hard-codes the feature sizes of a 1024-pixel input (256, 128, 64) in the predictor; a
family shell at another input size (SAM 3 tracker: 1008 -> 288, 144, 72) carries its own in
``bb_feat_sizes`` (:mod:`sam_bench.models.families.shell`). Every place sam_bench builds an
image predictor (or an automatic mask generator, through ``generator.predictor``) goes through
here, so every model family runs the official classes unchanged.
"""

from __future__ import annotations

from typing import Any

import torch


def fit_image_predictor(predictor: Any) -> Any:
    """Give ``predictor`` (a ``SAM2ImagePredictor``) its model's feature sizes when the model
    declares them (``bb_feat_sizes``); a no-op for sam2's own models. Returns ``predictor``."""
    sizes = getattr(predictor.model, "bb_feat_sizes", None)
    if sizes is not None:
        predictor._bb_feat_sizes = [tuple(s) for s in sizes]
    return predictor


def image_predictor(model: torch.nn.Module, **kwargs: Any) -> Any:
    """``SAM2ImagePredictor(model, **kwargs)`` fitted to ``model``."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    return fit_image_predictor(SAM2ImagePredictor(model, **kwargs))
