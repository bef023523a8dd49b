"""Settings of ``task=video``: the ``video.*`` section (:class:`VideoConfig`, registered as a
settings section in :mod:`sam_bench.registry`, so the composed config keeps the ``video`` key)
and how the task reads the ``prompt.mode`` it shares with ``task=prompted``.

``prompt.*`` is not this package's section: the task reads ``prompt.mode`` (and refuses the
prompted task's box options) from the composed config by name, so it needs no import of the
prompted task's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sam_bench.config import check_min
from sam_bench.errors import ConfigError

#: ``prompt.mode`` values the video task takes (see :mod:`sam_bench.tasks.video.task`).
MODES = ("mask", "click", "box")
#: What ``prompt.mode=null`` means for the video task.
DEFAULT_MODE = "mask"

#: ``video.*`` settings that change no result (left out of ``config_id``).
OUTPUT_ONLY = ("save_overlay",)


@dataclass
class VideoConfig:
    """``SAM2VideoPredictor`` settings (``video.*``), for ``task=video``. Owned by that task's
    package (:mod:`sam_bench.tasks.video`)."""

    offload_video_to_cpu: bool = False
    """``init_state(offload_video_to_cpu=...)``: keep the decoded frames in CPU memory (saves
    GPU memory; no effect on the CPU)."""
    offload_state_to_cpu: bool = False
    """``init_state(offload_state_to_cpu=...)``: keep the tracking state (memories, masks) in
    CPU memory (saves GPU memory at some fps)."""
    apply_postprocessing: bool = False
    """``build_sam2_video_predictor(apply_postprocessing=...)``: dynamic multimask via
    stability, binarised click masks in the memory encoder and ``fill_hole_area=8``.
    ``tools/vos_inference.py`` (the official DAVIS evaluation) uses ``false``."""
    non_overlap_masks: bool = True
    """The predictor's ``non_overlap_masks``: at most one object per pixel in every output
    frame (``vos_inference.py`` sets it for DAVIS-style PNGs). With ``false`` objects may
    overlap; the saved and scored label maps then give a pixel to the lowest object id."""
    fill_hole_area: int | None = None
    """The predictor's ``fill_hole_area``: fill holes up to this area (pixels of the 256x256
    low-res masks) in every output mask. ``null``: sam2's value for the build (8 with
    ``apply_postprocessing``, else 0). sam2 does it only with its CUDA extension and skips it
    silently otherwise; sam_bench supplies the same connected-components step on the CPU
    (OpenCV), so the setting means the same everywhere (``task_info.cc_impl``)."""
    vos_optimized: bool = False
    """``SAM2VideoPredictorVOS``: ``torch.compile`` of every module (max-autotune). Allowed on
    CUDA only (refused on the CPU)."""
    score_thresh: float = 0.0
    """Mask logits above this are the object (``vos_inference.py --score_thresh``)."""
    warmup_frames: int = 3
    """Frames of the untimed warm-up propagation (on the first sequence that works, from its
    first prompt frame), when ``warmup=true``."""
    save_overlay: bool = False
    """Write ``overlays/<sequence>.mp4`` (an animated GIF where OpenCV cannot write mp4): the
    predicted masks over the frames, for a person to watch."""

    def __post_init__(self) -> None:
        check_min("video.fill_hole_area", self.fill_hole_area, 0)
        check_min("video.warmup_frames", self.warmup_frames, 2)
        if math.isnan(self.score_thresh):
            raise ConfigError("video.score_thresh", "must be a number, got nan")

    def effective_fill_hole_area(self) -> int:
        """The predictor's effective ``fill_hole_area`` (``null``: sam2's build default)."""
        if self.fill_hole_area is not None:
            return int(self.fill_hole_area)
        return 8 if self.apply_postprocessing else 0

    def describe(self, cfg: Any) -> str:
        """The dry-run words of a video job (``cfg``: the job's config, for ``prompt.mode``)."""
        return (
            f"prompt={prompt_mode(cfg)} non_overlap_masks={self.non_overlap_masks} "
            f"apply_postprocessing={self.apply_postprocessing} "
            f"fill_hole_area={self.effective_fill_hole_area()}"
        )


def video_settings(cfg: Any) -> VideoConfig:
    """The ``video`` section of a job's config (typed)."""
    settings: VideoConfig = getattr(cfg, "video")  # noqa: B009  (a registered section)
    return settings


def prompt_mode(cfg: Any) -> str:
    """``prompt.mode``, ``null`` meaning the video task's default (``mask``)."""
    return getattr(getattr(cfg, "prompt", None), "mode", None) or DEFAULT_MODE


def fill_hole_area(cfg: Any) -> int:
    """The predictor's effective ``fill_hole_area`` (``null``: sam2's build default)."""
    return video_settings(cfg).effective_fill_hole_area()
