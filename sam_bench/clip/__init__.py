"""CLIP backends: image and text embeddings for zero-shot labelling (``task=semantic``).

Two backends, chosen by ``semantic.backend``:

* ``open_clip`` (:mod:`sam_bench.clip.open_clip_backend`): ``semantic.clip_model`` is an
  open_clip model name (``ViT-B-32``, ``ViT-S-32``, ...; ``open_clip.list_models()``), or
  ``local-dir:/path`` / ``hf-hub:org/repo`` (open_clip's own schemas);
  ``semantic.clip_pretrained`` a pretrained tag (``openai``, ``laion2b_s34b_b79k``, ...;
  ``null``: ``openai`` where open_clip has it for the model, else its first tag) or a local
  checkpoint file. open_clip ships its tokenizer vocabulary, so untrained models
  (``semantic.clip_weights=random``) run offline.
* ``transformers`` (:mod:`sam_bench.clip.hf_backend`): ``semantic.clip_model`` is a Hugging
  Face hub id (``openai/clip-vit-base-patch32``) or a local folder holding what
  ``save_pretrained`` writes for the model, its tokenizer and its image processor
  (``config.json``, weights, ``tokenizer.json`` / ``vocab.json`` + ``merges.txt``,
  ``preprocessor_config.json``). Any model with ``get_text_features`` /
  ``get_image_features`` (CLIP, SigLIP) works. With ``clip_weights=random`` only the config,
  tokenizer and image processor files are read.

``semantic.clip_weights=random`` builds the architecture with freshly initialised weights
(deterministic from ``seed``); every record of such a job says UNTRAINED and names CLIP.
Weights that are neither on disk nor downloadable stop the job with one message
(:class:`ClipUnavailable`) saying where to put them. Relative paths are taken from the
directory the command was launched from.

Every backend returns L2-normalised float32 embeddings and uses its model's own image
preprocessing (resize, centre crop, normalisation) and tokenizer.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from sam_bench.errors import SamBenchError

log = logging.getLogger(__name__)

BACKENDS = ("open_clip", "transformers")


class ClipSettings(Protocol):
    """What the backends read of a CLIP choice (``task=semantic``'s ``semantic.*`` section,
    :class:`sam_bench.tasks.semantic.settings.SemanticConfig`)."""

    @property
    def backend(self) -> str: ...
    @property
    def clip_model(self) -> str: ...
    @property
    def clip_pretrained(self) -> str | None: ...
    @property
    def clip_weights(self) -> str: ...


class ClipUnavailable(SamBenchError):
    """CLIP weights (or the files a backend needs) are not on disk and cannot be fetched."""


def unavailable(cfg: ClipSettings, what: str, reason: str) -> ClipUnavailable:
    """The one message a user sees when CLIP cannot be built (no traceback)."""
    first = str(reason).strip().splitlines()[0] if str(reason).strip() else "unknown reason"
    if cfg.backend == "open_clip":
        where = (
            "  - give a local checkpoint file: semantic.clip_pretrained=/path/to/"
            "open_clip_pytorch_model.bin (or semantic.clip_model=local-dir:/path/to/folder)"
        )
    else:
        where = (
            "  - give a local folder written by save_pretrained (model, tokenizer and image "
            "processor): semantic.clip_model=/path/to/folder"
        )
    return ClipUnavailable(
        f"CLIP {what} for {cfg.backend} {cfg.clip_model!r} not available: {first}\n"
        f"{where}\n"
        "  - or, with network, let the backend download it once (it is cached)\n"
        "  - measure speed only, with an untrained CLIP: semantic.clip_weights=random"
    )


@dataclass
class ClipInfo:
    """What CLIP a job used (``task_info.clip``)."""

    backend: str
    model: str
    """``semantic.clip_model`` as given."""
    pretrained: str | None
    """The resolved tag, checkpoint file or folder the weights came from; ``None``: random."""
    weights: str
    """``pretrained`` or ``random``."""
    state_dict_hash: str
    """:func:`sam_bench.models.checkpoints.state_dict_hash` of the weights used."""
    image_size: int
    """Side of the square image the model takes."""
    embed_dim: int
    logit_scale: float
    """The model's learned temperature (``exp(logit_scale)``) applied before the softmax."""
    n_params: int

    @property
    def untrained(self) -> bool:
        return self.weights == "random"

    @property
    def label(self) -> str:
        """E.g. ``open_clip ViT-B-32 (openai)`` or ``open_clip ViT-B-32 (random weights)``."""
        what = "random weights" if self.untrained else str(self.pretrained)
        return f"{self.backend} {self.model} ({what})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "untrained": self.untrained, "label": self.label}


class ClipBackend(Protocol):
    """A CLIP model ready to embed texts and images on one device."""

    info: ClipInfo
    mean_rgb: tuple[int, int, int]
    """The model's normalisation mean as 0-255 RGB: the fill colour of blanked backgrounds
    (it normalises to zero)."""

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, D) L2-normalised float32 embeddings, on the CPU."""
        ...

    def encode_images(self, images: list[np.ndarray]) -> torch.Tensor:
        """(N, D) L2-normalised float32 embeddings of HxWx3 uint8 RGB arrays (any sizes), on
        the CPU."""
        ...

    def close(self) -> None:
        """Drop the model."""
        ...


def clip_key(cfg: ClipSettings, seed: int) -> tuple[Any, ...]:
    """Jobs whose keys are equal use the same CLIP model (built once per group)."""
    return (cfg.backend, cfg.clip_model, cfg.clip_pretrained, cfg.clip_weights, seed)


def build_clip(
    cfg: ClipSettings, device: torch.device, seed: int, dtype: str = "fp32"
) -> ClipBackend:
    """The CLIP model ``cfg`` names, in eval mode on ``device``.

    Raises:
        ClipUnavailable: weights or needed files are missing and cannot be downloaded.
    """
    from sam_bench.quiet import hub_retries_once

    with hub_retries_once(f"CLIP {cfg.backend} {cfg.clip_model!r}"):
        if cfg.backend == "open_clip":
            from sam_bench.clip.open_clip_backend import OpenClipBackend

            return OpenClipBackend(cfg, device, seed, dtype)
        from sam_bench.clip.hf_backend import HFClipBackend

        return HFClipBackend(cfg, device, seed, dtype)


def check_clip(cfg: ClipSettings) -> None:
    """Fail early -- before any model is built -- when the CLIP weights or files ``cfg``
    needs are not available (downloads them where the backend can). Raises
    :class:`ClipUnavailable` or :class:`~sam_bench.errors.ConfigError`."""
    from sam_bench.quiet import hub_retries_once

    with hub_retries_once(f"CLIP {cfg.backend} {cfg.clip_model!r}"):
        if cfg.backend == "open_clip":
            from sam_bench.clip.open_clip_backend import resolve_weights

            resolve_weights(cfg)
        else:
            from sam_bench.clip.hf_backend import check_source

            check_source(cfg)


def hf_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` /
    ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm, as float32 on the CPU."""
    x = x.detach().float().cpu()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
