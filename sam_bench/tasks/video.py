"""Video object segmentation: ``SAM2VideoPredictor`` propagating first-frame prompts through
DAVIS-style sequences, scored with J and F (:mod:`sam_bench.metrics.video`).

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
propagated frame (:class:`~sam_bench.metrics.video.PropagationCost`). The untimed warm-up is a
short propagation: ``video.warmup_frames`` frames from the first prompt frame of the first
sequence that works.

Hole filling (``video.fill_hole_area``): sam2 fills holes only through its CUDA extension and
skips the step silently without it; sam_bench routes sam2's connected-components call to an
OpenCV step on the CPU (:mod:`sam_bench.models.connected_components`), recorded as
``task_info.cc_impl``. ``video.vos_optimized`` (``torch.compile`` of every module) is refused
on the CPU.

Outputs per job: ``per_sequence.csv``, ``per_frame.csv``, ``figures/`` (J&F per sequence, J over
frames); with ``save_predictions=true`` DAVIS-format PNGs under ``predictions/`` (which
``predictions=DIR`` scores again without a model, like any tool's PNGs); with
``video.save_overlay=true`` ``overlays/<sequence>.mp4``.

Resume: a finished sequence's prediction goes to the job's per-item log (every frame's masks as
COCO RLE per object, the per-frame propagation times), so ``resume=true`` reuses it with its
logged timing; its PNGs and overlay, written by the earlier run, are written again only where
missing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from sam_bench.config import Config
from sam_bench.data.base import Dataset, Sample, VideoTruth
from sam_bench.errors import ConfigError
from sam_bench.metrics.base import Evaluator, Evaluators
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.metrics.video import PropagationCost, VideoEvaluator, VideoPrediction, prompt_frames
from sam_bench.models.build import WeightsInfo
from sam_bench.tasks import video_outputs as outputs
from sam_bench.tasks.base import JobContext, Task, TaskSpec

log = logging.getLogger(__name__)

MODES = ("mask", "click", "box")
DEFAULT_MODE = "mask"


#: ``video.*`` settings that change no result (left out of ``config_id``).
OUTPUT_ONLY = ("save_overlay",)


def prompt_mode(cfg: Config) -> str:
    """``prompt.mode``, ``null`` meaning the video task's default (``mask``)."""
    return _prompt(cfg).mode or DEFAULT_MODE


def _prompt(cfg: Config) -> Any:
    """The ``prompt`` section (the prompted task's settings, read by the same keys here)."""
    return getattr(cfg, "prompt")  # noqa: B009 (not on Config: mypy)


def fill_hole_area(cfg: Config) -> int:
    """The predictor's effective ``fill_hole_area`` (``null``: sam2's build default)."""
    v = cfg.video
    if v.fill_hole_area is not None:
        return int(v.fill_hole_area)
    return 8 if v.apply_postprocessing else 0


# --------------------------------------------------------------------------------------------
# inputs


@dataclass
class Prompt:
    """One object's prompt on its first annotated frame."""

    obj: int
    frame: int
    mode: str
    mask: np.ndarray | None = None
    point: tuple[int, int] | None = None
    """``(x, y)`` pixel of a positive click."""
    box: tuple[float, float, float, float] | None = None
    """``(x0, y0, x1, y1)``."""

    def describe(self) -> str:
        if self.point is not None:
            return f"obj {self.obj}@{self.frame}: click {self.point}"
        if self.box is not None:
            return f"obj {self.obj}@{self.frame}: box {[round(v) for v in self.box]}"
        return f"obj {self.obj}@{self.frame}: mask"


def derive_prompts(video: VideoTruth, mode: str) -> list[Prompt]:
    """Each object's prompt (see the module docstring), by object id."""
    from sam_bench.prompts import first_click, tight_box

    out = []
    for obj, frame in sorted(prompt_frames(video).items()):
        mask = mask_utils.decode(video.masks[frame][obj]).astype(bool)
        if mode == "mask":
            out.append(Prompt(obj, frame, mode, mask=mask))
        elif mode == "click":
            click = first_click(mask)
            assert click is not None  # prompt frames have a non-empty mask
            out.append(Prompt(obj, frame, mode, point=(click.x, click.y)))
        elif mode == "box":
            box = tight_box(mask)
            assert box is not None
            out.append(Prompt(obj, frame, mode, box=tuple(float(v) for v in box)))  # type: ignore[arg-type]
        else:
            raise ConfigError("prompt.mode", f"{mode!r} is not one of {', '.join(MODES)}")
    return out


@dataclass
class VideoInput:
    """A sequence ready for the predictor: its frames linked into a folder it reads."""

    folder: Path
    frames: list[Path]
    height: int
    width: int
    prompts: list[Prompt]
    steps: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def link_frames(frames: list[Path], folder: Path) -> str:
    """Make ``folder/<index:05d>.jpg`` point to each frame (a symbolic link; a copy where links
    are not possible); returns how."""
    folder.mkdir(parents=True, exist_ok=True)
    how = "linked"
    for i, src in enumerate(frames):
        dst = folder / f"{i:05d}.jpg"
        try:
            os.symlink(src.resolve(), dst)
        except OSError:
            shutil.copyfile(src, dst)
            how = "copied"
    return how


def make_input(video: VideoTruth, frames: list[Path], prompts: list[Prompt]) -> VideoInput:
    """The frame folder (a temporary directory) for ``frames`` with ``prompts``."""
    folder = Path(tempfile.mkdtemp(prefix="sam_bench-video-"))
    how = link_frames(frames, folder)
    steps = [f"{len(frames)} frames {how} as 00000.jpg ... for sam2's JPEG-folder reader"]
    return VideoInput(folder, frames, video.height, video.width, prompts, steps)


# --------------------------------------------------------------------------------------------
# tracking


@contextlib.contextmanager
def sam2_progress(enabled: bool) -> Iterator[None]:
    """sam2's own progress bars (frame loading, propagation) on or off."""
    import sam2.sam2_video_predictor as vp
    import sam2.utils.misc as misc

    saved = (vp.tqdm, misc.tqdm)
    if not enabled:
        quiet = functools.partial(saved[0], disable=True)
        vp.tqdm = misc.tqdm = quiet  # type: ignore[assignment]
    try:
        yield
    finally:
        vp.tqdm, misc.tqdm = saved  # type: ignore[assignment]


def paint(logits: torch.Tensor, obj_ids: list[int], thresh: float) -> np.ndarray:
    """Per-object logits (N x 1 x H x W) as one label map (uint8, or int32 for ids over 255);
    a pixel of several objects goes to the lowest id."""
    masks = (logits[:, 0] > thresh).cpu().numpy()
    wide = bool(obj_ids) and max(obj_ids) > 255
    labels = np.zeros(masks.shape[1:], dtype=np.int32 if wide else np.uint8)
    for i in sorted(range(len(obj_ids)), key=lambda k: obj_ids[k], reverse=True):
        labels[masks[i]] = obj_ids[i]
    return labels


def track(
    predictor: Any,
    inputs: VideoInput,
    cfg: Config,
    device: torch.device,
    times: StageTimes,
    *,
    progress: bool = False,
) -> VideoPrediction:
    """Prompt and propagate one sequence (see the module docstring), filling ``times``."""
    from sam_bench.engines.base import autocast

    v = cfg.video
    clock = Clock(device)
    n = len(inputs.frames)
    labels: list[np.ndarray | None] = [None] * n
    frame_ms: list[float | None] = [None] * n
    starts = sorted({p.frame for p in inputs.prompts})
    prompted_at: dict[int, set[int]] = {}
    for p in inputs.prompts:
        prompted_at.setdefault(p.frame, set()).add(p.obj)
    bar = tqdm(total=n - starts[0], desc="frames", unit="frame", disable=not progress, leave=False)
    with torch.inference_mode(), autocast(device, cfg.dtype), sam2_progress(False):
        t0 = clock.now()
        state = predictor.init_state(
            str(inputs.folder),
            offload_video_to_cpu=v.offload_video_to_cpu,
            offload_state_to_cpu=v.offload_state_to_cpu,
        )
        times.add("init", clock.now() - t0)
        try:
            for k, start in enumerate(starts):
                t0 = clock.now()
                for p in inputs.prompts:
                    if p.frame == start:
                        _add_prompt(predictor, state, p)
                times.add("prompt", clock.now() - t0)
                end = starts[k + 1] - 1 if k + 1 < len(starts) else n - 1
                gen = predictor.propagate_in_video(
                    state, start_frame_idx=start, max_frame_num_to_track=end - start
                )
                last = clock.now()
                for frame_idx, obj_ids, logits in gen:
                    labels[frame_idx] = paint(logits, list(obj_ids), v.score_thresh)
                    now = clock.now()
                    times.add("propagation", now - last)
                    if set(obj_ids) - prompted_at.get(frame_idx, set()):
                        frame_ms[frame_idx] = (now - last) * 1000.0
                    last = now
                    bar.update(1)
        finally:
            predictor.reset_state(state)
            del state
            bar.close()
    return VideoPrediction(labels=labels, frame_ms=frame_ms)


def _add_prompt(predictor: Any, state: Any, p: Prompt) -> None:
    if p.mask is not None:
        predictor.add_new_mask(state, frame_idx=p.frame, obj_id=p.obj, mask=p.mask)
    elif p.point is not None:
        predictor.add_new_points_or_box(
            state, frame_idx=p.frame, obj_id=p.obj,
            points=np.array([p.point], dtype=np.float32), labels=np.array([1], np.int32),
        )  # fmt: skip
    else:
        predictor.add_new_points_or_box(
            state, frame_idx=p.frame, obj_id=p.obj, box=np.array(p.box, dtype=np.float32)
        )


# --------------------------------------------------------------------------------------------
# label maps in the per-item log (resume)


def encode_labels(labels: np.ndarray) -> dict[str, Any]:
    """One frame's label map as JSON: its shape, dtype and a COCO RLE (str counts) per object
    id present; :func:`decode_labels` gives the same array back."""
    objects = []
    for obj in np.unique(labels).tolist():
        if obj == 0:
            continue
        rle = mask_utils.encode(np.asfortranarray(labels == obj, dtype=np.uint8))
        objects.append([int(obj), rle["counts"].decode("ascii")])
    return {"size": [int(v) for v in labels.shape], "dtype": labels.dtype.str, "objects": objects}


def decode_labels(data: dict[str, Any]) -> np.ndarray:
    """The label map :func:`encode_labels` wrote."""
    size = [int(v) for v in data["size"]]
    labels = np.zeros(size, dtype=np.dtype(data["dtype"]))
    for obj, counts in data["objects"]:
        mask = mask_utils.decode({"size": size, "counts": counts.encode("ascii")})
        labels[mask.astype(bool)] = obj
    return labels


# --------------------------------------------------------------------------------------------
# the task


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
        per_s="sequences_per_s",
    )  # fmt: skip

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        if len(jobs) != 1:
            raise ValueError("the video task computes one job at a time")
        if self.lead.model is None:
            raise ValueError("VideoTask needs a model (saved predictions are scored by a replay)")
        self.predictor: Any = self.lead.model
        self.evaluators: dict[int, Evaluator] = {}
        self.overlays: list[str] = []
        self.saved_pngs = 0

    # ------------------------------------------------------------------ class-level hooks

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
        if _prompt(cfg).box_jitter:
            raise ConfigError("prompt.box_jitter", "task=video prompts with tight boxes only")
        if _prompt(cfg).boxes:
            raise ConfigError("prompt.boxes", "task=video derives boxes from the ground truth")
        if cfg.model.apply_postprocessing:
            raise ConfigError(
                "model.apply_postprocessing",
                "is the image model's option; task=video uses video.apply_postprocessing",
            )

    @classmethod
    def build_model(cls, cfg: Config, device: torch.device) -> tuple[torch.nn.Module, WeightsInfo]:
        """``SAM2VideoPredictor`` with the ``video.*`` settings
        (:func:`sam_bench.models.build.build_video_model`)."""
        from sam_bench.models import connected_components
        from sam_bench.models.build import build_video_model

        if cfg.video.vos_optimized and device.type != "cuda":
            raise ConfigError(
                "video.vos_optimized",
                f"compiles every module with torch.compile (max-autotune) and is allowed on CUDA "
                f"only; this job runs on {device.type}",
            )
        connected_components.install()
        return build_video_model(cfg.model, cfg.video, device, cfg.seed, progress=cfg.progress)

    @classmethod
    def describe(cls, cfg: Config) -> str:
        v = cfg.video
        return (
            f"prompt={prompt_mode(cfg)} non_overlap_masks={v.non_overlap_masks} "
            f"apply_postprocessing={v.apply_postprocessing} fill_hole_area={fill_hole_area(cfg)}"
        )

    @classmethod
    def read_predictions(cls, path: Path, dataset: Dataset) -> Any:
        """A folder of DAVIS-format PNGs, ``<sequence>/<frame>.png`` (any tool's)."""
        return outputs.PredictionFolder(path, dataset)

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        return Evaluators([VideoEvaluator(), PropagationCost()])

    def evaluator(self, job: int) -> Evaluator:
        ev = self.evaluator_for(self.jobs[job])
        self.evaluators[job] = ev
        return ev

    # ------------------------------------------------------------------ per item

    def prepare(self, sample: Sample) -> tuple[Any, list[str]]:
        video = _video(sample)
        prompts = derive_prompts(video, prompt_mode(self.lead.cfg))
        inputs = make_input(video, video.frames, prompts)
        notes = list(getattr(video, "notes", []))
        return inputs, [*notes, *inputs.steps]

    def describe_input(self, sample: Sample, inputs: Any) -> dict[str, Any]:
        video = _video(sample)
        return {
            "height": video.height,
            "width": video.width,
            "prompts": "; ".join(p.describe() for p in getattr(inputs, "prompts", [])),
        }

    def warmup(self, sample: Sample, inputs: Any) -> None:
        """A short propagation: ``video.warmup_frames`` frames from the first prompt frame."""
        assert isinstance(inputs, VideoInput)
        try:
            video = _video(sample)
            start = min(p.frame for p in inputs.prompts)
            stop = min(start + self.lead.cfg.video.warmup_frames, len(inputs.frames))
            prompts = [
                Prompt(p.obj, p.frame - start, p.mode, p.mask, p.point, p.box)
                for p in inputs.prompts
                if start <= p.frame < stop
            ]
            short = make_input(video, inputs.frames[start:stop], prompts)
            try:
                track(self.predictor, short, self.lead.cfg, self.lead.device, StageTimes())
            finally:
                short.cleanup()
        finally:
            inputs.cleanup()

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        assert isinstance(inputs, VideoInput)
        (t,) = times
        ctx = self.lead
        try:
            prediction = track(
                self.predictor, inputs, ctx.cfg, ctx.device, t, progress=ctx.cfg.progress
            )
        finally:
            inputs.cleanup()
        prediction.untrained = ctx.weights.untrained if ctx.weights is not None else None
        return [prediction]

    def save(
        self, job: int, sample: Sample, inputs: Any, prediction: VideoPrediction, saved: int
    ) -> bool:
        return self._write_outputs(job, sample, prediction, keep=False)

    def _write_outputs(
        self, job: int, sample: Sample, prediction: VideoPrediction, *, keep: bool
    ) -> bool:
        """A sequence's PNGs (``save_predictions``) and overlay (``video.save_overlay``);
        ``keep``: files an earlier run wrote are kept (written only where missing). Returns
        whether an overlay was written or kept."""
        ctx = self.jobs[job]
        video = _video(sample)
        seq = sample.ref.image_id
        if ctx.cfg.save_predictions:
            out = ctx.job_dir / outputs.PREDICTIONS_DIR
            names = video.frame_names
            if keep and all((out / seq / f"{name}.png").is_file() for name in names):
                self.saved_pngs += len(names)
            else:
                if keep:
                    log.info("resume: PNGs of %s missing under %s; writing them again", seq, out)
                self.saved_pngs += outputs.save_sequence_pngs(
                    out, seq, names, prediction, (video.height, video.width)
                )
        if ctx.cfg.video.save_overlay:
            path = ctx.job_dir / outputs.OVERLAYS_DIR / f"{seq}.mp4"
            found = [p for p in (path, path.with_suffix(".gif")) if p.is_file()] if keep else []
            written = found[0] if found else outputs.write_overlay(path, video.frames, prediction)
            self.overlays.append(str(written.relative_to(ctx.job_dir)))
            return True
        return False

    # ------------------------------------------------------------------ resume

    def encode(self, job: int, prediction: VideoPrediction) -> Any:
        """The sequence's prediction as JSON for the per-item log (``resume=true`` reuses it):
        every frame's label map as one COCO RLE per object id, and the per-frame propagation
        times (``fps`` and ``frame_latency_ms_*`` of a reused sequence are the logged ones)."""
        frames = [None if labels is None else encode_labels(labels) for labels in prediction.labels]
        return {
            "frames": frames,
            "frame_names": prediction.frame_names,
            "frame_ms": prediction.frame_ms,
            "untrained": prediction.untrained,
            "notes": list(prediction.notes),
        }

    def decode(self, job: int, data: Any) -> VideoPrediction:
        """The prediction :meth:`encode` wrote (scored again by the evaluators)."""
        times = data["frame_ms"]
        return VideoPrediction(
            labels=[None if f is None else decode_labels(f) for f in data["frames"]],
            frame_names=data.get("frame_names"),
            frame_ms=None if times is None else [None if t is None else float(t) for t in times],
            untrained=data.get("untrained"),
            notes=list(data.get("notes") or []),
        )

    def restore(self, job: int, sample: Sample, prediction: VideoPrediction) -> None:
        """A reused sequence: its PNGs and overlay, written by the earlier run, count again
        (written again from the decoded masks where they are missing)."""
        self._write_outputs(job, sample, prediction, keep=True)

    # ------------------------------------------------------------------ per job

    @classmethod
    def finish_scores(cls, ctx: JobContext, evaluator: Evaluator) -> dict[str, Any]:
        ev = _video_evaluator(evaluator)
        return outputs.write_tables(ctx.job_dir, ev, _untrained(ctx, ev))

    @classmethod
    def score_figures(cls, ctx: JobContext, evaluator: Evaluator) -> list[dict[str, str]]:
        ev = _video_evaluator(evaluator)
        return outputs.draw_figures(ctx.job_dir, ev, _untrained(ctx, ev))

    def finish(self, job: int) -> dict[str, Any]:
        from sam_bench.models import connected_components

        ctx = self.jobs[job]
        cfg = ctx.cfg
        info = self.finish_scores(ctx, self.evaluators[job])
        if cfg.save_predictions:
            w = ctx.weights
            outputs.write_source(
                ctx.job_dir / outputs.PREDICTIONS_DIR,
                {"tool": "sam_bench", "task": "video", "model": cfg.model.name,
                 "weights": None if w is None else w.label,
                 "untrained": None if w is None else w.untrained,
                 "prompt_mode": prompt_mode(cfg)},
            )  # fmt: skip
        dataset_info = getattr(ctx.dataset, "info", None)
        fill = fill_hole_area(cfg)
        info.update(
            prompt_mode=prompt_mode(cfg),
            predictor=type(self.predictor).__name__,
            predictor_settings={
                "non_overlap_masks": bool(getattr(self.predictor, "non_overlap_masks", False)),
                "fill_hole_area": int(getattr(self.predictor, "fill_hole_area", 0)),
                "binarize_mask_from_pts_for_mem_enc": bool(
                    getattr(self.predictor, "binarize_mask_from_pts_for_mem_enc", False)
                ),
                "offload_video_to_cpu": cfg.video.offload_video_to_cpu,
                "offload_state_to_cpu": cfg.video.offload_state_to_cpu,
                "score_thresh": cfg.video.score_thresh,
            },
            cc_impl=connected_components.implementation(ctx.device) if fill > 0 else None,
            fill_hole_area_applied=fill > 0,
            warmup_frames=cfg.video.warmup_frames if cfg.warmup else 0,
            predictions_dir=outputs.PREDICTIONS_DIR if cfg.save_predictions else None,
            prediction_pngs=self.saved_pngs,
            overlays=list(self.overlays),
            dataset_info=dataset_info() if callable(dataset_info) else None,
        )
        return info

    def figures(self, job: int) -> list[dict[str, str]]:
        return self.score_figures(self.jobs[job], self.evaluators[job])

    def close(self) -> None:
        self.predictor = None
        self.evaluators = {}
        super().close()


def _video(sample: Sample) -> VideoTruth:
    if sample.video is None:
        raise ValueError(f"item {sample.ref.image_id} is not a video")
    return sample.video


def _video_evaluator(evaluator: Evaluator) -> VideoEvaluator:
    parts = getattr(evaluator, "evaluators", [evaluator])
    for e in parts:
        if isinstance(e, VideoEvaluator):
            return e
    raise TypeError("the video task's evaluator has no VideoEvaluator")


def _untrained(ctx: JobContext, ev: VideoEvaluator) -> bool | None:
    if ctx.weights is not None:
        return ctx.weights.untrained
    return ev.untrained
