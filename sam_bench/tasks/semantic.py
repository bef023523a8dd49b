"""Semantic labelling: SAM 2's class-agnostic masks, each labelled by CLIP zero-shot from the
dataset's class names, painted into a per-pixel class map and scored against semantic label
maps.

Per image, for each job:

1. AMG (``preprocess`` / ``encoder`` / ``decoder`` / ``postprocess``): the masks of the job's
   ``amg.*`` settings from the ``engine`` chosen, exactly as ``task=amg`` generates them
   (:func:`sam_bench.engines.build_group_engine`).
2. ``clip``: a crop per mask (:mod:`sam_bench.clip.crops`: ``semantic.crop`` / ``padding`` /
   ``square``), embedded by the CLIP image encoder ``semantic.batch_size`` crops at a time,
   compared with the class prompts' text embeddings (:mod:`sam_bench.clip.prompts`, computed
   once per job before the first image), giving each mask a label (the best class) and a
   confidence (its softmax probability). A mask below ``semantic.min_confidence`` is labelled
   "unlabelled".
3. ``postprocess`` (added to the AMG's): the per-pixel map (:func:`paint_label_map`). Each
   pixel takes the class of the labelled mask with the highest priority among those covering
   it -- ``semantic.overlap=iou``: highest predicted IoU first (ties: smaller area);
   ``area``: smallest area first (ties: higher predicted IoU); then the engine's order.
   Masks labelled "unlabelled" claim no pixel; pixels no labelled mask covers are
   "unlabelled" (:data:`~sam_bench.metrics.semantic.UNLABELLED`), a value of its own.

``latency_ms`` sums every stage (AMG + CLIP + painting); ``clip_ms_mean`` is the CLIP stage
alone and ``clip_ms_per_mask`` per mask. Text embeddings and model builds are not per-image
costs: ``task_info.clip_build_s`` and ``task_info.text_encode_s``.

Scores: :class:`~sam_bench.metrics.semantic.SemanticEvaluator` (per-class IoU from the
dataset-wide confusion matrix, ``semantic_miou``, ``pixel_acc``, ``unlabelled_frac``), plus
the instance metrics of the same masks where the data has instances
(:class:`~sam_bench.metrics.instance.InstanceEvaluator`, e.g. ``semantic_folder`` with
``dataset.annotations``), else mask counts / coverage / overlap.

Sharing (``engine=fast``): jobs that differ only in AMG post-processing and in ``semantic.*``
settings are computed together: one encoder + decoder pass per image; each job
post-processes, labels and paints its own masks with its own CLIP (jobs naming the same CLIP
model share one instance of it). Stage times stay per configuration (the shared encoder /
decoder counted in full); ``marginal_ms`` is what each job added.

Outputs per job: ``per_class.csv`` (IoU, pixels, precision and recall per class); for the
first ``task.save_masks`` images ``masks/<id>.json`` (masks with label, class name and
confidence), ``masks/<id>.png`` (the model input) and ``masks/<id>_semantic.png`` (the
predicted class map: class indices, "unlabelled" = 255, or 65535 with indices >= 255);
with ``save_predictions=true`` the same map of every image in ``predictions/`` and all masks
in ``predictions.json``; figures (a confusion matrix, and predicted maps beside the ground
truth with the class legend) under ``figures/``.

Scoring saved maps (``predictions=DIR``, :meth:`SemanticTask.read_predictions`): ``DIR`` holds
``<image stem>.png`` per image as ``predictions/`` above (class indices; "unlabelled" 255 in an
8-bit PNG, 65535 in a 16-bit one; any other value, the void index included, is an item error),
or is a job folder holding such a ``predictions/``; format and errors in
:mod:`sam_bench.tasks.semantic_outputs`. No model runs: the maps are scored by the semantic
evaluator alone (:class:`SavedMapsEvaluator`: ``semantic_miou``, ``pixel_acc``,
``unlabelled_frac``, ``n_classes_present``, per-class IoU, ``per_class.csv``, both figures,
the maps figure showing the first images scored); there are no masks, so the mask-level,
instance and CLIP metrics are not reported.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.clip import ClipBackend, build_clip, check_clip, clip_key
from sam_bench.clip.crops import make_crop
from sam_bench.clip.prompts import ClassText, class_scores, encode_classes, label_and_confidence
from sam_bench.config import Config, PreprocessConfig
from sam_bench.data.base import Dataset, Sample
from sam_bench.data.semantic_folder import ClassInfo, ClassList
from sam_bench.engines import GroupEngine, MaskRecord, build_group_engine
from sam_bench.errors import ConfigError, SampleError
from sam_bench.identity import content_digest, section_settings
from sam_bench.metrics.base import Evaluator, Evaluators
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.metrics.instance import InstanceEvaluator, InstancePredictions
from sam_bench.metrics.semantic import (
    UNLABELLED,
    MaskStatsEvaluator,
    SemanticEvaluator,
    SemanticPrediction,
)
from sam_bench.record import write_json, write_rows_csv
from sam_bench.tasks.amg.masks import prediction_entries, safe_name
from sam_bench.tasks.amg.settings import amg_fields, amg_settings, prompts_per_image
from sam_bench.tasks.amg.task import open_encoder_cache
from sam_bench.tasks.base import JobContext, Task, TaskSpec
from sam_bench.tasks.semantic_outputs import ClassMapFolder, SavedMap

log = logging.getLogger(__name__)

MASKS_DIR = "masks"
PREDICTIONS_DIR = "predictions"
PREDICTIONS_FILE = "predictions.json"
PER_CLASS_FILE = "per_class.csv"
FIGURES_DIR = "figures"
MAX_FIGURE_ITEMS = 4
"""Images shown in the predicted-maps figure (the first saved ones)."""
FIGURE_MAX_SIDE = 480
"""Longer side of the images kept for the figure (downsampled, nearest for label maps)."""


# --------------------------------------------------------------------------------------------
# pure steps


def priority_order(areas: np.ndarray, ious: np.ndarray, rule: str) -> np.ndarray:
    """Mask indices, highest priority first (see the module docstring, step 3)."""
    areas = np.asarray(areas, dtype=np.float64)
    ious = np.asarray(ious, dtype=np.float64)
    index = np.arange(len(areas))
    if rule == "iou":
        return np.lexsort((index, areas, -ious))
    if rule == "area":
        return np.lexsort((index, -ious, areas))
    raise ValueError(f"overlap rule must be 'iou' or 'area', got {rule!r}")


def paint_label_map(
    rles: list[dict[str, Any]],
    labels: list[int] | np.ndarray,
    areas: list[int] | np.ndarray,
    ious: list[float] | np.ndarray,
    rule: str,
    height: int,
    width: int,
) -> np.ndarray:
    """HxW int32 class map: each pixel the label of the highest-priority labelled mask
    covering it, :data:`UNLABELLED` where none does (masks labelled UNLABELLED claim
    nothing)."""
    out = np.full((height, width), UNLABELLED, dtype=np.int32)
    free = np.ones((height, width), dtype=bool)
    for i in priority_order(np.asarray(areas), np.asarray(ious), rule):
        label = int(labels[i])
        if label == UNLABELLED:
            continue
        m = mask_utils.decode(rles[i]).astype(bool) & free
        out[m] = label
        free &= ~m
    return out


def label_png(label_map: np.ndarray) -> tuple[np.ndarray, int]:
    """The map as PNG pixels (uint8, or uint16 when a class index is >= 255) and the value
    standing for "unlabelled" (255 or 65535)."""
    top = int(label_map.max(initial=0))
    dtype, value = (np.uint8, 255) if top < 255 else (np.uint16, 65535)
    out = np.where(label_map == UNLABELLED, value, label_map).astype(dtype)
    return out, value


def label_map_rles(label_map: np.ndarray) -> list[list[Any]]:
    """The map compactly: ``[label, RLE counts]`` per class it holds (pixels of no entry are
    :data:`UNLABELLED`); :func:`label_map_from_rles` gives it back exactly."""
    out: list[list[Any]] = []
    for value in np.unique(label_map):
        if int(value) == UNLABELLED:
            continue
        rle = mask_utils.encode(np.asfortranarray((label_map == value).astype(np.uint8)))
        out.append([int(value), _text(rle["counts"])])
    return out


def label_map_from_rles(entries: list[list[Any]], height: int, width: int) -> np.ndarray:
    """The HxW int32 map :func:`label_map_rles` encoded."""
    out = np.full((height, width), UNLABELLED, dtype=np.int32)
    for value, counts in entries:
        rle = {"size": [height, width], "counts": str(counts).encode("ascii")}
        out[mask_utils.decode(rle).astype(bool)] = int(value)
    return out


@dataclass
class _Example:
    """A downsampled image, ground truth and prediction kept for the maps figure."""

    image_id: str
    image: np.ndarray
    gt: np.ndarray
    pred: np.ndarray


def _downsample(a: np.ndarray, nearest: bool) -> np.ndarray:
    h, w = a.shape[:2]
    scale = FIGURE_MAX_SIDE / max(h, w)
    if scale >= 1:
        return a.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if nearest:
        ys = (np.arange(size[1]) / scale).astype(int).clip(0, h - 1)
        xs = (np.arange(size[0]) / scale).astype(int).clip(0, w - 1)
        return a[ys][:, xs]
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BILINEAR))


# --------------------------------------------------------------------------------------------
# the task


def clip_identity(semantic: dict[str, Any]) -> dict[str, Any]:
    """The ``semantic`` settings as ``config_id`` holds them (see
    :meth:`SemanticTask.identity_settings`): a local folder or file of CLIP weights
    (``local-dir:PATH`` or a checkpoint file for ``open_clip``, a ``save_pretrained`` folder for
    ``transformers``) becomes ``sha256:<digest of its content>``."""
    if semantic.get("crop") != "blur":
        semantic.pop("blur_sigma", None)
    if semantic.get("clip_weights") == "random":
        semantic.pop("clip_pretrained", None)
    elif (
        isinstance(pre := semantic.get("clip_pretrained"), str) and Path(pre).expanduser().is_file()
    ):
        semantic["clip_pretrained"] = f"sha256:{content_digest(pre)}"
    model = str(semantic.get("clip_model"))
    if semantic.get("backend") == "open_clip" and model.startswith("local-dir:"):
        folder = model.removeprefix("local-dir:")
        semantic["clip_model"] = f"local-dir:sha256:{content_digest(folder)}"
    elif semantic.get("backend") == "transformers" and Path(model).expanduser().is_dir():
        semantic["clip_model"] = f"sha256:{content_digest(model)}"
    return semantic


class SemanticTask(Task):
    """SAM 2 masks + CLIP zero-shot labels, scored per class on semantic label maps."""

    spec: ClassVar[TaskSpec] = TaskSpec(
        name="semantic",
        metrics=(
            "semantic_miou", "pixel_acc", "unlabelled_frac", "labelled_mask_frac",
            "mask_confidence_mean", "clip_ms_per_mask", "n_classes_present",
            "mask_count_mean", "mask_count_min", "mask_count_max", "mask_area_mean",
            "coverage", "overlap",
        ),
        headline=("semantic_miou", "pixel_acc", "unlabelled_frac", "mask_count_mean",
                  "clip_ms_mean", "latency_ms_p50", "peak_rss_mb"),
        objective="semantic_miou",
        pareto=("latency_ms_p50", "semantic_miou"),
        stages=("preprocess", "encoder", "decoder", "postprocess", "clip"),
        own_stages=("postprocess", "clip"),
        needs="semantic",
        sections=("amg", "semantic"),
        uses_engine=True,
    )  # fmt: skip

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        lead = self.lead
        if lead.model is None:
            raise ValueError("SemanticTask needs a SAM 2 model")
        self.classes: ClassList = classes_of(lead.dataset)
        self.class_ids = [c.index for c in self.classes.labelled]
        self.clock = Clock(lead.device)
        self.cache = open_encoder_cache(jobs)
        self.engine: GroupEngine = build_group_engine(
            lead.model, [c.cfg for c in jobs], lead.device, self.cache
        )
        self.clips: dict[tuple[Any, ...], ClipBackend] = {}
        self.clip_build_s: dict[tuple[Any, ...], float] = {}
        self.texts: dict[tuple[Any, ...], tuple[ClassText, float]] = {}
        self.job_clip: list[tuple[Any, ...]] = []
        self.job_text: list[tuple[Any, ...]] = []
        for ctx in jobs:
            key = clip_key(ctx.cfg.semantic, ctx.cfg.seed)
            if key not in self.clips:
                t0 = time.perf_counter()
                self.clips[key] = build_clip(ctx.cfg.semantic, lead.device, ctx.cfg.seed,
                                             ctx.cfg.dtype)  # fmt: skip
                self.clip_build_s[key] = time.perf_counter() - t0
                info = self.clips[key].info
                if info.untrained:
                    log.warning(
                        "UNTRAINED CLIP: %s has random weights; its labels and every accuracy "
                        "figure measure nothing but the harness", info.label,
                    )  # fmt: skip
            s = ctx.cfg.semantic
            tkey = (key, tuple(s.templates), s.synonyms)
            if tkey not in self.texts:
                t0 = time.perf_counter()
                text = encode_classes(self.clips[key], self.classes.labelled, s.templates,
                                      s.synonyms)  # fmt: skip
                self.texts[tkey] = (text, time.perf_counter() - t0)
            self.job_clip.append(key)
            self.job_text.append(tkey)
        self.evaluators: list[SemanticEvaluator | None] = [None] * len(jobs)
        self.examples: list[list[_Example]] = [[] for _ in jobs]
        self.saved_examples: list[int] = [0 for _ in jobs]
        """Items saved as examples (``masks/``), computed or reused."""
        self.predictions: list[list[dict[str, Any]]] = [[] for _ in jobs]

    # ------------------------------------------------------------------ class-level hooks

    @classmethod
    def group_key(cls, config: dict[str, Any]) -> dict[str, Any] | None:
        """``engine=fast`` jobs that differ only in AMG post-processing and ``semantic.*``
        settings share the encoder + decoder pass."""
        if config.get("engine") != "fast":
            return None
        amg = config.get("amg") or {}
        for key in (*amg_fields("postprocess"), *amg_fields("label")):
            amg.pop(key, None)
        config.pop("semantic", None)
        return config

    @classmethod
    def identity_settings(cls, config: dict[str, Any]) -> dict[str, Any]:
        """``amg`` and ``semantic`` without settings that do not apply (``blur_sigma`` unless
        ``crop=blur``; ``clip_pretrained`` with random CLIP weights), local CLIP weights named
        by their content (sha256), never by their path."""
        out = section_settings(config, cls.spec.sections)
        out["semantic"] = clip_identity(dict(out.get("semantic") or {}))
        return out

    @classmethod
    def check(cls, cfg: Config, dataset: Dataset | None = None) -> None:
        """The dataset has semantic maps and a class list; CLIP's weights are available (a
        pretrained tag is downloaded here, before any model is built; not for ``dry_run``,
        nor for ``predictions=DIR``, which runs no CLIP)."""
        super().check(cfg, dataset)
        if dataset is not None:
            classes_of(dataset)
        if not cfg.dry_run and not cfg.predictions:
            check_clip(cfg.semantic)

    @classmethod
    def describe(cls, cfg: Config) -> str:
        a, s = amg_settings(cfg), cfg.semantic
        grid = f"{a.points_per_side}x{a.points_per_side}" if a.points_per_side else "custom grid"
        weights = "random" if s.clip_weights == "random" else (s.clip_pretrained or "default")
        return (
            f"engine={cfg.engine} amg={a.name} ({grid}) clip={s.backend}:{s.clip_model} "
            f"({weights}) crop={s.crop} overlap={s.overlap}"
        )

    @classmethod
    def read_predictions(cls, path: Path, dataset: Dataset) -> ClassMapFolder:
        """A folder of class-index PNGs, ``<image stem>.png`` (what ``save_predictions=true``
        writes into ``<job>/predictions/``, or any semantic segmenter's maps), or a job folder
        holding one (:mod:`sam_bench.tasks.semantic_outputs`)."""
        return ClassMapFolder(path, dataset, classes_of(dataset))

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        """The evaluator of saved class maps (``predictions=DIR``): semantic scores only."""
        return SavedMapsEvaluator(ctx.cfg.preprocess)

    @classmethod
    def finish_scores(cls, ctx: JobContext, evaluator: Evaluator) -> dict[str, Any]:
        """``per_class.csv`` from the job's confusion matrix."""
        ev = semantic_part(evaluator)
        if ev is None:
            return {"per_class_file": None}
        write_rows_csv(ctx.job_dir / PER_CLASS_FILE, ev.per_class_rows())
        return {"per_class_file": PER_CLASS_FILE, "void_index": ev.void_index}

    @classmethod
    def score_figures(cls, ctx: JobContext, evaluator: Evaluator) -> list[dict[str, str]]:
        """The confusion matrix, and the predicted maps beside the ground truth where the
        evaluator kept examples (:class:`SavedMapsEvaluator` does)."""
        ev = semantic_part(evaluator)
        if ev is None:
            return []
        examples: list[_Example] = []
        classes: ClassList | None = None
        untrained: list[str] = []
        flag = ctx.weights.untrained if ctx.weights is not None else None
        if isinstance(evaluator, SavedMapsEvaluator):
            examples, classes = evaluator.examples, evaluator.classes
            if flag is None:
                flag = evaluator.untrained
            untrained = list(evaluator.untrained_models)
        elif flag:
            untrained = ["SAM 2"]
        note = ""
        if flag:
            names = " and ".join(untrained)
            note = f"UNTRAINED ({names + ' ' if names else ''}random weights)"
        return draw_figures(ctx.job_dir, ev, examples, classes, note)

    # ------------------------------------------------------------------ per item

    def evaluator(self, job: int) -> Evaluator:
        ctx = self.jobs[job]
        labelled = self.classes.labelled
        sem = SemanticEvaluator(
            [c.index for c in labelled], [c.name for c in labelled], self.classes.void_index
        )
        self.evaluators[job] = sem
        if "instances" in getattr(ctx.dataset, "provides", ()):
            return Evaluators([sem, InstanceEvaluator()], pick=_pick)
        return Evaluators([sem, MaskStatsEvaluator()], pick=_pick)

    def warmup(self, sample: Sample, inputs: Any) -> None:
        with self.cache.suspended() if self.cache is not None else contextlib.nullcontext():
            self.predict(sample, inputs, [StageTimes.of(self.spec.stages) for _ in self.jobs])

    def predict(
        self, sample: Sample, inputs: Any, times: list[StageTimes]
    ) -> list[SemanticPrediction]:
        masks = self.engine.generate_many(inputs, times)
        return [self.label(j, inputs, m, times[j]) for j, m in enumerate(masks)]

    def label(
        self, job: int, image: np.ndarray, masks: list[MaskRecord], t: StageTimes
    ) -> SemanticPrediction:
        """Steps 2 and 3 of the module docstring for one job's masks."""
        s = self.jobs[job].cfg.semantic
        clip = self.clips[self.job_clip[job]]
        text = self.texts[self.job_text[job]][0]
        t0 = self.clock.now()
        parts: list[torch.Tensor] = []
        batch: list[np.ndarray] = []
        for m in masks:
            mask = mask_utils.decode(m.rle)
            batch.append(make_crop(
                image, mask, m.bbox, mode=s.crop, padding=s.padding, square=s.square,
                blur_sigma=s.blur_sigma, fill=clip.mean_rgb,
            ))  # fmt: skip
            if len(batch) == s.batch_size:
                parts.append(clip.encode_images(batch))
                batch = []
        if batch:
            parts.append(clip.encode_images(batch))
        emb = torch.cat(parts) if parts else torch.zeros(0, clip.info.embed_dim)
        best, conf, _ = label_and_confidence(class_scores(emb, text), clip.info.logit_scale)
        best_ids = [self.class_ids[b] for b in best]
        ok = conf >= s.min_confidence
        labels = [c if keep else UNLABELLED for c, keep in zip(best_ids, ok, strict=True)]
        clip_s = self.clock.now() - t0
        t.add("clip", clip_s)
        h, w = image.shape[:2]
        with t.measure("postprocess", self.clock):
            label_map = paint_label_map(
                [m.rle for m in masks], labels, [m.area for m in masks],
                [m.predicted_iou for m in masks], s.overlap, h, w,
            )  # fmt: skip
        return SemanticPrediction(
            label_map=label_map,
            rles=[m.rle for m in masks],
            scores=[m.predicted_iou for m in masks],
            labels=labels,
            confidences=[float(c) for c in conf],
            best=best_ids,
            clip_seconds=clip_s,
        )

    def save(
        self, job: int, sample: Sample, inputs: Any, prediction: SemanticPrediction, saved: int
    ) -> bool:
        ctx = self.jobs[job]
        example = saved < ctx.cfg.task.save_masks
        if not (ctx.cfg.save_predictions or example):
            return False
        stem = safe_name(sample.ref.image_id)
        entries = self._entries(sample.ref.image_id, prediction)
        png, value = label_png(prediction.label_map)
        if example:
            out = ctx.job_dir / MASKS_DIR
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(inputs)).save(out / f"{stem}.png")
            Image.fromarray(png).save(out / f"{stem}_semantic.png")
            write_json(out / f"{stem}.json", {
                "image_id": sample.ref.image_id, "path": str(sample.ref.path),
                "image_file": f"{stem}.png", "semantic_file": f"{stem}_semantic.png",
                "unlabelled_value": value, "height": int(png.shape[0]),
                "width": int(png.shape[1]), "classes": self.classes.names, "masks": entries,
                "ground_truth": _gt_entries(sample),
            })  # fmt: skip
            self.saved_examples[job] += 1
            self._keep_example(job, sample, np.asarray(inputs), prediction)
        if ctx.cfg.save_predictions:
            out = ctx.job_dir / PREDICTIONS_DIR
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(png).save(out / f"{stem}.png")
            self.predictions[job].extend(entries)
        return example

    def _keep_example(
        self, job: int, sample: Sample, image: np.ndarray, prediction: SemanticPrediction
    ) -> None:
        """Keep an example image (downsampled) for the predicted-maps figure."""
        if len(self.examples[job]) < MAX_FIGURE_ITEMS and sample.semantic is not None:
            self.examples[job].append(_Example(
                sample.ref.image_id, _downsample(image, nearest=False),
                _downsample(sample.semantic.labels, nearest=True),
                _downsample(prediction.label_map, nearest=True),
            ))  # fmt: skip

    def _entries(self, image_id: str, p: SemanticPrediction) -> list[dict[str, Any]]:
        masks = [
            MaskRecord(rle=r, area=int(mask_utils.area(r)), bbox=[float(v) for v in
                       mask_utils.toBbox(r)], predicted_iou=s, stability_score=float("nan"),
                       point_coords=[], crop_box=[])
            for r, s in zip(p.rles, p.scores, strict=True)
        ]  # fmt: skip
        entries = prediction_entries(image_id, masks)
        for e, label, best, conf in zip(entries, p.labels, p.best, p.confidences, strict=True):
            for key in ("stability_score", "point_coords", "crop_box"):
                e.pop(key, None)
            e["label"] = label
            e["label_name"] = "unlabelled" if label == UNLABELLED else self.classes.name_of(label)
            e["best_class"] = best
            e["confidence"] = conf
        return entries

    # ------------------------------------------------------------------ resume

    def encode(self, job: int, prediction: SemanticPrediction) -> Any:
        """The image's prediction as JSON for the per-item log (``resume=true`` reuses it):
        the masks as RLE with their scores, labels and confidences, the painted map as one RLE
        per class, and the CLIP time (``clip_ms_per_mask`` counts it)."""
        h, w = prediction.label_map.shape
        return {
            "size": [int(h), int(w)],
            "masks": [
                {"size": [int(v) for v in r["size"]], "counts": _text(r["counts"])}
                for r in prediction.rles
            ],
            "scores": [float(v) for v in prediction.scores],
            "labels": [int(v) for v in prediction.labels],
            "confidences": [float(v) for v in prediction.confidences],
            "best": [int(v) for v in prediction.best],
            "clip_seconds": float(prediction.clip_seconds),
            "label_map": label_map_rles(prediction.label_map),
        }

    def decode(self, job: int, data: Any) -> SemanticPrediction:
        h, w = (int(v) for v in data["size"])
        return SemanticPrediction(
            label_map=label_map_from_rles(data["label_map"], h, w),
            rles=[
                {"size": [int(v) for v in m["size"]], "counts": str(m["counts"]).encode("ascii")}
                for m in data["masks"]
            ],
            scores=[float(v) for v in data["scores"]],
            labels=[int(v) for v in data["labels"]],
            confidences=[float(v) for v in data["confidences"]],
            best=[int(v) for v in data["best"]],
            clip_seconds=float(data["clip_seconds"]),
        )

    def restore(self, job: int, sample: Sample, prediction: SemanticPrediction) -> None:
        """A reused image: its masks go into ``predictions.json`` again; an example the earlier
        run saved (``masks/<id>.json``) counts again and is drawn again in the maps figure
        (from the model input it saved as ``masks/<id>.png``)."""
        ctx = self.jobs[job]
        stem = safe_name(sample.ref.image_id)
        example = ctx.job_dir / MASKS_DIR / f"{stem}.json"
        if example.is_file() and self.saved_examples[job] < ctx.cfg.task.save_masks:
            self.saved_examples[job] += 1
            try:
                with Image.open(ctx.job_dir / MASKS_DIR / f"{stem}.png") as im:
                    image = np.asarray(im.convert("RGB"))
            except OSError:
                image = np.asarray(self.prepare(sample)[0])
            self._keep_example(job, sample, image, prediction)
        if ctx.cfg.save_predictions:
            path = ctx.job_dir / PREDICTIONS_DIR / f"{stem}.png"
            if not path.is_file():  # written by the earlier run, unless it was removed since
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(label_png(prediction.label_map)[0]).save(path)
            self.predictions[job].extend(self._entries(sample.ref.image_id, prediction))

    def finish(self, job: int) -> dict[str, Any]:
        ctx = self.jobs[job]
        ev = self.evaluators[job]
        if ev is not None:
            self.finish_scores(ctx, ev)
        if ctx.cfg.save_predictions:
            write_json(ctx.job_dir / PREDICTIONS_FILE, {
                "source": {"tool": "sam_bench", "task": "semantic", "model": ctx.cfg.model.name,
                           "untrained": bool(self.untrained_models(job)) or (
                               ctx.weights is not None and ctx.weights.untrained)},
                "classes": self.classes.names, "predictions": self.predictions[job],
            })  # fmt: skip
        key = self.job_clip[job]
        clip = self.clips[key]
        text, text_s = self.texts[self.job_text[job]]
        s = ctx.cfg.semantic
        return {
            "engine": ctx.cfg.engine,
            "cc_impl": self.engine.cc_impl,
            "prompts_per_image": prompts_per_image(ctx.cfg),
            "encoder_cache": self.cache.info() if self.cache is not None else None,
            "clip": clip.info.to_dict(),
            "clip_build_s": self.clip_build_s[key],
            "text_encode_s": text_s,
            "untrained_models": self.untrained_models(job),
            "prompts": {
                "templates": list(s.templates),
                "synonyms": s.synonyms,
                "n_prompts": int(sum(len(n) for c in text.prompts for n in c)),
                "classes": [
                    {"index": c.index, "name": c.name, "prompts": [p for n in ps for p in n]}
                    for c, ps in zip(self.classes.labelled, text.prompts, strict=True)
                ],
            },
            "void_index": self.classes.void_index,
            "per_class_file": PER_CLASS_FILE,
        }

    def untrained_models(self, job: int) -> list[str]:
        """Networks besides SAM 2 that ran with random weights (the record's banner names
        them)."""
        info = self.clips[self.job_clip[job]].info
        return [f"CLIP ({info.backend} {info.model})"] if info.untrained else []

    def figures(self, job: int) -> list[dict[str, str]]:
        ctx = self.jobs[job]
        ev = self.evaluators[job]
        if ev is None:
            return []
        untrained = [*(["SAM 2"] if ctx.weights is not None and ctx.weights.untrained else []),
                     *(["CLIP"] if self.untrained_models(job) else [])]  # fmt: skip
        note = f"UNTRAINED ({' and '.join(untrained)} random weights)" if untrained else ""
        return draw_figures(ctx.job_dir, ev, self.examples[job], self.classes, note)

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        del self.engine
        for clip in self.clips.values():
            clip.close()
        self.clips = {}
        self.texts = {}
        self.cache = None
        super().close()


class SavedMapsEvaluator:
    """The evaluator of saved class maps (``predictions=DIR``): a
    :class:`~sam_bench.metrics.semantic.SemanticEvaluator` without mask-level values (the maps
    have no masks), on the class list the maps were checked against (the first map brings
    it). It also keeps the first :data:`MAX_FIGURE_ITEMS` images scored (downsampled) for the
    maps figure, and the maps' provenance (untrained) for the figures' note.

    Raises (per item, from :meth:`process`): :class:`SampleError` when a map's size is not
    the ground truth's."""

    name = "semantic"

    def __init__(self, preprocess: PreprocessConfig | None = None) -> None:
        self.preprocess = preprocess if preprocess is not None else PreprocessConfig()
        self.reset()

    def reset(self) -> None:
        self.semantic: SemanticEvaluator | None = None
        self.classes: ClassList | None = None
        self.examples: list[_Example] = []
        self.untrained: bool | None = None
        self.untrained_models: tuple[str, ...] = ()

    def process(self, sample: Sample, prediction: SemanticPrediction) -> dict[str, Any]:
        if sample.semantic is None:
            raise ValueError(f"item {sample.ref.image_id} has no semantic ground truth")
        gt = sample.semantic.labels
        pred = prediction.label_map
        path = getattr(prediction, "path", None)
        if pred.shape != gt.shape:
            name = path.name if isinstance(path, Path) else "the prediction"
            raise SampleError(
                path or sample.ref.path,
                f"prediction {name} is {pred.shape[1]}x{pred.shape[0]}, the image's label map "
                f"is {gt.shape[1]}x{gt.shape[0]}",
            )
        if self.semantic is None:
            classes = getattr(prediction, "classes", None)
            if not isinstance(classes, ClassList):
                classes = ClassList(
                    tuple(ClassInfo(i, (n,)) for i, n in sorted(sample.semantic.classes.items())),
                    sample.semantic.void_index,
                )
            labelled = classes.labelled
            self.classes = classes
            self.semantic = SemanticEvaluator(
                [c.index for c in labelled], [c.name for c in labelled], classes.void_index,
                masks=False,
            )  # fmt: skip
        if isinstance(prediction, SavedMap):
            self.untrained = prediction.untrained
            self.untrained_models = prediction.untrained_models
        row = self.semantic.process(sample, prediction)
        if len(self.examples) < MAX_FIGURE_ITEMS and sample.raw is not None:
            self._keep_example(sample, pred)
        return row

    def _keep_example(self, sample: Sample, pred: np.ndarray) -> None:
        from sam_bench.preprocess import to_model_input

        assert sample.raw is not None and sample.semantic is not None
        try:
            image = np.asarray(to_model_input(sample.raw, self.preprocess)[0])
        except Exception as e:  # the figure goes without it; the item is scored
            log.warning("%s: not drawn in the maps figure: %s", sample.ref.image_id, e)
            return
        self.examples.append(_Example(
            sample.ref.image_id, _downsample(image, nearest=False),
            _downsample(sample.semantic.labels, nearest=True), _downsample(pred, nearest=True),
        ))  # fmt: skip

    def evaluate(self) -> dict[str, float]:
        if self.semantic is None:  # no map was scored
            return {"semantic_miou": math.nan, "pixel_acc": math.nan, "unlabelled_frac": math.nan}
        return self.semantic.evaluate()


def semantic_part(evaluator: Evaluator) -> SemanticEvaluator | None:
    """The :class:`SemanticEvaluator` of a job's evaluator (``None`` before any map was
    scored by a :class:`SavedMapsEvaluator`)."""
    if isinstance(evaluator, SemanticEvaluator):
        return evaluator
    if isinstance(evaluator, SavedMapsEvaluator):
        return evaluator.semantic
    for e in getattr(evaluator, "evaluators", []):
        found = semantic_part(e)
        if found is not None:
            return found
    return None


def draw_figures(
    job_dir: Path,
    ev: SemanticEvaluator,
    examples: list[_Example],
    classes: ClassList | None,
    note: str,
) -> list[dict[str, str]]:
    """The per-job figures under ``figures/`` (``[{path, caption}]``, relative to
    ``job_dir``): the confusion matrix, and the maps figure of ``examples`` (when any)."""
    from sam_bench.tasks.semantic_figures import confusion_figure, maps_figure

    if ev.n_images == 0:
        return []
    out = job_dir / FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    figures = [confusion_figure(ev, out / "confusion.png", note)]
    if examples and classes is not None:
        figures.append(maps_figure(examples, classes, out / "semantic_maps.png", note))
    return [{"path": str(p.relative_to(job_dir)), "caption": c} for p, c in figures]


def _gt_entries(sample: Sample) -> list[dict[str, Any]]:
    """Instance ground truth (where the data has it) as the AMG task saves it."""
    if sample.gt is None:
        return []
    return [
        {"segmentation": {"size": list(r["size"]), "counts": _text(r["counts"])},
         "iscrowd": bool(c)}
        for r, c in zip(sample.gt.rles, sample.gt.iscrowd, strict=True)
    ]  # fmt: skip


def _text(counts: bytes | str) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def _pick(name: str, prediction: SemanticPrediction) -> Any:
    if name == "instance":
        return InstancePredictions(list(prediction.rles), list(prediction.scores))
    return prediction


def classes_of(dataset: Dataset) -> ClassList:
    """The dataset's class list (``semantic_classes()``), or a :class:`ConfigError`."""
    get = getattr(dataset, "semantic_classes", None)
    if not callable(get):
        raise ConfigError(
            "dataset.format",
            f"task semantic needs a class list; dataset.format={getattr(dataset, 'kind', '?')} "
            "has none (use dataset=semantic_folder)",
        )
    classes = get()
    if not isinstance(classes, ClassList):
        raise ConfigError("dataset.classes", "the dataset's class list is not a ClassList")
    return classes


def per_class_path(job_dir: Path) -> Path:
    """Where a job's ``per_class.csv`` lies."""
    return Path(job_dir) / PER_CLASS_FILE
