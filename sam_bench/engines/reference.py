"""The official ``SAM2AutomaticMaskGenerator``, timed by stage.

The generator is used as is. Its predictor's ``set_image`` (image transforms + image encoder)
and ``_predict`` (prompt encoder + mask decoder + upsampling of the logits, for every prompt
batch, m2m refinement included) are wrapped with CUDA-synchronised timers; everything else in
``generate()`` (filtering, NMS, RLE encoding, output formatting) is post-processing, as is
sam_bench's post-filter. Converting the output to compressed RLE for the metrics is not part
of what a SAM 2 user pays and is timed as ``metrics``.

Out of memory: the official generator has no hook between its prompt batches, so an image
whose ``generate()`` fails for lack of memory is run again whole (encoder included) with the
generator's ``points_per_batch`` halved, down to ``limits.oom_min_batch``
(:func:`sam_bench.limits.retry_smaller`); the setting is restored for the next image, and the
failed attempts' seconds count in the image's stages. The RSS budget (``limits.max_rss_gb``)
is checked before every prompt batch (each call of the predictor's ``_predict``).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam_bench import progress
from sam_bench.engines.base import MaskRecord, autocast, release_cuda_memory
from sam_bench.limits import check_budget, retry_smaller
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.models import connected_components

if TYPE_CHECKING:
    from sam_bench.tasks.amg.settings import AMGConfig


def to_compressed_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A generator ``segmentation`` (any ``output_mode``) as a compressed RLE with bytes counts."""
    if isinstance(segmentation, np.ndarray):
        rle = mask_utils.encode(np.asfortranarray(segmentation.astype(np.uint8)))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed_rle
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:  # coco_rle: counts as str
        rle = dict(segmentation)
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return rle


class _StageTimer:
    """What the predictor's timing wrappers write to: the current image's timers and the
    clock. The wrappers hold this and a weak reference to the predictor, never the engine,
    so engine, generator, predictor and model form no reference cycle (dropping the engine
    frees them at once, without waiting for the garbage collector)."""

    __slots__ = ("clock", "prompts", "times")

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.times = StageTimes()
        self.prompts: Any = None
        """The current image's prompt bar (:func:`sam_bench.progress.inner`), if any."""


def _timed(predictor: Any, name: str, stage: str, timer: _StageTimer) -> Callable[..., Any]:
    """``predictor.<name>`` timed into ``timer.times[stage]``. Refers to the predictor weakly:
    stored on the predictor, a strong reference (e.g. its bound method) would be a cycle."""
    method = getattr(type(predictor), name)
    ref = weakref.ref(predictor)

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        with timer.times.measure(stage, timer.clock):
            return method(ref(), *args, **kwargs)

    return timed


def _checked(fn: Callable[..., Any], timer: _StageTimer) -> Callable[..., Any]:
    """``fn`` after a check of the running job's RSS budget (one check per prompt batch);
    a batch of point prompts moves the image's prompt bar (m2m refinement, which passes
    ``mask_input``, does not count again)."""

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_budget("prompt batch")
        out = fn(*args, **kwargs)
        points = args[0] if args else kwargs.get("point_coords")
        if timer.prompts is not None and kwargs.get("mask_input") is None and points is not None:
            timer.prompts.update(len(points))
        return out

    return checked


def n_prompts(generator: Any, image: np.ndarray) -> int:
    """Point prompts ``generator.generate(image)`` decodes: each crop's grid."""
    from sam2.utils.amg import generate_crop_boxes

    _, layer_idxs = generate_crop_boxes(
        (int(image.shape[0]), int(image.shape[1])),
        generator.crop_n_layers,
        generator.crop_overlap_ratio,
    )
    return sum(len(generator.point_grids[i]) for i in layer_idxs)


class ReferenceEngine:
    """sam2's ``SAM2AutomaticMaskGenerator`` with stage timers."""

    def __init__(
        self, model: torch.nn.Module, amg: AMGConfig, device: torch.device, dtype: str = "fp32"
    ) -> None:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        from sam_bench.models.image_predictor import fit_image_predictor

        connected_components.install()
        self.amg = amg
        self.device = device
        self.dtype = dtype
        self.clock = Clock(device)
        self.generator: Any = SAM2AutomaticMaskGenerator(model, **amg.generator_kwargs())
        fit_image_predictor(self.generator.predictor)
        self._timer = _StageTimer(self.clock)
        predictor = self.generator.predictor
        predictor.set_image = _timed(predictor, "set_image", "encoder", self._timer)
        predictor._predict = _checked(
            _timed(predictor, "_predict", "decoder", self._timer), self._timer
        )

    @property
    def cc_impl(self) -> str:
        """The connected-components implementation that runs (see
        :func:`connected_components.implementation`)."""
        return connected_components.implementation(self.device)

    def close(self) -> None:
        """Drop the generator (and with it the predictor, its features and its reference to
        the model); on CUDA, return the freed cached memory. Idempotent."""
        self.generator = None
        release_cuda_memory(self.device)

    def generate(self, image: np.ndarray, times: StageTimes) -> list[MaskRecord]:
        """Run ``generate()`` on ``image``; add encoder/decoder/postprocess seconds to ``times``."""
        if self.generator is None:
            raise RuntimeError("ReferenceEngine is closed")
        self._timer.times = inner = StageTimes()
        t0 = self.clock.now()
        generator = self.generator
        configured = generator.points_per_batch

        def generate(size: int) -> list[dict[str, Any]]:
            generator.points_per_batch = size
            with (
                torch.inference_mode(),
                autocast(self.device, self.dtype),
                progress.inner(n_prompts(generator, image), "prompts", "prompt") as bar,
            ):
                self._timer.prompts = bar
                try:
                    out: list[dict[str, Any]] = generator.generate(image)
                finally:
                    self._timer.prompts = None
            return out

        try:
            anns, _ = retry_smaller(generate, configured, device=self.device)
        finally:
            generator.points_per_batch = configured
        h, w = image.shape[:2]
        limit = self.amg.postfilter.max_area_fraction
        if limit is not None:  # sam_bench's own post-filter (see AMGPostFilterConfig)
            anns = [a for a in anns if a["area"] < limit * h * w]
        t1 = self.clock.now()
        enc, dec = inner.seconds["encoder"], inner.seconds["decoder"]
        times.add("encoder", enc)
        times.add("decoder", dec)
        times.add("postprocess", max(t1 - t0 - enc - dec, 0.0))
        with times.measure("metrics", self.clock):  # RLE conversion is evaluation overhead
            return [
                MaskRecord(
                    rle=to_compressed_rle(a["segmentation"], h, w),
                    area=int(a["area"]),
                    bbox=[float(v) for v in a["bbox"]],
                    predicted_iou=float(a["predicted_iou"]),
                    stability_score=float(a["stability_score"]),
                    point_coords=a["point_coords"],
                    crop_box=[float(v) for v in a["crop_box"]],
                )
                for a in anns
            ]
