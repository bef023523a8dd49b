"""The files of a video job (:data:`sam_bench.tasks.video.outputs.OUTPUTS`): DAVIS palette
PNGs and SOURCE.json under ``predictions/`` (``save_predictions``), overlay videos
(``video.save_overlay``), ``per_sequence.csv``, ``per_frame.csv`` and the two figures; the
per-item log form of a sequence's prediction (resume); and the reader of saved PNGs
(``predictions=DIR``).

Resume: a finished sequence's prediction goes to the job's per-item log (every frame's masks as
COCO RLE per object, the per-frame propagation times), so ``resume=true`` reuses it with its
logged timing; its PNGs and overlay, written by the earlier run, are written again only where
missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.data.base import Dataset, Sample, VideoTruth
from sam_bench.metrics.base import Evaluator
from sam_bench.tasks.base import JobContext, Writer
from sam_bench.tasks.video import figures, outputs
from sam_bench.tasks.video.metrics import VideoEvaluator, VideoPrediction
from sam_bench.tasks.video.settings import fill_hole_area, prompt_mode, video_settings

log = logging.getLogger(__name__)


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


class VideoWriter(Writer):
    """Writes one video job's declared outputs (see the module docstring)."""

    def __init__(self, ctx: JobContext, *, live: bool = True) -> None:
        super().__init__(ctx, live=live)
        self.overlays: list[str] = []
        self.saved_pngs = 0
        self.frame_figures: list[tuple[str, str]] = []
        """(sequence, path relative to the job folder) of the frames figures drawn or kept."""

    # ------------------------------------------------------------------ per item

    def item(self, sample: Sample, inputs: Any, prediction: Any, saved: int) -> bool:
        written = self._write(sample, prediction, keep=False)
        if saved >= self.ctx.cfg.task.save_masks:
            return written
        self._frames_figure(sample, prediction, keep=False)
        return True

    def _frames_figure(self, sample: Sample, prediction: VideoPrediction, *, keep: bool) -> None:
        """The sequence's frames figure (first, middle, last frame); ``keep``: one an earlier
        run drew is kept."""
        seq = sample.ref.image_id
        path = outputs.frames_figure_path(self.ctx.job_dir, seq)
        if not (keep and path.is_file()):
            untrained = None if self.ctx.weights is None else self.ctx.weights.untrained
            if untrained is None:
                untrained = prediction.untrained
            figures.frames_figure(seq, _video(sample), prediction, path, untrained)
        self.frame_figures.append((seq, str(path.relative_to(self.ctx.job_dir))))

    def _write(self, sample: Sample, prediction: VideoPrediction, *, keep: bool) -> bool:
        """A sequence's PNGs (``save_predictions``) and overlay (``video.save_overlay``);
        ``keep``: files an earlier run wrote are kept (written only where missing). Returns
        whether an overlay was written or kept."""
        ctx = self.ctx
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
        if video_settings(ctx.cfg).save_overlay:
            path = outputs.overlay_path(ctx.job_dir, seq)
            found = [p for p in (path, path.with_suffix(".gif")) if p.is_file()] if keep else []
            written = found[0] if found else outputs.write_overlay(path, video.frames, prediction)
            self.overlays.append(str(written.relative_to(ctx.job_dir)))
            return True
        return False

    # ------------------------------------------------------------------ resume

    def encode(self, prediction: VideoPrediction) -> Any:
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

    def decode(self, data: Any) -> VideoPrediction:
        """The prediction :meth:`encode` wrote (scored again by the evaluators)."""
        times = data["frame_ms"]
        return VideoPrediction(
            labels=[None if f is None else decode_labels(f) for f in data["frames"]],
            frame_names=data.get("frame_names"),
            frame_ms=None if times is None else [None if t is None else float(t) for t in times],
            untrained=data.get("untrained"),
            notes=list(data.get("notes") or []),
        )

    def restore(self, sample: Sample, prediction: VideoPrediction) -> None:
        """A reused sequence: its PNGs and overlay, written by the earlier run, count again
        (written again from the decoded masks where they are missing)."""
        self._write(sample, prediction, keep=True)
        if len(self.frame_figures) < self.ctx.cfg.task.save_masks:  # as the earlier run did
            self._frames_figure(sample, prediction, keep=True)

    # ------------------------------------------------------------------ per job

    def finish(self, evaluator: Evaluator) -> dict[str, Any]:
        """``per_sequence.csv`` and ``per_frame.csv``; for a live job also
        ``predictions/SOURCE.json`` and the predictor's facts (``task_info``)."""
        ev = _video_evaluator(evaluator)
        info = outputs.write_tables(self.ctx.job_dir, ev, _untrained(self.ctx, ev))
        if not self.live:
            return info
        from sam_bench.models import connected_components

        ctx, cfg = self.ctx, self.ctx.cfg
        v = video_settings(cfg)
        predictor = ctx.model
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
            predictor=type(predictor).__name__,
            predictor_settings={
                "non_overlap_masks": bool(getattr(predictor, "non_overlap_masks", False)),
                "fill_hole_area": int(getattr(predictor, "fill_hole_area", 0)),
                "binarize_mask_from_pts_for_mem_enc": bool(
                    getattr(predictor, "binarize_mask_from_pts_for_mem_enc", False)
                ),
                "offload_video_to_cpu": v.offload_video_to_cpu,
                "offload_state_to_cpu": v.offload_state_to_cpu,
                "score_thresh": v.score_thresh,
            },
            cc_impl=connected_components.implementation(ctx.device) if fill > 0 else None,
            fill_hole_area_applied=fill > 0,
            warmup_frames=v.warmup_frames if cfg.warmup else 0,
            predictions_dir=outputs.PREDICTIONS_DIR if cfg.save_predictions else None,
            prediction_pngs=self.saved_pngs,
            overlays=list(self.overlays),
            dataset_info=dataset_info() if callable(dataset_info) else None,
        )
        return info

    def figures(self, evaluator: Evaluator) -> list[dict[str, str]]:
        ev = _video_evaluator(evaluator)
        untrained = _untrained(self.ctx, ev)
        note = f" -- {outputs.UNTRAINED_NOTE}" if untrained else ""
        frames = [
            {"path": path, "caption": f"{seq}: first, middle and last frame, ground truth | "
                                      f"prediction{note}"}
            for seq, path in self.frame_figures
        ]  # fmt: skip
        return [*frames, *figures.draw_figures(self.ctx.job_dir, ev, untrained)]

    @classmethod
    def read(cls, path: Path, dataset: Dataset) -> outputs.PredictionFolder:
        """A folder of DAVIS-format PNGs, ``<sequence>/<frame>.png`` (any tool's)."""
        return outputs.PredictionFolder(path, dataset)


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
