"""Automatic mask generation: per image, the AMG engine's masks scored by the instance metrics.

Stages: ``preprocess`` / ``encoder`` / ``decoder`` / ``postprocess`` (the runner adds
``metrics``). Jobs that differ only in AMG post-processing settings (``amg`` fields whose role
is ``postprocess``, :func:`sam_bench.tasks.amg.settings.amg_fields`) are computed together
with ``engine=fast``: each image is read, converted, encoded and decoded once, and every job
post-processes the shared candidates (:mod:`sam_bench.engines.fast`).

With ``cache.dir`` set (``engine=fast``), encoder outputs come from / go to the on-disk
encoder cache (:mod:`sam_bench.engines.encoder_cache`); the warm-up pass bypasses it. Stage
times and ``latency_ms`` stay what the configuration costs without a cache; ``marginal_ms``
is the time actually spent.

Outputs per job: see :mod:`sam_bench.tasks.amg.writer`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar

from sam_bench.config import Config
from sam_bench.data.base import Sample
from sam_bench.engines import ENGINE_MODULES, GroupEngine, MaskRecord, build_group_engine
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.errors import ConfigError
from sam_bench.metrics.base import Evaluator, Evaluators
from sam_bench.metrics.cost import StageTimes
from sam_bench.metrics.instance import InstanceEvaluator
from sam_bench.tasks.amg.masks import as_instances
from sam_bench.tasks.amg.settings import amg_fields
from sam_bench.tasks.amg.writer import OUTPUTS, RESOURCE, AMGWriter, EngineRun
from sam_bench.tasks.base import JobContext, Task, TaskSpec

log = logging.getLogger(__name__)


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
        encoder_cache=True,
        empty_when=("mask_count_max", 0.0),
        empty_hint=(
            "thresholds too strict for these weights (amg.pred_iou_thresh, "
            "amg.stability_score_thresh: untrained weights keep almost no mask above 0.5), or "
            "a wrong input conversion (preprocess.*: images almost black or uniform after "
            "conversion)"
        ),
        outputs=OUTPUTS,
    )  # fmt: skip
    writer = AMGWriter

    def __init__(self, jobs: list[JobContext]) -> None:
        super().__init__(jobs)
        lead = self.lead
        if lead.model is None:
            raise ValueError("AMGTask needs a model (scoring saved predictions uses a replay)")
        self.cache = open_encoder_cache(jobs)
        self.engine: GroupEngine = build_group_engine(
            lead.model, [c.cfg for c in jobs], lead.device, self.cache
        )
        run = EngineRun(self.engine, self.cache)
        for ctx in jobs:
            ctx.resources[RESOURCE] = run
        self.on_close(self._release)

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
    def preload(cls, cfg: Config) -> tuple[str, ...]:
        """SciPy (scoring) and the engine's module."""
        engine = ENGINE_MODULES.get(cfg.engine)
        return (*InstanceEvaluator.IMPORTS, *([engine] if engine else []))

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        return Evaluators([InstanceEvaluator()], pick=lambda _, masks: as_instances(masks))

    def warmup(self, sample: Sample, inputs: Any) -> dict[str, Any]:
        """On CUDA, one whole untimed pass on the image (kernels loaded and tuned for the
        shapes the timed images use). On the CPU a light pass: the image encoder once on a
        small blank input (:data:`LIGHT_WARMUP_SIZE`). Measured on the CPU (sam2.1 tiny), the
        first timed image's encoder and decoder cost what later images' did after the whole
        pass, the light one or none alike (first / later 0.92-1.08 in each case): the CPU has
        no one-off cost a whole pass would absorb, and the light pass costs a fraction of an
        image."""
        if self.lead.device.type == "cpu":
            light_warmup(self.lead.model, self.lead.cfg.dtype)
            return {"kind": "light", "input": f"{LIGHT_WARMUP_SIZE}x{LIGHT_WARMUP_SIZE} blank"}
        with self.cache.suspended() if self.cache is not None else contextlib.nullcontext():
            self.engine.generate_many(inputs, [StageTimes() for _ in self.jobs])
        return {"kind": "full"}

    def predict(
        self, sample: Sample, inputs: Any, times: list[StageTimes]
    ) -> list[list[MaskRecord]]:
        return self.engine.generate_many(inputs, times)

    def _release(self) -> None:
        """Close the engine and drop every reference to it (and so to the model)."""
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        for ctx in self.jobs:
            ctx.resources.pop(RESOURCE, None)
        del self.engine
        self.cache = None


LIGHT_WARMUP_SIZE = 256
"""Side of the blank image the CPU warm-up encodes (the timed images are encoded at 1024)."""


def light_warmup(model: Any, dtype: str) -> None:
    """The image encoder once on a small blank input (the CPU warm-up, see
    :meth:`AMGTask.warmup`)."""
    import torch

    from sam_bench.engines.base import autocast

    x = torch.zeros(1, 3, LIGHT_WARMUP_SIZE, LIGHT_WARMUP_SIZE)
    with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
        model.forward_image(x)


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
