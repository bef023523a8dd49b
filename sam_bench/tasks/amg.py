"""Automatic mask generation: per image, preprocess -> AMG engine -> instance metrics.

Timing per image is split into ``preprocess`` / ``encoder`` / ``decoder`` / ``postprocess`` /
``metrics``; ``latency_ms`` (what a SAM 2 user pays) is the sum of the first four. Reading the
file from disk is not timed. With ``warmup=true`` an extra untimed pass runs on the first
image, so every image of the dataset is timed. A bad image is recorded with its path and
reason and the job goes on.

With ``cache.dir`` set (``engine=fast``), encoder outputs come from / go to the on-disk
encoder cache (:mod:`sam_bench.engines.encoder_cache`); the warm-up pass bypasses it. Stage
times and ``latency_ms`` stay what the configuration costs without a cache; ``marginal_ms``
is the time actually spent.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from sam_bench.data.base import GroundTruth, ImageRef
from sam_bench.engines import GroupEngine, MaskRecord, build_group_engine
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
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


class _Member:
    """One job of a (possibly grouped) run: its evaluator, rows and outputs."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.evaluator = InstanceEvaluator()
        self.rows: list[dict[str, Any]] = []
        self.errors: list[dict[str, str]] = []
        self.predictions: list[dict[str, Any]] = []
        self.saved = 0

    def fail(self, row: dict[str, Any], ref: ImageRef, reason: str) -> None:
        row["error"] = reason
        self.errors.append({"image_id": ref.image_id, "path": str(ref.path), "error": reason})
        self.rows.append(row)


class AMGTask:
    """Benchmark of the automatic mask generator on a labelled instance dataset.

    Runs one job, or a group of jobs that share everything but AMG post-processing
    (:meth:`run_group`): then each image is read, preprocessed, encoded and decoded once, and
    every job post-processes the shared candidates (see :mod:`sam_bench.engines.fast`).
    """

    name = "amg"

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx

    def run(self) -> TaskResult:
        return self.run_group([self.ctx])[0]

    @staticmethod
    def run_group(ctxs: list[JobContext]) -> list[TaskResult]:
        """Run jobs that share model, data, preprocessing and decoder candidates."""
        lead = ctxs[0]
        clock = Clock(lead.device)
        gpu = GpuPeak(lead.device)
        cache = open_encoder_cache(ctxs)
        engine = build_group_engine(lead.model, [c.cfg for c in ctxs], lead.device, cache)
        members = [_Member(c) for c in ctxs]
        if lead.cfg.warmup:
            with cache.suspended() if cache is not None else contextlib.nullcontext():
                _warmup(lead, engine, len(members))
        desc = "images" if len(members) == 1 else f"images ({len(members)} jobs)"
        bar = tqdm(lead.refs, desc=desc, unit="img", disable=not lead.cfg.progress, leave=False)
        for ref in bar:
            base: dict[str, Any] = {"image_id": ref.image_id, "path": str(ref.path)}
            times = [StageTimes() for _ in members]
            try:
                sample = lead.dataset.load(ref)
                t0 = clock.now()
                image, steps = to_model_input(sample.raw, lead.cfg.preprocess)
                for t in times:
                    t.add("preprocess", clock.now() - t0)
                base.update(
                    height=image.shape[0],
                    width=image.shape[1],
                    stored_as=sample.raw.mode,
                    conversion="; ".join([*sample.raw.notes, *steps]),
                )
                gpu.reset()
                masks = engine.generate_many(image, times)
                base["gpu_peak_mb"] = gpu.peak_mb()
            except Exception as e:  # one image must never sink the job
                reason = e.reason if isinstance(e, SampleError) else f"{type(e).__name__}: {e}"
                log.error("image %s (%s) failed: %s", ref.image_id, ref.path, reason)
                for m in members:
                    m.fail(dict(base), ref, reason)
                continue
            for j, (m, t) in enumerate(zip(members, times, strict=True)):
                row = dict(base)
                try:
                    _score(m, ref, image, sample.gt, masks[j], t, clock, row)
                except Exception as e:
                    m.fail(row, ref, f"{type(e).__name__}: {e}")
                    continue
                # the time this job added: shared stages count for the group's first job only
                # (as spent: an encoder-cache hit counts its load, not the stored seconds)
                shared = sum(t.seconds[k] for k in ("preprocess", "encoder", "decoder"))
                shared += t.wall_offset
                own = t.seconds["postprocess"] + (shared if j == 0 else 0.0)
                row["marginal_ms"] = own * 1000.0
                m.rows.append(row)
        cache_info = cache.info() if cache is not None else None
        return [_result(m, engine.cc_impl, cache_info) for m in members]


def open_encoder_cache(ctxs: list[JobContext]) -> EncoderCache | None:
    """The encoder cache of a group of jobs (``engine=fast`` only), or ``None``.

    Jobs that differ only in ``cache.*`` are grouped (the cache never changes results): the
    group uses the first job that sets ``cache.dir``, and every job records that cache in
    ``task_info.encoder_cache``.
    """
    chosen = next((c for c in ctxs if c.cache_dir is not None), None)
    if chosen is None or chosen.cache_dir is None:
        return None
    if chosen.cfg.engine != "fast":
        log.warning("cache.dir is ignored by engine=%s (only fast uses it)", chosen.cfg.engine)
        return None
    others = {str(c.cache_dir) for c in ctxs if c.cache_dir not in (None, chosen.cache_dir)}
    if others:
        log.warning(
            "jobs computed together name several cache.dir; using %s (not %s)",
            chosen.cache_dir,
            ", ".join(sorted(others)),
        )
    identity = encoder_identity(
        chosen.cfg.model, chosen.weights.state_dict_hash, chosen.cfg.dtype, chosen.device
    )
    return EncoderCache(chosen.cache_dir, chosen.cfg.cache.max_gb, identity, chosen.device)


def _warmup(ctx: JobContext, engine: GroupEngine, n: int) -> None:
    """One untimed pass on the first image that loads (nothing is recorded)."""
    for ref in ctx.refs:
        try:
            sample = ctx.dataset.load(ref)
            image, _ = to_model_input(sample.raw, ctx.cfg.preprocess)
        except SampleError:
            continue
        engine.generate_many(image, [StageTimes() for _ in range(n)])
        return


def _score(
    m: _Member,
    ref: ImageRef,
    image: np.ndarray,
    gt: GroundTruth,
    masks: list[MaskRecord],
    times: StageTimes,
    clock: Clock,
    row: dict[str, Any],
) -> None:
    """Metrics and saved outputs of one job for one image; fills ``row``."""
    with times.measure("metrics", clock):
        row.update(
            m.evaluator.process(
                ref.image_id, [k.rle for k in masks], [k.predicted_iou for k in masks], gt
            )
        )
    if m.cfg.save_predictions or m.saved < m.cfg.task.save_masks:
        entries = prediction_entries(ref.image_id, masks)
        if m.saved < m.cfg.task.save_masks:
            _save_masks(m.ctx.job_dir, ref.image_id, ref.path, image, gt, entries)
            m.saved += 1
        if m.cfg.save_predictions:
            m.predictions.extend(entries)
    row.update(times.ms())
    row["error"] = None


def _result(m: _Member, cc_impl: str, encoder_cache: dict[str, Any] | None) -> TaskResult:
    """Aggregate one job's rows."""
    cfg = m.cfg
    if cfg.save_predictions:
        write_json(m.ctx.job_dir / PREDICTIONS_FILE, {"predictions": m.predictions})
    ok = [r for r in m.rows if r.get("error") is None]
    metrics = m.evaluator.evaluate() if ok else {}
    metrics.update(latency_summary([r["latency_ms"] for r in ok]))
    for stage in STAGES:
        vals = [r[f"{stage}_ms"] for r in ok]
        metrics[f"{stage}_ms_mean"] = float(np.mean(vals)) if vals else float("nan")
    marginal = [r["marginal_ms"] for r in ok]
    metrics["marginal_ms_mean"] = float(np.mean(marginal)) if marginal else float("nan")
    gpu = [r["gpu_peak_mb"] for r in ok if np.isfinite(r["gpu_peak_mb"])]
    metrics["peak_gpu_mem_mb"] = max(gpu) if gpu else float("nan")
    metrics["n_images_ok"] = len(ok)
    metrics["n_image_errors"] = len(m.errors)
    info = {
        "engine": cfg.engine,
        "cc_impl": cc_impl,
        "min_mask_region_area_applied": cfg.amg.min_mask_region_area > 0,
        "prompts_per_image": prompts_per_image(m.ctx),
        "encoder_cache": encoder_cache,
    }
    return TaskResult(rows=m.rows, metrics=metrics, image_errors=m.errors, info=info)


def _save_masks(
    job_dir: Path,
    image_id: str,
    path: Path,
    image: np.ndarray,
    gt: GroundTruth,
    entries: list[dict[str, Any]],
) -> None:
    """``masks/<id>.json`` (predicted + ground-truth RLEs) and ``masks/<id>.png`` (the model
    input), so overlays can be drawn from the sweep directory alone."""
    out = job_dir / MASKS_DIR
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
