"""Video object segmentation: ``SAM2VideoPredictor`` propagating first-frame prompts through
DAVIS-style sequences, scored with J and F (:mod:`sam_bench.tasks.video.metrics`).

Protocol (as sam2's ``tools/vos_inference.py`` drives the predictor for DAVIS): the predictor is
built with ``apply_postprocessing=False`` and ``non_overlap_masks=True`` by default (both
``video.*`` settings, recorded); every object is tracked under its own id and prompted once,
on its first annotated frame where its mask is not empty, with ``prompt.mode``:

* ``mask`` (the default, ``prompt.mode=null``): the ground-truth mask (``add_new_mask``);
* ``click``: one positive click at the mask's point farthest from its boundary
  (:func:`sam_bench.prompts.first_click`; ``add_new_points_or_box``);
* ``box``: the mask's tight box ``[x0, y0, x1, y1]``, ``x1``/``y1`` one past the last pixel
  (:func:`sam_bench.prompts.tight_box`; ``add_new_points_or_box(box=...)``).

Objects prompted on frame 0 are propagated forward through the sequence in one pass. An object
that first appears later (YouTube-VOS style) is added when the propagation reaches its frame:
the video is propagated up to the frame before, the new object is prompted there, and
propagation goes on from that frame with every object (sam2 1.1 accepts new objects after
tracking started). A frame's mask is ``logits > video.score_thresh`` per object, painted into
one label map (a pixel overlapped by several objects goes to the lowest id, as
``vos_inference.py`` paints them).

Stages (the runner adds ``metrics``): ``preprocess`` (the frame folder the predictor reads:
links named ``00000.jpg`` ... to the sequence's JPEGs, and the prompts derived from the ground
truth), ``init`` (``init_state``: frames read, resized and normalised, image features of frame
0), ``prompt`` (every ``add_new_mask`` / ``add_new_points_or_box``), ``propagation``
(``propagate_in_video``, masks to the CPU). ``fps`` and ``frame_latency_ms_*`` time each
propagated frame (:class:`~sam_bench.tasks.video.metrics.PropagationCost`). The untimed warm-up is a
short propagation: ``video.warmup_frames`` frames from the first prompt frame of the first
sequence that works; with ``video.vos_optimized`` at least enough frames to fill the memory
bank and the object-pointer window, so ``torch.compile`` runs there, not in the timed frames
(compilation that still happens in a timed sequence is recorded apart and kept out of the
times: :mod:`sam_bench.tasks.video.compile`).

Hole filling (``video.fill_hole_area``): sam2 fills holes only through its CUDA extension and
skips the step silently without it; sam_bench routes sam2's connected-components call to an
OpenCV step on the CPU (:mod:`sam_bench.models.connected_components`), recorded as
``task_info.cc_impl``. ``video.vos_optimized`` (``torch.compile`` of every module) is refused
on the CPU.

Outputs per job (declared in :data:`sam_bench.tasks.video.outputs.OUTPUTS`, written by
:class:`~sam_bench.tasks.video.writer.VideoWriter`): ``per_sequence.csv``, ``per_frame.csv``,
``figures/`` (J&F per sequence, J over frames); with ``save_predictions=true`` DAVIS-format PNGs
under ``predictions/`` (which ``predictions=DIR`` scores again without a model, like any tool's
PNGs); with ``video.save_overlay=true`` ``overlays/<sequence>.mp4``. Resume: a finished
sequence's prediction goes to the job's per-item log and ``resume=true`` reuses it with its
logged timing (see :mod:`sam_bench.tasks.video.writer`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from sam_bench.config import Config
from sam_bench.data.base import Dataset, Sample, VideoTruth
from sam_bench.errors import ConfigError
from sam_bench.metrics.base import Evaluator, Evaluators
from sam_bench.metrics.cost import StageTimes
from sam_bench.models.agreement import AgreementCase, grid_case
from sam_bench.models.build import WeightsInfo
from sam_bench.tasks.base import JobContext, Task, TaskSpec
from sam_bench.tasks.video.compile import CompileWatch, warmup_frames
from sam_bench.tasks.video.inputs import Prompt, VideoInput, derive_prompts, make_input
from sam_bench.tasks.video.metrics import PropagationCost, VideoEvaluator
from sam_bench.tasks.video.outputs import OUTPUTS
from sam_bench.tasks.video.settings import (
    DEFAULT_MODE,
    MODES,
    OUTPUT_ONLY,
    prompt_mode,
    video_settings,
)
from sam_bench.tasks.video.tracking import track
from sam_bench.tasks.video.writer import VideoWriter


class VideoTask(Task):
    """Semi-supervised video object segmentation with ``SAM2VideoPredictor``."""

    spec: ClassVar[TaskSpec] = TaskSpec(
        name="video",
        metrics=("jf", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay",
                 "fps", "frame_latency_ms_mean", "frame_latency_ms_p50",
                 "frame_latency_ms_p90", "n_sequences", "n_objects", "n_frames_scored",
                 "n_frames_propagated"),
        headline=("jf", "j_mean", "f_mean", "fps", "frame_latency_ms_p50",
                  "frame_latency_ms_p90", "peak_gpu_mem_mb", "peak_rss_mb"),
        objective="jf",
        pareto=("frame_latency_ms_p50", "jf"),
        stages=("preprocess", "init", "prompt", "propagation"),
        own_stages=(),
        needs="video",
        sections=("prompt", "video"),
        described=("video",),
        per_s="sequences_per_s",
        outputs=OUTPUTS,
    )  # fmt: skip
    writer = VideoWriter

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        if len(jobs) != 1:
            raise ValueError("the video task computes one job at a time")
        if self.lead.model is None:
            raise ValueError("VideoTask needs a model (saved predictions are scored by a replay)")
        self.predictor: Any = self.lead.model
        self.on_close(self._drop_predictor)
        # the prompt helpers (OpenCV, scipy) are imported now, not in the first sequence's
        # timed ``preprocess`` stage
        import sam_bench.prompts  # noqa: F401

    def _drop_predictor(self) -> None:
        self.predictor = None

    # ------------------------------------------------------------------ class-level

    @classmethod
    def identity_settings(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``prompt.mode`` (``null`` written as ``mask``; no other prompt setting applies)
        and the ``video`` settings but ``save_overlay`` (an output for a person to watch)."""
        video = {k: v for k, v in (config.get("video") or {}).items() if k not in OUTPUT_ONLY}
        mode = (config.get("prompt") or {}).get("mode") or DEFAULT_MODE
        return {"prompt": {"mode": mode}, "video": video}

    @classmethod
    def check(cls, cfg: Config, dataset: Dataset | None = None) -> None:
        super().check(cfg, dataset)
        mode = prompt_mode(cfg)
        if mode not in MODES:
            raise ConfigError(
                "prompt.mode", f"task=video takes {', '.join(MODES)} (null: mask), got {mode!r}"
            )
        prompt = getattr(cfg, "prompt", None)
        if getattr(prompt, "box_jitter", None):
            raise ConfigError("prompt.box_jitter", "task=video prompts with tight boxes only")
        if getattr(prompt, "boxes", None):
            raise ConfigError("prompt.boxes", "task=video derives boxes from the ground truth")
        if cfg.model.apply_postprocessing:
            raise ConfigError(
                "model.apply_postprocessing",
                "is the image model's option; task=video uses video.apply_postprocessing",
            )

    @classmethod
    def build_model(cls, cfg: Config, device: torch.device) -> tuple[torch.nn.Module, WeightsInfo]:
        """``SAM2VideoPredictor`` with the ``video.*`` settings
        (:func:`sam_bench.models.build.build_video_model`; for ``model=edgetam`` /
        ``sam3_tracker`` the family's transformers video model behind the same calls)."""
        from sam_bench.models import connected_components
        from sam_bench.models.build import build_video_model

        video = video_settings(cfg)
        if video.vos_optimized and device.type != "cuda":
            raise ConfigError(
                "video.vos_optimized",
                f"compiles every module with torch.compile (max-autotune) and is allowed on CUDA "
                f"only; this job runs on {device.type}",
            )
        if video.vos_optimized and cfg.model.runtime != "eager":
            raise ConfigError(
                "video.vos_optimized",
                f"compiles sam2's own modules and cannot be combined with model.runtime="
                f"{cfg.model.runtime} (use model.runtime=compile alone)",
            )
        connected_components.install()
        return build_video_model(cfg.model, video, device, cfg.seed, progress=cfg.progress)

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        return Evaluators([VideoEvaluator(), PropagationCost()])

    @classmethod
    def agreement_case(cls, cfg: Config, sample: Sample) -> AgreementCase | None:
        """The sequence's first frame with the point grid
        (:func:`~sam_bench.models.agreement.grid_case`): the components a runtime replaces
        (image encoder, prompt encoder, mask decoder) compared on the first frame."""
        import numpy as np
        from PIL import Image

        video = _video(sample)
        if not video.frames:
            return None
        with Image.open(video.frames[0]) as im:
            image = np.asarray(im.convert("RGB"))
        return grid_case(image)

    # ------------------------------------------------------------------ per item

    def prepare(self, sample: Sample) -> tuple[Any, list[str]]:
        video = _video(sample)
        prompts = derive_prompts(video, prompt_mode(self.lead.cfg))
        inputs = make_input(video, video.frames, prompts)
        notes = list(getattr(video, "notes", []))
        return inputs, [*notes, *inputs.steps]

    def warmup(self, sample: Sample, inputs: Any) -> dict[str, Any]:
        """A short propagation from the first prompt frame: ``video.warmup_frames`` frames, or
        with ``video.vos_optimized`` enough to compile every shape
        (:func:`~sam_bench.tasks.video.compile.warmup_frames`); returns the frames and the
        compilation it did (``task_info.warmup``)."""
        assert isinstance(inputs, VideoInput)
        v = video_settings(self.lead.cfg)
        watch = CompileWatch() if v.vos_optimized else None
        try:
            video = _video(sample)
            start = min(p.frame for p in inputs.prompts)
            wanted = warmup_frames(v.warmup_frames, v.vos_optimized, self.predictor)
            stop = min(start + wanted, len(inputs.frames))
            prompts = [
                Prompt(p.obj, p.frame - start, p.mode, p.mask, p.point, p.box)
                for p in inputs.prompts
                if start <= p.frame < stop
            ]
            short = make_input(video, inputs.frames[start:stop], prompts)
            try:
                track(self.predictor, short, self.lead.cfg, self.lead.device, StageTimes(),
                      watch=watch)  # fmt: skip
            finally:
                short.cleanup()
        finally:
            inputs.cleanup()
        info: dict[str, Any] = {"frames": stop - start}
        if watch is not None:
            info.update(compile_s=watch.seconds, n_compiles=watch.count)
        return info

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        assert isinstance(inputs, VideoInput)
        (t,) = times
        ctx = self.lead
        try:
            prediction = track(
                self.predictor, inputs, ctx.cfg, ctx.device, t, progress=ctx.cfg.progress,
                watch=CompileWatch() if video_settings(ctx.cfg).vos_optimized else None,
            )  # fmt: skip
        finally:
            inputs.cleanup()
        prediction.untrained = ctx.weights.untrained if ctx.weights is not None else None
        return [prediction]


def _video(sample: Sample) -> VideoTruth:
    if sample.video is None:
        raise ValueError(f"item {sample.ref.image_id} is not a video")
    return sample.video
