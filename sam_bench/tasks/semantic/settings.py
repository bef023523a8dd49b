"""The settings of ``task=semantic`` (``semantic.*``): which CLIP labels SAM 2's masks, what
it sees of each mask, and how labelled masks are painted into a class map. Registered as the
``semantic`` section of the root config (:data:`sam_bench.registry._SETTINGS`); the AMG
settings the task also uses are the ``amg`` section's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from sam_bench.config import check_choice, check_min, check_unit
from sam_bench.errors import ConfigError


@dataclass
class SemanticConfig:
    """SAM 2 masks labelled by CLIP (``semantic.*``), for ``task=semantic``. Owned by that
    task's package (:mod:`sam_bench.tasks.semantic`; backends: :mod:`sam_bench.clip`)."""

    backend: str = "open_clip"
    """CLIP implementation: ``open_clip`` or ``transformers`` (Hugging Face)."""
    clip_model: str = "ViT-B-32"
    """``open_clip``: a model name (``open_clip.list_models()``), ``local-dir:/path`` or
    ``hf-hub:org/repo``; ``transformers``: a hub id (``openai/clip-vit-base-patch32``) or a
    local folder written by ``save_pretrained`` (model, tokenizer, image processor)."""
    clip_pretrained: str | None = None
    """``open_clip`` only: a pretrained tag (``openai``, ``laion2b_s34b_b79k``...) or a local
    checkpoint file. ``null``: ``openai`` where open_clip has it for the model, else the
    model's first tag. Must be ``null`` for ``transformers`` (the model names its weights)."""
    clip_weights: str = "pretrained"
    """``pretrained`` or ``random`` (the architecture untrained, deterministic from ``seed``;
    every record then says UNTRAINED and names CLIP)."""
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])
    """Prompt templates; ``{}`` marks where a class name goes (exactly once). Several
    templates are averaged per class (CLIP's prompt ensembling)."""
    synonyms: str = "mean"
    """How the names of a class (``3 Road | street`` in the class list) combine: ``mean``
    (one embedding per class: the mean over names and templates) or ``max`` (a crop's class
    score is its best name's)."""
    crop: str = "blank"
    """What CLIP sees of a mask: ``box`` (its box as it is), ``blank`` (the box, pixels
    outside the mask set to the CLIP mean colour) or ``blur`` (the box, pixels outside the
    mask blurred)."""
    padding: float = 0.1
    """Margin added to each side of the mask's box, as a fraction of the box's width (left,
    right) and height (top, bottom)."""
    square: bool = True
    """Grow the crop to a square about its centre, so CLIP's centre crop cuts nothing of the
    mask off."""
    blur_sigma: float = 8.0
    """``crop=blur``: Gaussian sigma in pixels of the image."""
    batch_size: int = 32
    """Crops per CLIP image-encoder call (speed / memory only)."""
    min_confidence: float = 0.0
    """Masks whose best class has a softmax probability below this are labelled
    "unlabelled" and claim no pixel. In [0, 1]."""
    overlap: str = "iou"
    """Which mask a pixel covered by several labelled masks takes its class from: ``iou``
    (the highest predicted IoU; ties: the smaller mask) or ``area`` (the smallest mask; ties:
    the higher predicted IoU)."""

    def describe(self, cfg: Any) -> str:
        """The AMG preset and its grid, CLIP, its weights, the crop and the overlap rule (a dry
        run's words on the job, after ``engine=``; ``cfg``: the job's config)."""
        amg = getattr(cfg, "amg")  # noqa: B009  (the AMG task's section)
        p = amg.points_per_side
        weights = "random" if self.clip_weights == "random" else (self.clip_pretrained or "default")
        return (
            f"amg={amg.name} ({f'{p}x{p}' if p else 'custom grid'}) "
            f"clip={self.backend}:{self.clip_model} ({weights}) crop={self.crop} "
            f"overlap={self.overlap}"
        )

    def __post_init__(self) -> None:
        p = "semantic."
        check_choice(p + "backend", self.backend, ("open_clip", "transformers"))
        check_choice(p + "clip_weights", self.clip_weights, ("pretrained", "random"))
        check_choice(p + "synonyms", self.synonyms, ("mean", "max"))
        check_choice(p + "crop", self.crop, ("box", "blank", "blur"))
        check_choice(p + "overlap", self.overlap, ("iou", "area"))
        check_unit(p + "min_confidence", self.min_confidence)
        check_min(p + "padding", self.padding, 0.0)
        check_min(p + "blur_sigma", self.blur_sigma, 0.0, strict=True)
        check_min(p + "batch_size", self.batch_size, 1)
        if self.clip_model != MISSING and not str(self.clip_model).strip():
            raise ConfigError(p + "clip_model", "must name a model, got an empty string")
        if self.templates != MISSING:
            if not self.templates:
                raise ConfigError(p + "templates", "needs at least one template")
            for t in self.templates:
                if str(t).count("{}") != 1:
                    raise ConfigError(
                        p + "templates", f"each template needs exactly one {{}}, got {t!r}"
                    )
