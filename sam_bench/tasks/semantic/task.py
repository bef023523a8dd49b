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
   "unlabelled" (:data:`~sam_bench.tasks.semantic.metrics.UNLABELLED`), a value of its own.

``latency_ms`` sums every stage (AMG + CLIP + painting); ``clip_ms_mean`` is the CLIP stage
alone and ``clip_ms_per_mask`` per mask. Text embeddings and model builds are not per-image
costs: ``task_info.clip_build_s`` and ``task_info.text_encode_s``.

Scores: :class:`~sam_bench.tasks.semantic.metrics.SemanticEvaluator` (per-class IoU from the
dataset-wide confusion matrix, ``semantic_miou``, ``pixel_acc``, ``unlabelled_frac``), plus
the instance metrics of the same masks where the data has instances
(:class:`~sam_bench.metrics.instance.InstanceEvaluator`, e.g. ``semantic_folder`` with
``dataset.annotations``), else mask counts / coverage / overlap.

Sharing (``engine=fast``): jobs that differ only in AMG post-processing and in ``semantic.*``
settings other than the CLIP model (:data:`CLIP_FIELDS`) are computed together: one encoder +
decoder pass per image and one CLIP, built once and used by every job of the group; each job
post-processes, labels and paints its own masks. Jobs naming another CLIP model form another
group (the in-sweep encoder cache still shares their encoder pass), so one CLIP model at a time
is on the GPU.

GPU memory (``peak_gpu_mem_mb``): everything the job ran on the GPU -- the AMG engine's peak
for this job (shared stages and its own post-processing) combined with its CLIP stage's peak,
measured after a reset (:func:`sam_bench.metrics.cost.combine_peaks`).

Stage times stay per configuration (the shared encoder / decoder counted in full);
``marginal_ms`` is what each job added.

Outputs per job: :mod:`sam_bench.tasks.semantic.writer` (declared in :data:`~sam_bench.tasks.
semantic.writer.OUTPUTS`).

Scoring saved maps (``predictions=DIR``, :meth:`SemanticWriter.read`): ``DIR`` holds
``<image stem>.png`` per image as ``predictions/`` (class indices; "unlabelled" 255 in an
8-bit PNG, 65535 in a 16-bit one; any other value, the void index included, is an item error),
or is a job folder holding such a ``predictions/``; format and errors in
:mod:`sam_bench.tasks.semantic.outputs`. No model runs: the maps are scored by the semantic
evaluator alone (:class:`~sam_bench.tasks.semantic.evaluators.SavedMapsEvaluator`:
``semantic_miou``, ``pixel_acc``, ``unlabelled_frac``, ``n_classes_present``, per-class IoU,
``per_class.csv``, both figures, the maps figure showing the first images scored); there are no
masks, so the mask-level, instance and CLIP metrics are not reported.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam_bench.clip import ClipBackend, build_clip, check_clip, clip_key
from sam_bench.clip.crops import make_crop
from sam_bench.clip.prompts import ClassText, class_scores, encode_classes, label_and_confidence
from sam_bench.config import Config
from sam_bench.data.base import Dataset, Sample
from sam_bench.data.semantic_folder import ClassList
from sam_bench.engines import GroupEngine, MaskRecord, build_group_engine
from sam_bench.identity import content_digest, section_settings
from sam_bench.metrics.base import Evaluator
from sam_bench.metrics.cost import Clock, GpuPeak, StageTimes, combine_peaks
from sam_bench.tasks.amg.settings import amg_fields, prompts_per_image
from sam_bench.tasks.amg.task import open_encoder_cache
from sam_bench.tasks.base import JobContext, Task, TaskSpec
from sam_bench.tasks.semantic.evaluators import SavedMapsEvaluator, live_evaluator
from sam_bench.tasks.semantic.labels import classes_of, paint_label_map
from sam_bench.tasks.semantic.metrics import UNLABELLED, SemanticPrediction
from sam_bench.tasks.semantic.settings import SemanticConfig
from sam_bench.tasks.semantic.writer import OUTPUTS, LiveJob, SemanticWriter, attach, detach

log = logging.getLogger(__name__)

#: ``semantic.*`` settings that choose the CLIP model: jobs differing in them are not grouped.
CLIP_FIELDS = ("backend", "clip_model", "clip_pretrained", "clip_weights")


def semantic_settings(cfg: Config) -> SemanticConfig:
    """The job's ``semantic.*`` section (a field of the root config schema)."""
    settings: SemanticConfig = getattr(cfg, "semantic")  # noqa: B009
    return settings


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
        described=("semantic",),
        uses_engine=True,
        encoder_cache=True,
        empty_when=("unlabelled_frac", 1.0),
        empty_hint=(
            "no AMG mask survived the thresholds (amg.pred_iou_thresh, "
            "amg.stability_score_thresh), or every mask's CLIP confidence is below "
            "semantic.min_confidence (with N classes an unsure CLIP gives about 1/N), or a "
            "wrong input conversion (preprocess.*)"
        ),
        outputs=OUTPUTS,
    )  # fmt: skip
    writer = SemanticWriter

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        lead = self.lead
        if lead.model is None:
            raise ValueError("SemanticTask needs a SAM 2 model")
        self.classes: ClassList = classes_of(lead.dataset)
        self.class_ids = [c.index for c in self.classes.labelled]
        self.clock = Clock(lead.device)
        self.gpu = GpuPeak(lead.device)
        self.cache = open_encoder_cache(jobs)
        self.engine: GroupEngine = build_group_engine(
            lead.model, [c.cfg for c in jobs], lead.device, self.cache
        )
        self.on_close(self._release)
        self.clips: dict[tuple[Any, ...], ClipBackend] = {}
        self.clip_build_s: dict[tuple[Any, ...], float] = {}
        self.texts: dict[tuple[Any, ...], tuple[ClassText, float]] = {}
        self.job_clip: list[tuple[Any, ...]] = []
        self.job_text: list[tuple[Any, ...]] = []
        for ctx in jobs:
            s = semantic_settings(ctx.cfg)
            key = clip_key(s, ctx.cfg.seed)
            if key not in self.clips:
                t0 = time.perf_counter()
                self.clips[key] = build_clip(s, lead.device, ctx.cfg.seed, ctx.cfg.dtype)
                self.clip_build_s[key] = time.perf_counter() - t0
                info = self.clips[key].info
                if info.untrained:
                    log.warning(
                        "UNTRAINED CLIP: %s has random weights; its labels and every accuracy "
                        "figure measure nothing but the harness", info.label,
                    )  # fmt: skip
            tkey = (key, tuple(s.templates), s.synonyms)
            if tkey not in self.texts:
                t0 = time.perf_counter()
                text = encode_classes(self.clips[key], self.classes.labelled, s.templates,
                                      s.synonyms)  # fmt: skip
                self.texts[tkey] = (text, time.perf_counter() - t0)
            self.job_clip.append(key)
            self.job_text.append(tkey)
        for j, ctx in enumerate(jobs):
            attach(ctx, LiveJob(task_info=self._task_info(j),
                                untrained_models=self.untrained_models(j)))  # fmt: skip

    def _task_info(self, job: int) -> Callable[[], dict[str, Any]]:
        """What job ``job``'s record says of its CLIP, prompts and engine (``task_info``),
        asked by its writer at the job's end."""
        ctx = self.jobs[job]
        key = self.job_clip[job]
        info = self.clips[key].info
        text, text_s = self.texts[self.job_text[job]]
        build_s = self.clip_build_s[key]
        engine, cache = self.engine, self.cache
        s = semantic_settings(ctx.cfg)
        untrained = self.untrained_models(job)
        prompts = {
            "templates": list(s.templates),
            "synonyms": s.synonyms,
            "n_prompts": int(sum(len(n) for c in text.prompts for n in c)),
            "classes": [
                {"index": c.index, "name": c.name, "prompts": [p for n in ps for p in n]}
                for c, ps in zip(self.classes.labelled, text.prompts, strict=True)
            ],
        }

        def task_info() -> dict[str, Any]:
            return {
                "engine": ctx.cfg.engine,
                "cc_impl": engine.cc_impl,
                "prompts_per_image": prompts_per_image(ctx.cfg),
                "encoder_cache": cache.info() if cache is not None else None,
                "clip": info.to_dict(),
                "clip_build_s": build_s,
                "text_encode_s": text_s,
                "untrained_models": untrained,
                "prompts": prompts,
            }

        return task_info

    def untrained_models(self, job: int) -> list[str]:
        """Networks besides SAM 2 that ran with random weights (the record's banner names
        them)."""
        info = self.clips[self.job_clip[job]].info
        return [f"CLIP ({info.backend} {info.model})"] if info.untrained else []

    def _release(self) -> None:
        for ctx in self.jobs:
            detach(ctx)
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        del self.engine
        for clip in self.clips.values():
            clip.close()
        self.clips = {}
        self.texts = {}
        self.cache = None

    @classmethod
    def group_key(cls, config: dict[str, Any]) -> dict[str, Any] | None:
        """``engine=fast`` jobs that differ only in AMG post-processing and ``semantic.*``
        settings other than the CLIP model (:data:`CLIP_FIELDS`) share the encoder + decoder
        pass and their one CLIP."""
        if config.get("engine") != "fast":
            return None
        amg = config.get("amg") or {}
        for key in (*amg_fields("postprocess"), *amg_fields("label")):
            amg.pop(key, None)
        semantic = config.pop("semantic", None) or {}
        # one CLIP per group: jobs naming another CLIP model form their own group (their
        # encoder pass is still shared through the in-sweep encoder cache), so a group never
        # holds several CLIP models on the GPU and each job's peak is its own CLIP's
        config["clip"] = {k: semantic.get(k) for k in CLIP_FIELDS}
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
            check_clip(semantic_settings(cfg))

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        """A computing job's: the semantic scores on the dataset's class list plus the masks'
        instance metrics (or mask statistics); saved class maps' (``live=False``): semantic
        scores only."""
        if not live:
            return SavedMapsEvaluator(ctx.cfg.preprocess)
        return live_evaluator(ctx.dataset, classes_of(ctx.dataset))

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
        s = semantic_settings(self.jobs[job].cfg)
        clip = self.clips[self.job_clip[job]]
        text = self.texts[self.job_text[job]][0]
        gpu = self.gpu
        if gpu.cuda and math.isnan(t.peak_mb):  # an engine that measures no job's own peak:
            t.peak_mb = gpu.peak_mb()  # the group is this one job, its peak so far
        gpu.reset()
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
        if gpu.cuda:  # the peak covers everything the job ran on the GPU: SAM 2 and its CLIP
            t.peak_mb = combine_peaks(t.peak_mb, gpu.peak_mb())
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
