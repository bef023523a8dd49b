"""Types shared by every dataset loader.

A loader lists :class:`ImageRef` s in a stable order (cheap, no pixels read) and loads one
:class:`Sample` at a time, so a bad file costs one image, never the dataset. Pixels come back
*as stored* (any dtype, 2-D or 3-D with 1-4 channels); turning them into the HxWx3 uint8 RGB
array SAM 2 expects is the job of :mod:`sam_bench.preprocess`, which records every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ImageRef:
    """One image of a dataset, before anything is read."""

    image_id: str
    """Stable identifier: the COCO image id (as text) or the file stem."""
    path: Path
    """Image file."""


@dataclass
class GroundTruth:
    """Instance annotations of one image, as pycocotools compressed RLEs."""

    rles: list[dict[str, Any]]
    """Compressed RLEs (``{"size": [h, w], "counts": bytes}``), one per instance."""
    iscrowd: list[bool]
    """Crowd flag per instance; crowd regions are never counted as instances to find."""
    height: int
    width: int

    def __post_init__(self) -> None:
        if len(self.rles) != len(self.iscrowd):
            raise ValueError("rles and iscrowd must have the same length")

    @property
    def n_instances(self) -> int:
        """Number of instances to find (crowd regions excluded)."""
        return sum(not c for c in self.iscrowd)


@dataclass
class RawImage:
    """Decoded pixels exactly as stored, plus a description of how they were stored."""

    pixels: np.ndarray
    """HxW or HxWxC array, dtype as stored (uint8, uint16, float...)."""
    mode: str
    """Storage description, e.g. ``"PIL:RGBA"``, ``"PIL:I;16"``, ``"tiff:uint16x1"``."""
    notes: list[str] = field(default_factory=list)
    """Conversions the reader itself had to make (e.g. palette expanded to RGB)."""


@dataclass
class Sample:
    """One loaded image with its ground truth."""

    ref: ImageRef
    raw: RawImage
    gt: GroundTruth


class Dataset(Protocol):
    """What the runner needs from a dataset loader."""

    name: str

    def refs(self) -> list[ImageRef]:
        """Images in the dataset's stable order (``limit`` already applied)."""
        ...

    def load(self, ref: ImageRef) -> Sample:
        """Read one image and its annotations. Raises :class:`SampleError` with the reason."""
        ...

    def fingerprint(self) -> str:
        """sha256 over the image list and the annotations (identifies the evaluated data)."""
        ...
