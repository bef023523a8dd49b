"""Engine protocol and the mask record every engine returns."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sam_bench.metrics.cost import StageTimes

if TYPE_CHECKING:  # torch is imported where a model runs: tasks read MaskRecord without it
    import torch


def release_cuda_memory(device: torch.device) -> None:
    """Return the CUDA caching allocator's unused blocks on ``device`` to the driver (after an
    engine dropped its tensors); nothing on other devices."""
    import torch

    if device.type == "cuda" and torch.cuda.is_initialized():
        with torch.cuda.device(device):
            torch.cuda.empty_cache()


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast around the model when ``dtype=bf16``; a no-op for fp32."""
    if dtype == "bf16":
        import torch

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

    @property
    def cc_impl(self) -> str:
        """Connected-components implementation used for ``min_mask_region_area`` (read at
        the end of a job: what actually ran)."""
        ...

    def generate(self, image: np.ndarray, times: StageTimes) -> list[MaskRecord]:
        """Masks for an HxWx3 uint8 RGB image."""
        ...

    def close(self) -> None:
        """Drop the engine's references to the model and predictor (and, on CUDA, return
        cached memory); the engine cannot generate afterwards. Idempotent."""
        ...


class GroupEngine(Protocol):
    """Generates masks for several jobs' configurations from one image."""

    @property
    def cc_impl(self) -> str: ...

    def generate_many(self, image: np.ndarray, times: list[StageTimes]) -> list[list[MaskRecord]]:
        """Masks per configuration; ``times[j]`` receives configuration j's stage times."""
        ...

    def close(self) -> None:
        """As :meth:`AMGEngine.close`."""
        ...


class SingleAsGroup:
    """A single-configuration engine seen as a group of one."""

    def __init__(self, engine: AMGEngine) -> None:
        self.engine = engine

    @property
    def cc_impl(self) -> str:
        return self.engine.cc_impl

    def generate_many(self, image: np.ndarray, times: list[StageTimes]) -> list[list[MaskRecord]]:
        (t,) = times
        return [self.engine.generate(image, t)]

    def close(self) -> None:
        self.engine.close()
