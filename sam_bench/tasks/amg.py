"""Automatic mask generation: per image, the AMG engine's masks scored by the instance metrics.

Stages: ``preprocess`` / ``encoder`` / ``decoder`` / ``postprocess`` (the runner adds
``metrics``). Jobs that differ only in AMG post-processing settings (``amg`` fields whose role
is ``postprocess``, :func:`sam_bench.config.amg_fields`) are computed together with
``engine=fast``: each image is read, converted, encoded and decoded once, and every job
post-processes the shared candidates (:mod:`sam_bench.engines.fast`).

With ``cache.dir`` set (``engine=fast``), encoder outputs come from / go to the on-disk
encoder cache (:mod:`sam_bench.engines.encoder_cache`); the warm-up pass bypasses it. Stage
times and ``latency_ms`` stay what the configuration costs without a cache; ``marginal_ms``
is the time actually spent.

Outputs per job: ``masks/<id>.json`` + ``.png`` for the first ``task.save_masks`` images
(overlays), and with ``save_predictions=true`` ``predictions.json`` (COCO results with RLE
masks and scores), which ``predictions=PATH`` scores again without a model.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sam_bench.config import Config, amg_fields
from sam_bench.data.base import Dataset, GroundTruth, Sample
from sam_bench.engines import GroupEngine, MaskRecord, build_group_engine
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.errors import ConfigError
from sam_bench.metrics.base import Evaluator, Evaluators
from sam_bench.metrics.cost import StageTimes
from sam_bench.metrics.instance import InstanceEvaluator, InstancePredictions
from sam_bench.record import write_json
from sam_bench.tasks.base import JobContext, Task, TaskSpec
from sam_bench.tasks.predictions import read_instance_predictions

log = logging.getLogger(__name__)

MASKS_DIR = "masks"
PREDICTIONS_FILE = "predictions.json"


def prompts_per_image(cfg: Config) -> int:
    """Point prompts the grid sends to the decoder per image (all crop layers)."""
    amg = cfg.amg
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


def mask_record(entry: dict[str, Any]) -> MaskRecord:
    """A :class:`MaskRecord` back from its :func:`prediction_entries` form."""
    seg = entry["segmentation"]
    counts = seg["counts"]
    return MaskRecord(
        rle={
            "size": list(seg["size"]),
            "counts": counts.encode() if isinstance(counts, str) else counts,
        },
        area=int(entry["area"]),
        bbox=[float(v) for v in entry["bbox"]],
        predicted_iou=float(entry["predicted_iou"]),
        stability_score=float(entry["stability_score"]),
        point_coords=entry["point_coords"],
        crop_box=[float(v) for v in entry["crop_box"]],
    )


class AMGTask(Task):
    """Benchmark of the automatic mask generator on a labelled instance dataset."""

    spec: ClassVar[TaskSpec] = TaskSpec(
        name="amg",
        metrics=(
            "miou", "miou_image", "recall50", "recall75", "msa", "sa50", "sa75",
            "msa_label", "sa50_label", "sa75_label", "ar100", "ar1000", "ar1000_small",
            "ar1000_medium", "ar1000_large", "mask_count_mean", "mask_count_min",
            "mask_count_max", "mask_area_mean", "coverage", "overlap", "n_images",
            "n_instances",
        ),
        headline=("miou", "msa", "ar1000", "mask_count_mean", "latency_ms_p50",
                  "latency_ms_p90", "peak_gpu_mem_mb", "peak_rss_mb"),
        objective="miou",
        pareto=("latency_ms_p50", "miou"),
        needs="instances",
        sections=("amg",),
        uses_engine=True,
    )  # fmt: skip

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        lead = self.lead
        if lead.model is None:
            raise ValueError("AMGTask needs a model (scoring saved predictions uses a replay)")
        self.cache = open_encoder_cache(jobs)
        self.engine: GroupEngine = build_group_engine(
            lead.model, [c.cfg for c in jobs], lead.device, self.cache
        )
        self.predictions: list[list[dict[str, Any]]] = [[] for _ in jobs]

    # ------------------------------------------------------------------ class-level hooks

    @classmethod
    def group_key(cls, config: dict[str, Any]) -> dict[str, Any] | None:
        """``engine=fast`` jobs that differ only in post-processing settings share a pass."""
        if config.get("engine") != "fast":
            return None
        amg = config.get("amg") or {}
        for key in (*amg_fields("postprocess"), *amg_fields("label")):
            amg.pop(key, None)
        return config

    @classmethod
    def describe(cls, cfg: Config) -> str:
        a = cfg.amg
        grid = f"{a.points_per_side}x{a.points_per_side}" if a.points_per_side else "custom grid"
        return f"engine={cfg.engine} amg={a.name} ({grid}, {a.crop_n_layers} crop layers)"

    @classmethod
    def read_predictions(cls, path: Path, dataset: Dataset) -> Any:
        """A COCO results JSON (list, or ``{"predictions": [...]}``) with RLE masks."""
        return read_instance_predictions(path, dataset)

    # ------------------------------------------------------------------ per item

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        return Evaluators([InstanceEvaluator()], pick=lambda _, masks: as_instances(masks))

    def warmup(self, sample: Sample, inputs: Any) -> None:
        with self.cache.suspended() if self.cache is not None else contextlib.nullcontext():
            self.engine.generate_many(inputs, [StageTimes() for _ in self.jobs])

    def predict(
        self, sample: Sample, inputs: Any, times: list[StageTimes]
    ) -> list[list[MaskRecord]]:
        return self.engine.generate_many(inputs, times)

    def save(
        self, job: int, sample: Sample, inputs: Any, prediction: list[MaskRecord], saved: int
    ) -> bool:
        cfg = self.jobs[job].cfg
        example = saved < cfg.task.save_masks
        if not (cfg.save_predictions or example):
            return False
        entries = prediction_entries(sample.ref.image_id, prediction)
        if example and sample.gt is not None:
            _save_masks(self.jobs[job].job_dir, sample, inputs, sample.gt, entries)
        if cfg.save_predictions:
            self.predictions[job].extend(entries)
        return example

    def encode(self, job: int, prediction: list[MaskRecord]) -> Any:
        return prediction_entries("", prediction)

    def decode(self, job: int, data: Any) -> list[MaskRecord]:
        return [mask_record(entry) for entry in data]

    def restore(self, job: int, sample: Sample, prediction: list[MaskRecord]) -> None:
        if self.jobs[job].cfg.save_predictions:
            self.predictions[job].extend(prediction_entries(sample.ref.image_id, prediction))

    def finish(self, job: int) -> dict[str, Any]:
        ctx = self.jobs[job]
        if ctx.cfg.save_predictions:
            write_json(
                ctx.job_dir / PREDICTIONS_FILE,
                {"source": predictions_source(ctx), "predictions": self.predictions[job]},
            )
        return {
            "engine": ctx.cfg.engine,
            "cc_impl": self.engine.cc_impl,
            "min_mask_region_area_applied": ctx.cfg.amg.min_mask_region_area > 0,
            "prompts_per_image": prompts_per_image(ctx.cfg),
            "encoder_cache": self.cache.info() if self.cache is not None else None,
        }

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        del self.engine
        self.cache = None
        super().close()


def predictions_source(ctx: JobContext) -> dict[str, Any]:
    """What produced a ``predictions.json`` (carried into a job that scores it again)."""
    w = ctx.weights
    return {
        "tool": "sam_bench",
        "model": ctx.cfg.model.name,
        "weights": None if w is None else w.label,
        "untrained": None if w is None else w.untrained,
    }


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
    if chosen.weights is None:
        raise ConfigError("cache.dir", "the encoder cache needs a model")
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


def _save_masks(
    job_dir: Path,
    sample: Sample,
    image: np.ndarray,
    gt: GroundTruth,
    entries: list[dict[str, Any]],
) -> None:
    """``masks/<id>.json`` (predicted + ground-truth RLEs) and ``masks/<id>.png`` (the model
    input), so overlays can be drawn from the sweep directory alone."""
    out = job_dir / MASKS_DIR
    stem = safe_name(sample.ref.image_id)
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
            "image_id": sample.ref.image_id,
            "path": str(sample.ref.path),
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


def as_instances(masks: list[MaskRecord] | InstancePredictions) -> InstancePredictions:
    """The instance evaluator's view of an engine's masks (saved predictions already are)."""
    if isinstance(masks, InstancePredictions):
        return masks
    return InstancePredictions([m.rle for m in masks], [m.predicted_iou for m in masks])
