"""Model families served through Hugging Face ``transformers`` (``model=edgetam``,
``model=sam3_tracker``), exposed to sam_bench's tasks through sam2's own surface.

:func:`build_family_model` builds the family's transformers model (hub weights, or random
initialisation with the documented config of :mod:`.edgetam` / :mod:`.sam3_tracker`) and wraps
it in a ``SAM2Base`` shell (:mod:`.shell`) that sam2's ``SAM2ImagePredictor`` and
``SAM2AutomaticMaskGenerator`` drive unchanged. :func:`sam_bench.models.build.build_model`
dispatches here for these families and records the weights as for SAM 2 (random weights are
marked untrained).

Video: not supported. transformers' ``EdgeTamVideoModel`` / ``Sam3TrackerVideoModel`` keep
their own memory modules (EdgeTAM's spatial perceiver, SAM 3's memory encoder) behind their own
inference-session API; sam2's ``SAM2VideoPredictor`` would run sam2's memory attention and
memory encoder instead, which these checkpoints do not have, so :data:`VIDEO_UNSUPPORTED` is
raised for ``task=video``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sam_bench.config import ModelConfig
from sam_bench.errors import CheckpointUnavailable, SamBenchError
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.families import edgetam, sam3_tracker
from sam_bench.models.families.shell import build_shell
from sam_bench.models.image_predictor import fit_image_predictor

__all__ = [
    "FAMILIES",
    "VIDEO_UNSUPPORTED",
    "FamilyModel",
    "build_family_model",
    "fit_image_predictor",
]

#: ``model.family`` values built here.
FAMILIES = ("edgetam", "sam3_tracker")

VIDEO_UNSUPPORTED = (
    "model.family={family}: task=video is not supported (transformers' {family} video model "
    "keeps its own memory modules, which sam2's video predictor cannot drive); "
    "use a sam2 / sam2.1 model for video"
)


@dataclass
class FamilyModel:
    """A family model in its sam2 shell, and where its weights came from."""

    model: torch.nn.Module
    pretrained: bool
    source: str | None
    """Hub id or folder the weights came from (``None``: random init)."""
    fallback_reason: str | None = None
    """Why ``weights=auto`` fell back to random weights."""
    state_dict_hash: str | None = None
    """:func:`sam_bench.models.checkpoints.state_dict_hash` of the transformers model's state
    dict: the weights the shell runs (its unused sam2 memory modules are left out, so the hash
    of loaded weights does not depend on the seed); ``None``: hash ``model``'s state dict."""


_SPECS: dict[str, Any] = {"edgetam": edgetam, "sam3_tracker": sam3_tracker}


def _random(family: str) -> Any:
    return edgetam.random_edgetam() if family == "edgetam" else sam3_tracker.random_sam3_tracker()


def _pretrained(family: str, source: str) -> Any:
    load = (
        edgetam.pretrained_edgetam if family == "edgetam" else sam3_tracker.pretrained_sam3_tracker
    )
    try:
        return load(source)
    except Exception as e:  # offline, unknown id, wrong folder
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise CheckpointUnavailable(
            f"model.family={family}: cannot load transformers weights from {source!r} ({first})"
        ) from e


def build_family_model(cfg: ModelConfig, conf: Any, seed: int) -> FamilyModel:
    """Build ``cfg``'s family model in a ``SAM2Base`` shell instantiated from ``conf`` (the
    resolved sam2 model config of ``model.sam2_config``, post-processing overrides applied).

    Weights: ``model.checkpoint`` (a hub id or a ``save_pretrained`` folder), else the
    family's hub id (``model.checkpoint_file``); ``weights=random`` never loads, ``auto``
    falls back to random init when loading fails. Random init is deterministic from ``seed``.
    """
    if cfg.family not in _SPECS:
        raise SamBenchError(f"model.family={cfg.family!r} is not a transformers family")
    spec = _SPECS[cfg.family]
    hf: Any = None
    source: str | None = None
    fallback: str | None = None
    if cfg.weights in ("pretrained", "auto"):
        source = cfg.checkpoint or cfg.checkpoint_file or spec.HUB_ID
        try:
            hf = _pretrained(cfg.family, str(source))
        except CheckpointUnavailable as e:
            if cfg.weights == "pretrained":
                raise
            fallback, source = str(e), None
    if hf is None:
        torch.manual_seed(seed)
        hf = _random(cfg.family)
    model = build_shell(
        hf,
        conf,
        image_size=spec.IMAGE_SIZE,
        backbone_stride=spec.BACKBONE_STRIDE,
        pixel_mean=spec.PIXEL_MEAN,
        pixel_std=spec.PIXEL_STD,
    )
    return FamilyModel(
        model=model,
        pretrained=source is not None,
        source=source,
        state_dict_hash=state_dict_hash(hf.state_dict()),
        fallback_reason=fallback,
    )
