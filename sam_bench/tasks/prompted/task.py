"""Prompted segmentation: ``SAM2ImagePredictor`` prompted with clicks or boxes derived from the
ground truth, as annotation tools (clicks) and detector pipelines (boxes) use SAM 2.

Protocols (``prompt.mode``; definitions in :mod:`sam_bench.prompts`,
:mod:`~sam_bench.tasks.prompted.protocols` and :mod:`~sam_bench.tasks.prompted.metrics`):

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
decoder call (:class:`~sam_bench.tasks.prompted.decoder.PromptDecoder`). Jobs that differ only in
``prompt.*`` settings are computed together (:meth:`PromptedTask.group_key`): one encoder pass
per image for all of them, each job decoding its own prompts.

GPU memory (``peak_gpu_mem_mb``): each job's own, as alone -- the encoder's peak (the one stored
with the encoder-cache entry when the encoder did not run) combined with the peak of the job's
own decoding, measured after a reset (:func:`sam_bench.metrics.cost.combine_peaks`).

Stages: ``preprocess``, ``encoder`` (shared), ``decoder`` and ``postprocess`` (upsampling and
thresholding; each job's own). What the simulated user does -- decoding the ground truth,
placing clicks, measuring IoUs -- counts as ``metrics``, not latency. An image without an
instance to prompt is not sent to the model: its row says why and it has no latency.

Outputs per job (written by :class:`~sam_bench.tasks.prompted.writer.PromptedWriter`):
``per_instance.csv`` (every annotation: size, status / reason, IoU per click, NoC, the clicks
and boxes sent), ``masks/<stem>.json`` + ``.png`` for the first ``task.save_masks`` images and
the figures drawn from them (``figures/``: overlays with the clicks marked, and for ``clicks``
mIoU after k clicks by object size), and with ``save_predictions=true`` ``predictions.json``
(every instance's final mask).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from typing import Any, ClassVar

import numpy as np

from sam_bench.config import Config
from sam_bench.data.base import Dataset, Sample
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.errors import ConfigError, SampleError
from sam_bench.metrics.cost import Clock, StageTimes, combine_peaks, measured
from sam_bench.models.agreement import AgreementCase, box_case
from sam_bench.prompts.boxes import Detections, read_detections
from sam_bench.tasks.base import JobContext, Task, TaskSpec
from sam_bench.tasks.prompted.decoder import PromptDecoder
from sam_bench.tasks.prompted.identity import prompt_identity, resolve_path
from sam_bench.tasks.prompted.metrics import ImagePrompted, PromptedEvaluator
from sam_bench.tasks.prompted.protocols import ProtocolRunner, Truth, read_truth
from sam_bench.tasks.prompted.settings import MODES, mode_of, prompt_of
from sam_bench.tasks.prompted.writer import OUTPUTS, GroupShared, PromptedWriter, share, unshare

#: Clicks of the warm-up pass (``clicks`` mode): enough to run every kind of decoder call.
WARMUP_CLICKS = 2


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
        encoder_cache=True,
        outputs=OUTPUTS,
    )  # fmt: skip
    writer = PromptedWriter

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        lead = self.lead
        if lead.model is None:
            raise ValueError("the prompted task needs a model")
        self.cache = open_encoder_cache(jobs)
        self.decoder = PromptDecoder(lead.model, lead.device, lead.cfg.dtype, self.cache)
        self.on_close(self._release)
        self.clock = Clock(lead.device)
        self.runner = ProtocolRunner(self.decoder, self.clock)
        self.detections: list[Detections | None] = [
            read_detections(resolve_path(prompt_of(c.cfg).boxes or ""))
            if mode_of(c.cfg) == "box" and prompt_of(c.cfg).boxes
            else None
            for c in jobs
        ]
        for c, dets in zip(jobs, self.detections, strict=True):
            share(c, GroupShared(self.cache, dets))

    def _release(self) -> None:
        for c in self.jobs:
            unshare(c)
        self.decoder.close()
        self.cache = None

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
        """The prompt settings of the job's mode (those of
        :func:`~sam_bench.tasks.prompted.identity.protocol`; ``null`` mode written as
        ``click``), the detector boxes by their file's sha256, never its path."""
        return {"prompt": prompt_identity(config.get("prompt") or {})}

    @classmethod
    def check(cls, cfg: Config, dataset: Dataset | None = None) -> None:
        super().check(cfg, dataset)
        p = prompt_of(cfg)
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
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> PromptedEvaluator:
        p = prompt_of(ctx.cfg)
        return PromptedEvaluator(mode_of(ctx.cfg), p.max_clicks, detector=bool(p.boxes))

    @classmethod
    def agreement_case(cls, cfg: Config, sample: Sample) -> AgreementCase | None:
        """One box per ground-truth instance (its mask's bounding box), one mask each: the
        runtime's masks are compared with eager's per instance."""
        from sam_bench.preprocess import to_model_input

        if sample.raw is None:
            return None
        image, _ = to_model_input(sample.raw, cfg.preprocess)
        truth = read_truth(sample, int(image.shape[0]), int(image.shape[1]))
        return box_case(image, truth.masks)

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
        encoder_peak = self.decoder.set_image(inputs, times)
        gpu = self.decoder.gpu
        try:
            out = []
            for j in range(len(self.jobs)):
                # this job's decoding alone (the features stay allocated), with the encoder's
                # peak: what this configuration costs alone, not the group's peak
                run = functools.partial(self._run, j, truth, times[j], max_clicks)
                pred, own = measured(gpu, run)
                out.append(pred)
                if gpu.cuda:
                    times[j].peak_mb = combine_peaks(encoder_peak, own)
            return out
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
                    dets.for_image(truth.image_id, prompt_of(self.jobs[j].cfg).box_min_score)
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
        p = prompt_of(cfg)
        mode = mode_of(cfg)
        if mode == "click":
            out = self.runner.click(p, truth, times)
        elif mode == "box":
            dets = self.detections[j]
            out = (
                self.runner.box(p, cfg.seed, truth, times)
                if dets is None
                else self.runner.detector_box(p, truth, dets, times)
            )
        else:
            k = p.max_clicks if max_clicks is None else min(max_clicks, p.max_clicks)
            out = self.runner.clicks(p, truth, times, k)
        out.instances.extend(truth.skipped)
        out.instances.sort(key=lambda o: o.index)
        return out
