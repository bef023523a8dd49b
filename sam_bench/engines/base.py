"""Engine protocol and the mask record every engine returns."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from sam_bench.metrics.cost import StageTimes


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast around the model when ``dtype=bf16``; a no-op for fp32."""
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class MaskRecord:
    """One generated mask, as ``SAM2AutomaticMaskGenerator.generate`` describes it."""

    rle: dict[str, Any]
    """pycocotools compressed RLE (``counts`` as bytes), full image size."""
    area: int
    bbox: list[float]
    """XYWH."""
    predicted_iou: float
    stability_score: float
    point_coords: list[list[float]]
    crop_box: list[float]
    """XYWH."""


class AMGEngine(Protocol):
    """Generates masks for one RGB image, filling the encoder/decoder/postprocess timers."""

    #: Connected-components implementation used for ``min_mask_region_area``.
    cc_impl: str

    def generate(self, image: np.ndarray, times: StageTimes) -> list[MaskRecord]:
        """Masks for an HxWx3 uint8 RGB image."""
        ...


class GroupEngine(Protocol):
    """Generates masks for several jobs' configurations from one image."""

    cc_impl: str

    def generate_many(self, image: np.ndarray, times: list[StageTimes]) -> list[list[MaskRecord]]:
        """Masks per configuration; ``times[j]`` receives configuration j's stage times."""
        ...


class SingleAsGroup:
    """A single-configuration engine seen as a group of one."""

    def __init__(self, engine: AMGEngine) -> None:
        self.engine = engine
        self.cc_impl = engine.cc_impl

    def generate_many(self, image: np.ndarray, times: list[StageTimes]) -> list[list[MaskRecord]]:
        (t,) = times
        return [self.engine.generate(image, t)]
