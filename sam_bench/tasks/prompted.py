"""Prompted segmentation: ``SAM2ImagePredictor`` prompted with clicks or boxes derived from the
ground truth, as annotation tools (clicks) and detector pipelines (boxes) use SAM 2.

Protocols (``prompt.mode``; definitions in :mod:`sam_bench.prompts` and
:mod:`sam_bench.metrics.prompted`):

* ``click`` (the default): one positive click at the pixel farthest from the instance's
  boundary; ``multimask_output=True``, the mask with the highest predicted IoU is kept, and
  the best of the three against the ground truth is reported as the oracle.
* ``box``: the instance's tight box (``multimask_output=False``), optionally jittered
  (``prompt.box_jitter``, seeded per instance), or the user's detector boxes
  (``prompt.boxes``, a COCO results JSON) matched to ground truth by box IoU: every detection
  is prompted, and an instance no detection matched counts as missed (IoU 0).
* ``clicks``: iterative clicks (RITM / SimpleClick protocol) up to ``prompt.max_clicks``: the
  first click as in ``click`` (``prompt.first_multimask``), then each next click at the
  farthest point of the larger error region (positive in a missed region, negative in a false
  one), every click so far sent with single-mask output and the previous low-res logits as
  ``mask_input`` (``prompt.feed_logits``).

Computation: per image the encoder runs once (through the encoder cache with ``cache.dir``);
every instance is prompted against that embedding, ``prompt.batch_size`` instances per
decoder call (:class:`~sam_bench.prompts.decoder.PromptDecoder`). Jobs that differ only in
``prompt.*`` settings are computed together (:meth:`PromptedTask.group_key`): one encoder pass
per image for all of them, each job decoding its own prompts.

Stages: ``preprocess``, ``encoder`` (shared), ``decoder`` and ``postprocess`` (upsampling and
thresholding; each job's own). What the simulated user does -- decoding the ground truth,
placing clicks, measuring IoUs -- counts as ``metrics``, not latency. An image without an
instance to prompt is not sent to the model: its row says why and it has no latency.

Outputs per job: ``per_instance.csv`` (every annotation: size, status / reason, IoU per click,
NoC, the clicks and boxes sent), ``masks/<id>.json`` + ``.png`` for the first
``task.save_masks`` images and the figures drawn from them (``figures/``: overlays with the
clicks marked, and for ``clicks`` mIoU after k clicks by object size), and with
``save_predictions=true`` ``predictions.json`` (every instance's final mask).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sam_bench.config import Config
from sam_bench.data.base import Dataset, Sample
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.errors import ConfigError, SampleError
from sam_bench.identity import content_digest
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.metrics.prompted import (
    NOC_THRESHOLDS,
    ImagePrompted,
    InstanceOutcome,
    PromptedEvaluator,
)
from sam_bench.prompts.boxes import Detections, read_detections
from sam_bench.prompts.decoder import PromptDecoder
from sam_bench.prompts.protocols import ProtocolRunner, Truth, counts_str, read_truth
from sam_bench.record import atomic_write_text, write_json, write_rows_csv
from sam_bench.tasks.base import JobContext, Task, TaskSpec

log = logging.getLogger(__name__)

MODES = ("click", "box", "clicks")
DEFAULT_MODE = "click"
PER_INSTANCE_FILE = "per_instance.csv"
PREDICTIONS_FILE = "predictions.json"
MASKS_DIR = "masks"
FIGURES_DIR = "figures"
#: Clicks of the warm-up pass (``clicks`` mode): enough to run every kind of decoder call.
WARMUP_CLICKS = 2


def mode_of(cfg: Config) -> str:
    """The job's protocol (``prompt.mode``, ``null`` meaning ``click``)."""
    return cfg.prompt.mode or DEFAULT_MODE


def resolve_path(path: str) -> Path:
    """A user path (``~`` expanded; relative to the directory the command was launched from)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path.cwd() / p


def protocol(cfg: Config) -> dict[str, Any]:
    """The settings that define the job's protocol (``task_info.prompts.protocol``): those
    of :func:`prompt_identity` and what each mode does with them."""
    out = prompt_identity(asdict(cfg.prompt))
    mode = out["mode"]
    if mode == "click":
        out.update(click="farthest from the boundary (distance transform max, raster ties)",
                   multimask_output=True, kept="highest predicted IoU", oracle=True)  # fmt: skip
    elif mode == "box":
        out.update(multimask_output=False, box="tight, x1/y1 exclusive")
        if cfg.prompt.boxes:
            out.update(source="detector")
        else:
            out.update(source="ground truth", jitter="gaussian")
    else:
        out.update(
            next_click="RITM: farthest point of the larger error region (ties negative)",
            noc_thresholds=list(NOC_THRESHOLDS),
        )
    return out


def prompt_identity(prompt: dict[str, Any]) -> dict[str, Any]:
    """The ``prompt`` settings that change what a prompted job measures (``config_id``, and
    :func:`protocol`): those its mode uses, ``null`` mode written as ``click``, detector boxes
    by their file's sha256."""
    mode = prompt.get("mode") or DEFAULT_MODE
    out: dict[str, Any] = {"mode": mode, "batch_size": prompt.get("batch_size")}
    if mode == "box" and prompt.get("boxes"):
        out.update(
            boxes_sha256=content_digest(resolve_path(str(prompt["boxes"]))),
            box_match_iou=prompt.get("box_match_iou"),
            box_min_score=prompt.get("box_min_score"),
        )
    elif mode == "box":
        out.update(box_jitter=prompt.get("box_jitter"))
    elif mode == "clicks":
        out.update({k: prompt.get(k) for k in ("max_clicks", "first_multimask", "feed_logits")})
    return out


def open_encoder_cache(ctxs: list[JobContext]) -> EncoderCache | None:
    """The group's encoder cache (the first job that sets ``cache.dir``), or ``None``; the
    same key as the AMG engine's, so both tasks share entries of the same model and image."""
    chosen = next((c for c in ctxs if c.cache_dir is not None), None)
    if chosen is None or chosen.cache_dir is None:
        return None
    if chosen.weights is None:
        raise ConfigError("cache.dir", "the encoder cache needs a model")
    identity = encoder_identity(
        chosen.cfg.model, chosen.weights.state_dict_hash, chosen.cfg.dtype, chosen.device
    )
    return EncoderCache(chosen.cache_dir, chosen.cfg.cache.max_gb, identity, chosen.device)


class PromptedTask(Task):
    """Benchmark of ``SAM2ImagePredictor`` with prompts derived from instance ground truth."""

    spec: ClassVar[TaskSpec] = TaskSpec(
        name="prompted",
        metrics=(
            "miou_prompted", "miou_click", "miou_click_oracle", "miou_box", "box_recall",
            "n_unmatched_boxes", "noc85", "noc90", "nof85", "nof90", "miou_prompted_small",
            "miou_prompted_medium", "miou_prompted_large", "n_prompted", "n_skipped",
            "n_prompts", "decoder_ms_per_prompt",
        ),
        headline=("miou_prompted", "miou_click", "miou_click_oracle", "miou_box", "noc85",
                  "noc90", "nof90", "decoder_ms_per_prompt", "latency_ms_p50", "peak_rss_mb"),
        objective="miou_prompted",
        pareto=("latency_ms_p50", "miou_prompted"),
        own_stages=("decoder", "postprocess"),
        needs="instances",
        sections=("prompt",),
    )  # fmt: skip

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        lead = self.lead
        if lead.model is None:
            raise ValueError("the prompted task needs a model")
        self.cache = open_encoder_cache(jobs)
        self.decoder = PromptDecoder(lead.model, lead.device, lead.cfg.dtype, self.cache)
        self.clock = Clock(lead.device)
        self.runner = ProtocolRunner(self.decoder, self.clock)
        self.detections: list[Detections | None] = [
            read_detections(resolve_path(c.cfg.prompt.boxes))
            if mode_of(c.cfg) == "box" and c.cfg.prompt.boxes
            else None
            for c in jobs
        ]
        self.untrained = bool(lead.weights is not None and lead.weights.untrained)
        self.instance_rows: list[list[dict[str, Any]]] = [[] for _ in jobs]
        self.predictions: list[list[dict[str, Any]]] = [[] for _ in jobs]
        self.saved: list[list[str]] = [[] for _ in jobs]
        self.first_prompts = [hashlib.sha256() for _ in jobs]
        self.all_prompts = [hashlib.sha256() for _ in jobs]
        self.stopped = [0 for _ in jobs]

    # ------------------------------------------------------------------ class-level hooks

    @classmethod
    def group_key(cls, config: dict[str, Any]) -> dict[str, Any] | None:
        """Jobs that differ only in ``prompt.*`` share the image encoder pass (AMG settings
        and ``engine`` do not apply to this task)."""
        for key in ("prompt", "amg", "engine"):
            config.pop(key, None)
        return config

    @classmethod
    def identity_settings(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The prompt settings of the job's mode (those of :func:`protocol`; ``null`` mode
        written as ``click``), the detector boxes by their file's sha256, never its path."""
        return {"prompt": prompt_identity(config.get("prompt") or {})}

    @classmethod
    def check(cls, cfg: Config, dataset: Dataset | None = None) -> None:
        super().check(cfg, dataset)
        p = cfg.prompt
        if p.mode is not None and p.mode not in MODES:
            raise ConfigError(
                "prompt.mode", f"task=prompted takes {', '.join(MODES)} (or null), got {p.mode!r}"
            )
        if not p.boxes:
            return
        if mode_of(cfg) != "box":
            raise ConfigError(
                "prompt.boxes",
                f"detector boxes are box prompts: use prompt.mode=box (this job has "
                f"prompt.mode={mode_of(cfg)})",
            )
        if p.box_jitter:
            raise ConfigError(
                "prompt.box_jitter", "jitters ground-truth boxes; it cannot apply to prompt.boxes"
            )
        dets = read_detections(resolve_path(p.boxes))
        if dataset is not None:
            ids = {r.image_id for r in dataset.refs()}
            if not ids & set(dets.by_image):
                example = next(iter(dets.by_image), "none")
                raise ConfigError(
                    "prompt.boxes",
                    f"no image_id of {dets.path} is an image of dataset {cfg.dataset.name!r} "
                    f"(the file has e.g. {example!r}; the dataset e.g. "
                    f"{next(iter(sorted(ids)), 'none')!r}): every instance would be missed",
                )

    @classmethod
    def describe(cls, cfg: Config) -> str:
        p = cfg.prompt
        mode = mode_of(cfg)
        if mode == "clicks":
            return f"prompt.mode=clicks (max {p.max_clicks} clicks)"
        if mode == "box":
            src = f"detector boxes {p.boxes}" if p.boxes else f"jitter {p.box_jitter}"
            return f"prompt.mode=box ({src})"
        return "prompt.mode=click"

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> PromptedEvaluator:
        cfg = ctx.cfg
        mode = mode_of(cfg)
        return PromptedEvaluator(mode, cfg.prompt.max_clicks, detector=bool(cfg.prompt.boxes))

    # ------------------------------------------------------------------ per item

    def warmup(self, sample: Sample, inputs: Any) -> None:
        """One untimed pass on this image (``clicks`` jobs stop after
        :data:`WARMUP_CLICKS` clicks), without the encoder cache."""
        truth = read_truth(sample, int(inputs.shape[0]), int(inputs.shape[1]))
        if not truth.masks:
            raise SampleError(sample.ref.path, "no instance to prompt: nothing to warm up on")
        times = [StageTimes.of(self.spec.stages) for _ in self.jobs]
        with self.cache.suspended() if self.cache is not None else contextlib.nullcontext():
            self._predict(sample, inputs, truth, times, max_clicks=WARMUP_CLICKS)

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[ImagePrompted]:
        t0 = self.clock.now()
        truth = read_truth(sample, int(inputs.shape[0]), int(inputs.shape[1]))
        spent = self.clock.now() - t0
        for t in times:
            t.add("metrics", spent)
        return self._predict(sample, inputs, truth, times)

    def _predict(
        self,
        sample: Sample,
        inputs: np.ndarray,
        truth: Truth,
        times: list[StageTimes],
        max_clicks: int | None = None,
    ) -> list[ImagePrompted]:
        if not truth.masks:
            return self._nothing_to_prompt(truth, times)
        self.decoder.set_image(inputs, times)
        try:
            return [self._run(j, truth, times[j], max_clicks) for j in range(len(self.jobs))]
        finally:
            self.decoder.reset()

    def _nothing_to_prompt(self, truth: Truth, times: list[StageTimes]) -> list[ImagePrompted]:
        """An image without an instance to prompt is not sent to the model (no latency)."""
        reasons = Counter(o.reason for o in truth.skipped)
        why = "; ".join(f"{n} x {r}" for r, n in reasons.items()) or "no annotations"
        note = f"no instance to prompt ({why}): not sent to the model, not timed"
        out = []
        for j, t in enumerate(times):
            t.add("encoder", math.nan)  # not timed: kept out of every latency figure
            dets = self.detections[j]
            unmatched = None
            if dets is not None:
                unmatched = len(
                    dets.for_image(truth.image_id, self.jobs[j].cfg.prompt.box_min_score)
                )
            out.append(
                ImagePrompted(mode_of(self.jobs[j].cfg), list(truth.skipped), note=note,
                              n_unmatched_boxes=unmatched)
            )  # fmt: skip
        return out

    def _run(
        self, j: int, truth: Truth, times: StageTimes, max_clicks: int | None
    ) -> ImagePrompted:
        cfg = self.jobs[j].cfg
        mode = mode_of(cfg)
        if mode == "click":
            out = self.runner.click(cfg.prompt, truth, times)
        elif mode == "box":
            dets = self.detections[j]
            out = (
                self.runner.box(cfg.prompt, cfg.seed, truth, times)
                if dets is None
                else self.runner.detector_box(cfg.prompt, truth, dets, times)
            )
        else:
            k = (
                cfg.prompt.max_clicks
                if max_clicks is None
                else min(max_clicks, cfg.prompt.max_clicks)
            )
            out = self.runner.clicks(cfg.prompt, truth, times, k)
        out.instances.extend(truth.skipped)
        out.instances.sort(key=lambda o: o.index)
        return out

    # ------------------------------------------------------------------ outputs

    def save(
        self, job: int, sample: Sample, inputs: Any, prediction: ImagePrompted, saved: int
    ) -> bool:
        """Collect the job's per-instance rows and prompt fingerprints; write the example
        files of the first ``task.save_masks`` images that had instances to prompt."""
        self._account(job, sample.ref.image_id, prediction)
        prompted = any(o.status == "ok" for o in prediction.instances)
        if saved >= self.jobs[job].cfg.task.save_masks or not prompted:
            return False
        self._save_example(job, sample, inputs, prediction)
        return True

    def _account(self, job: int, image_id: str, prediction: ImagePrompted) -> None:
        """Add one image's outcomes to the job's per-instance rows, prompt fingerprints and
        predictions."""
        cfg = self.jobs[job].cfg
        k = cfg.prompt.max_clicks if mode_of(cfg) == "clicks" else None
        for o in prediction.instances:
            self.instance_rows[job].append({**o.row(k), "untrained": self.untrained})
            if o.stopped is not None:
                self.stopped[job] += 1
        prompted = [o for o in prediction.instances if o.status == "ok"]
        first: list[Any] = [[o.index, o.clicks[:1] if o.clicks else o.box] for o in prompted]
        if prediction.detector_boxes is not None:
            first = [["detector", prediction.detector_boxes]]
        self.first_prompts[job].update(json.dumps([image_id, first]).encode())
        sent = [[o.index, o.clicks, o.box] for o in prompted]
        self.all_prompts[job].update(json.dumps([image_id, sent]).encode())
        if cfg.save_predictions:
            self.predictions[job].extend(_prediction_entries(image_id, prompted))

    # ------------------------------------------------------------------ resume

    def encode(self, job: int, prediction: ImagePrompted) -> Any:
        """The image's outcomes as JSON for the per-item log (``resume=true`` reuses them)."""
        return prediction.to_json()

    def decode(self, job: int, data: Any) -> ImagePrompted:
        return ImagePrompted.from_json(data)

    def restore(self, job: int, sample: Sample, prediction: ImagePrompted) -> None:
        """A reused image: its outcomes count again; its example files (written by the earlier
        run) are drawn again in the figures."""
        self._account(job, sample.ref.image_id, prediction)
        stem = _safe_name(sample.ref.image_id)
        ctx = self.jobs[job]
        example = ctx.job_dir / MASKS_DIR / f"{stem}.json"
        if example.is_file() and len(self.saved[job]) < ctx.cfg.task.save_masks:
            self.saved[job].append(stem)

    def _save_example(
        self, job: int, sample: Sample, image: np.ndarray, prediction: ImagePrompted
    ) -> None:
        """``masks/<id>.png`` (the model input) and ``masks/<id>.json`` (ground truth,
        predicted masks and the prompts sent), the layout the sweep report's overlays read."""
        out = self.jobs[job].job_dir / MASKS_DIR
        stem = _safe_name(sample.ref.image_id)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / f"{stem}.png")
        gt = sample.gt
        ground_truth = []
        if gt is not None:
            for rle, crowd in zip(gt.rles, gt.iscrowd, strict=True):
                seg = {"size": list(rle["size"]), "counts": counts_str(rle["counts"])}
                ground_truth.append({"segmentation": seg, "iscrowd": bool(crowd)})
        write_json(
            out / f"{stem}.json",
            {
                "image_id": sample.ref.image_id,
                "path": str(sample.ref.path),
                "image_file": f"{stem}.png",
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "mode": prediction.mode,
                "untrained": self.untrained,
                "masks": _prediction_entries(sample.ref.image_id, prediction.instances),
                "ground_truth": ground_truth,
                "detector_boxes": prediction.detector_boxes,
            },
        )
        self.saved[job].append(stem)

    def finish(self, job: int) -> dict[str, Any]:
        ctx = self.jobs[job]
        rows = self.instance_rows[job]
        if rows:
            write_rows_csv(ctx.job_dir / PER_INSTANCE_FILE, rows)
        else:
            atomic_write_text(ctx.job_dir / PER_INSTANCE_FILE, "image_id,instance,status,reason\n")
        if ctx.cfg.save_predictions:
            write_json(
                ctx.job_dir / PREDICTIONS_FILE,
                {"source": _source(ctx), "predictions": self.predictions[job]},
            )
        dets = self.detections[job]
        reasons = Counter(str(r.get("reason")) for r in rows if r.get("status") == "skipped")
        return {
            "prompts": {
                "protocol": protocol(ctx.cfg),
                "fingerprint": self.first_prompts[job].hexdigest(),
                "sent_sha256": self.all_prompts[job].hexdigest(),
                "boxes": dets.info() if dets is not None else None,
            },
            "skipped": dict(reasons),
            "stopped_early": self.stopped[job] if mode_of(ctx.cfg) == "clicks" else None,
            "decoder": "sliced (CPU, bit-identical to sam2's)"
            if ctx.device.type == "cpu"
            else "sam2",
            "encoder_cache": self.cache.info() if self.cache is not None else None,
            "per_instance_file": PER_INSTANCE_FILE,
        }

    def figures(self, job: int) -> list[dict[str, str]]:
        from sam_bench.prompts.figures import clicks_by_size_figure, overlay_figure

        ctx = self.jobs[job]
        cfg = ctx.cfg
        out: list[dict[str, str]] = []
        folder = ctx.job_dir / FIGURES_DIR
        tag = " -- UNTRAINED MODEL (random weights)" if self.untrained else ""
        try:
            if self.saved[job]:
                path = folder / "overlays.png"
                overlay_figure(ctx.job_dir / MASKS_DIR, self.saved[job], path, tag)
                out.append({
                    "path": f"{FIGURES_DIR}/{path.name}",
                    "caption": f"prompt.mode={mode_of(cfg)}: ground truth | prediction, "
                    "positive clicks green +, negative red x, boxes dashed" + tag,
                })  # fmt: skip
            if mode_of(cfg) == "clicks" and self.instance_rows[job]:
                path = folder / "clicks_by_size.png"
                clicks_by_size_figure(self.instance_rows[job], cfg.prompt.max_clicks, path, tag)
                out.append({
                    "path": f"{FIGURES_DIR}/{path.name}",
                    "caption": "mIoU after k clicks, all instances and by object size" + tag,
                })  # fmt: skip
        except Exception as e:  # a figure must never fail the job
            log.warning("prompted figures of job %s not drawn: %s", ctx.job_dir, e)
        return out

    def close(self) -> None:
        self.decoder.close()
        self.cache = None
        super().close()


def _prediction_entries(image_id: str, outcomes: list[InstanceOutcome]) -> list[dict[str, Any]]:
    """COCO-results-style entries of the instances' final masks (with their prompts)."""
    return [
        {
            "image_id": image_id,
            "instance": o.index,
            "category_id": o.category_id if o.category_id is not None else 1,
            "segmentation": o.rle,
            "score": o.predicted_ious[-1] if o.predicted_ious else None,
            "iou": o.final,
            "clicks": o.clicks,
            "box": o.box,
        }
        for o in outcomes
        if o.rle is not None
    ]


def _source(ctx: JobContext) -> dict[str, Any]:
    w = ctx.weights
    return {
        "tool": "sam_bench",
        "task": "prompted",
        "mode": mode_of(ctx.cfg),
        "model": ctx.cfg.model.name,
        "weights": None if w is None else w.label,
        "untrained": None if w is None else w.untrained,
    }


def _safe_name(image_id: str) -> str:
    """A file-name-safe version of an image id (as the AMG task names its examples)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id) or "_"
