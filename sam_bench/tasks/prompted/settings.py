"""The prompted task's settings (``prompt.*``), registered as the ``prompt`` section of the
root config schema (:data:`sam_bench.registry._SETTINGS`): the same keys as before, so every
``config_id`` is unchanged. The video task reads ``prompt.mode`` from the same section (one
name for one idea).

Imported by the config schema: no torch, no sam2 here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sam_bench.config import Config, check_choice, check_min, check_unit
from sam_bench.errors import ConfigError

#: The protocols ``task=prompted`` takes (``prompt.mode``).
MODES = ("click", "box", "clicks")
#: ``prompt.mode: null`` for ``task=prompted``.
DEFAULT_MODE = "click"

#: ``prompt.decoder`` values: sam2's mask decoder computed as sam2 orders its sums, or with the
#: image-side products factored (:mod:`sam_bench.engines.factored_decoder`).
DECODERS = ("factored", "exact")

#: Every ``prompt.mode`` some task takes (each task checks its own: ``prompted`` takes
#: ``click`` / ``box`` / ``clicks``, ``video`` takes ``mask`` / ``click`` / ``box``).
PROMPT_MODES = ("click", "box", "clicks", "mask")


@dataclass
class PromptConfig:
    """Prompts derived from ground truth (``prompt.*``), for ``task=prompted`` and
    ``task=video`` (one name for one idea). Owned by those tasks' modules; the prompted
    task's protocols are documented in :mod:`sam_bench.tasks.prompted.task`."""

    mode: str | None = None
    """Prompt kind; ``null``: the task's default (``prompted``: ``click``; ``video``:
    ``mask``). ``prompted``: ``click`` (one positive click at the point farthest from the
    instance's boundary, 3 masks, highest predicted IoU kept), ``box`` (the tight ground-truth
    box, or a detector's with ``prompt.boxes``) or ``clicks`` (iterative clicks, RITM /
    SimpleClick protocol); ``video``: ``mask``, ``click`` or ``box``."""
    max_clicks: int = 20
    """``clicks``: clicks per instance (NoC counts this when an IoU is never reached)."""
    first_multimask: bool = True
    """``clicks``: the first click asks for 3 masks and keeps the one with the highest
    predicted IoU (as ``click`` does); ``false``: one mask. Later clicks always ask for one."""
    feed_logits: bool = True
    """``clicks``: the previous click's low-res logits (256x256, clamped to +-32 as
    ``SAM2ImagePredictor.predict`` returns them) go back in as ``mask_input``."""
    box_jitter: float = 0.0
    """``box`` (ground-truth boxes): seeded Gaussian jitter of each box side, its standard
    deviation this fraction of the box's width (x sides) or height (y sides); 0: tight boxes."""
    boxes: str | None = None
    """``box``: a COCO results JSON of the user's detector boxes (a list of ``image_id``,
    ``bbox`` [x, y, w, h], ``score``), matched to ground truth by box IoU, instead of the
    ground-truth boxes. Relative paths are taken from the directory the command was launched
    from. Every detection is prompted (that is the pipeline's cost); unmatched ground truth
    counts as missed (IoU 0)."""
    box_match_iou: float = 0.5
    """``prompt.boxes``: a detection matches a ground-truth instance when their box IoU is
    >= this (greedy by descending score, as COCO matches detections)."""
    box_min_score: float = 0.0
    """``prompt.boxes``: detections scoring below this are dropped before anything else."""
    batch_size: int = 16
    """Prompts (instances) per mask-decoder call; speed and memory only (a prompt alone and
    in a batch differ by ~1e-7 in the logits)."""
    decoder: str = "factored"
    """``task=prompted``, batches of 2 or more prompts on the CPU in fp32: ``factored`` (the
    first layer's image projections once per batch, or from 16-channel mask features for
    mask inputs, the other image-side products re-associated, the upscaling as per-pixel
    matrix products: fewer operations, logits within ~1e-5 of sam2's, masks IoU >= 0.999) or
    ``exact`` (bit-identical to ``SAM2ImagePredictor.predict`` on the same batch). On CUDA
    and in bf16 both run sam2's order of operations."""

    def __post_init__(self) -> None:
        if self.mode is not None:
            check_choice("prompt.mode", self.mode, PROMPT_MODES)
        check_min("prompt.max_clicks", self.max_clicks, 1)
        check_min("prompt.box_jitter", self.box_jitter, 0.0)
        if math.isnan(self.box_jitter):
            raise ConfigError("prompt.box_jitter", "must be a number, got nan")
        if self.boxes is not None and not str(self.boxes).strip():
            raise ConfigError("prompt.boxes", "must be a file path or null, got an empty string")
        check_unit("prompt.box_match_iou", self.box_match_iou)
        if math.isnan(self.box_min_score):
            raise ConfigError("prompt.box_min_score", "must be a number, got nan")
        check_min("prompt.batch_size", self.batch_size, 1)
        check_choice("prompt.decoder", self.decoder, DECODERS)

    def describe(self) -> str:
        """The job's prompt protocol in a few words (the dry-run line of ``task=prompted``)."""
        mode = self.mode or DEFAULT_MODE
        if mode == "clicks":
            return f"prompt.mode=clicks (max {self.max_clicks} clicks)"
        if mode == "box":
            src = f"detector boxes {self.boxes}" if self.boxes else f"jitter {self.box_jitter}"
            return f"prompt.mode=box ({src})"
        return "prompt.mode=click"


def decoder_used(device_type: str, dtype: str, decoder: str, runtime: str = "eager") -> str:
    """What decodes a batch of several prompts (``task_info.decoder`` of the record), as
    :class:`~sam_bench.tasks.prompted.decoder.PromptDecoder` chooses it: on a
    ``model.runtime`` other than ``eager``, the runtime's own mask decoder."""
    if runtime != "eager":
        return f"model.runtime={runtime} (its mask decoder, called as SAM2ImagePredictor does)"
    if device_type != "cpu":
        return "sam2"
    if decoder == "factored" and dtype == "fp32":
        return "factored (CPU, fp32: logits within ~1e-5 of sam2's)"
    return "sliced (CPU, bit-identical to sam2's)"


def prompt_of(cfg: Config) -> PromptConfig:
    """The job's ``prompt`` section (a field of the composed config's root schema)."""
    settings: PromptConfig = getattr(cfg, "prompt")  # noqa: B009 (not on Config: mypy)
    return settings


def mode_of(cfg: Config) -> str:
    """The job's protocol (``prompt.mode``, ``null`` meaning ``click``)."""
    return prompt_of(cfg).mode or DEFAULT_MODE
