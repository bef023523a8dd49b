"""The official ``SAM2AutomaticMaskGenerator``, timed by stage.

The generator is used as is. Its predictor's ``set_image`` (image transforms + image encoder)
and ``_predict`` (prompt encoder + mask decoder + upsampling of the logits, for every prompt
batch, m2m refinement included) are wrapped with CUDA-synchronised timers; everything else in
``generate()`` (filtering, NMS, RLE encoding, output formatting) is post-processing, as is
sam_bench's post-filter. Converting the output to compressed RLE for the metrics is not part
of what a SAM 2 user pays and is timed as ``metrics``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam_bench.config import AMGConfig
from sam_bench.engines.base import MaskRecord, autocast
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.models import connected_components


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


class ReferenceEngine:
    """sam2's ``SAM2AutomaticMaskGenerator`` with stage timers."""

    def __init__(
        self, model: torch.nn.Module, amg: AMGConfig, device: torch.device, dtype: str = "fp32"
    ) -> None:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        connected_components.install()
        self.cc_impl = connected_components.implementation(device)
        self.amg = amg
        self.device = device
        self.dtype = dtype
        self.clock = Clock(device)
        self.generator = SAM2AutomaticMaskGenerator(model, **amg.generator_kwargs())
        self._times = StageTimes()
        predictor = self.generator.predictor
        set_image, predict = predictor.set_image, predictor._predict

        def timed_set_image(*args: Any, **kwargs: Any) -> Any:
            with self._times.measure("encoder", self.clock):
                return set_image(*args, **kwargs)

        def timed_predict(*args: Any, **kwargs: Any) -> Any:
            with self._times.measure("decoder", self.clock):
                return predict(*args, **kwargs)

        predictor.set_image = timed_set_image  # type: ignore[method-assign]
        predictor._predict = timed_predict  # type: ignore[method-assign]

    def generate(self, image: np.ndarray, times: StageTimes) -> list[MaskRecord]:
        """Run ``generate()`` on ``image``; add encoder/decoder/postprocess seconds to ``times``."""
        self._times = inner = StageTimes()
        t0 = self.clock.now()
        with torch.inference_mode(), autocast(self.device, self.dtype):
            anns = self.generator.generate(image)
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
