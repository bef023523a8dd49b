"""Automatic mask generation: per image, preprocess -> AMG engine -> instance metrics.

Timing per image is split into ``preprocess`` / ``encoder`` / ``decoder`` / ``postprocess`` /
``metrics``; ``latency_ms`` (what a SAM 2 user pays) is the sum of the first four. Reading the
file from disk is not timed. With ``warmup=true`` an extra untimed pass runs on the first
image, so every image of the dataset is timed. A bad image is recorded with its path and
reason and the job goes on.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from sam_bench.data.base import GroundTruth
from sam_bench.engines import MaskRecord, build_engine
from sam_bench.errors import SampleError
from sam_bench.metrics.cost import STAGES, Clock, GpuPeak, StageTimes, latency_summary
from sam_bench.metrics.instance import InstanceEvaluator
from sam_bench.preprocess import to_model_input
from sam_bench.record import write_json
from sam_bench.tasks.base import JobContext, TaskResult

log = logging.getLogger(__name__)

MASKS_DIR = "masks"
PREDICTIONS_FILE = "predictions.json"


def prompts_per_image(ctx: JobContext) -> int:
    """Point prompts the grid sends to the decoder per image (all crop layers)."""
    amg = ctx.cfg.amg
    total = 0
    for layer in range(amg.crop_n_layers + 1):
        if amg.point_grids is not None:
            per_crop = len(amg.point_grids[layer])
        else:
            side = int(amg.points_per_side / (amg.crop_n_points_downscale_factor**layer))  # type: ignore[operator]
            per_crop = side * side
        total += per_crop * (2**layer) ** 2
    return total


def prediction_entries(image_id: str, masks: list[MaskRecord]) -> list[dict[str, Any]]:
    """COCO-results-style entries (``segmentation`` RLE with str counts) for one image."""
    return [
        {
            "image_id": image_id,
            "category_id": 1,
            "segmentation": {"size": list(m.rle["size"]), "counts": _counts_str(m.rle["counts"])},
            "score": m.predicted_iou,
            "predicted_iou": m.predicted_iou,
            "stability_score": m.stability_score,
            "area": m.area,
            "bbox": m.bbox,
            "point_coords": m.point_coords,
            "crop_box": m.crop_box,
        }
        for m in masks
    ]


class AMGTask:
    """Benchmark of the automatic mask generator on a labelled instance dataset."""

    name = "amg"

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.clock = Clock(ctx.device)
        self.gpu = GpuPeak(ctx.device)
        self.engine = build_engine(ctx.model, ctx.cfg, ctx.device)

    def _warmup(self) -> None:
        """One untimed pass on the first image that loads (nothing is recorded)."""
        for ref in self.ctx.refs:
            try:
                sample = self.ctx.dataset.load(ref)
                image, _ = to_model_input(sample.raw, self.ctx.cfg.preprocess)
            except SampleError:
                continue
            self.engine.generate(image, StageTimes())
            return

    def run(self) -> TaskResult:
        ctx = self.ctx
        cfg = ctx.cfg
        if cfg.warmup:
            self._warmup()
        evaluator = InstanceEvaluator()
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        predictions: list[dict[str, Any]] = []
        saved = 0
        bar = tqdm(ctx.refs, desc="images", unit="img", disable=not cfg.progress, leave=False)
        for ref in bar:
            row: dict[str, Any] = {"image_id": ref.image_id, "path": str(ref.path)}
            times = StageTimes()
            try:
                sample = ctx.dataset.load(ref)
                with times.measure("preprocess", self.clock):
                    image, steps = to_model_input(sample.raw, cfg.preprocess)
                row.update(
                    height=image.shape[0],
                    width=image.shape[1],
                    stored_as=sample.raw.mode,
                    conversion="; ".join([*sample.raw.notes, *steps]),
                )
                self.gpu.reset()
                masks = self.engine.generate(image, times)
                row["gpu_peak_mb"] = self.gpu.peak_mb()
                with times.measure("metrics", self.clock):
                    row.update(
                        evaluator.process(
                            ref.image_id,
                            [m.rle for m in masks],
                            [m.predicted_iou for m in masks],
                            sample.gt,
                        )
                    )
                if cfg.save_predictions or saved < cfg.task.save_masks:
                    entries = prediction_entries(ref.image_id, masks)
                    if saved < cfg.task.save_masks:
                        self._save_masks(ref.image_id, ref.path, image, sample.gt, entries)
                        saved += 1
                    if cfg.save_predictions:
                        predictions.extend(entries)
                row.update(times.ms())
                row["error"] = None
            except Exception as e:  # one image must never sink the job
                reason = e.reason if isinstance(e, SampleError) else f"{type(e).__name__}: {e}"
                log.error("image %s (%s) failed: %s", ref.image_id, ref.path, reason)
                row["error"] = reason
                errors.append({"image_id": ref.image_id, "path": str(ref.path), "error": reason})
            rows.append(row)
        if cfg.save_predictions:
            write_json(ctx.job_dir / PREDICTIONS_FILE, {"predictions": predictions})
        ok = [r for r in rows if r.get("error") is None]
        metrics = evaluator.evaluate() if ok else {}
        metrics.update(latency_summary([r["latency_ms"] for r in ok]))
        for stage in STAGES:
            vals = [r[f"{stage}_ms"] for r in ok]
            metrics[f"{stage}_ms_mean"] = float(np.mean(vals)) if vals else float("nan")
        gpu = [r["gpu_peak_mb"] for r in ok if np.isfinite(r["gpu_peak_mb"])]
        metrics["peak_gpu_mem_mb"] = max(gpu) if gpu else float("nan")
        metrics["n_images_ok"] = len(ok)
        metrics["n_image_errors"] = len(errors)
        info = {
            "engine": cfg.engine,
            "cc_impl": self.engine.cc_impl,
            "min_mask_region_area_applied": cfg.amg.min_mask_region_area > 0,
            "prompts_per_image": prompts_per_image(ctx),
        }
        return TaskResult(rows=rows, metrics=metrics, image_errors=errors, info=info)

    def _save_masks(
        self,
        image_id: str,
        path: Path,
        image: np.ndarray,
        gt: GroundTruth,
        entries: list[dict[str, Any]],
    ) -> None:
        """``masks/<id>.json`` (predicted + ground-truth RLEs) and ``masks/<id>.png`` (the model
        input), so overlays can be drawn from the sweep directory alone."""
        out = self.ctx.job_dir / MASKS_DIR
        stem = safe_name(image_id)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / f"{stem}.png")
        gt_entries = [
            {"segmentation": {"size": list(r["size"]), "counts": _counts_str(r["counts"])},
             "iscrowd": bool(c)}
            for r, c in zip(gt.rles, gt.iscrowd, strict=True)
        ]  # fmt: skip
        write_json(
            out / f"{stem}.json",
            {
                "image_id": image_id,
                "path": str(path),
                "image_file": f"{stem}.png",
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "masks": entries,
                "ground_truth": gt_entries,
            },
        )


def _counts_str(counts: bytes | str) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def safe_name(image_id: str) -> str:
    """A file-name-safe version of an image id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id) or "_"
