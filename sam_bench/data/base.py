"""Types shared by every dataset loader.

A loader lists :class:`ImageRef` s in a stable order (cheap, no pixels read) and loads one
:class:`Sample` at a time, so a bad file costs one item, never the dataset. An item is one
image or one sequence of frames (a video); its ground truth is any of:

* instances (:class:`GroundTruth`: RLE masks, crowd flags, category ids and source areas
  where the source has them) -- every image loader;
* a semantic label map (:class:`SemanticMap`: class index per pixel, a void index);
* per-frame object masks of a video (:class:`VideoTruth`: object id -> RLE per annotated
  frame).

Pixels come back *as stored* (any dtype, 2-D or 3-D with 1-4 channels); turning them into the
HxWx3 uint8 RGB array SAM 2 expects is the job of :mod:`sam_bench.preprocess`, which records
every step. Tasks say which kind of item and ground truth they need
(:attr:`sam_bench.tasks.base.TaskSpec.needs`); a job whose dataset lacks it fails before any
model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ImageRef:
    """One item of a dataset (an image, or a video), before anything is read."""

    image_id: str
    """Stable identifier: the COCO image id (as text), the file stem or the sequence name."""
    path: Path
    """Image file (for a video: its frame folder or video file)."""


@dataclass
class GroundTruth:
    """Instance annotations of one image, as pycocotools compressed RLEs."""

    rles: list[dict[str, Any]]
    """Compressed RLEs (``{"size": [h, w], "counts": bytes}``), one per instance."""
    iscrowd: list[bool]
    """Crowd flag per instance; crowd regions are never counted as instances to find."""
    height: int
    width: int
    category_ids: list[int] | None = None
    """Category id per instance where the source has them (COCO); ``None``: class-agnostic."""
    areas: list[float] | None = None
    """Area per instance as the source states it (COCO's ``area`` field, which COCOeval uses
    for its area ranges); ``None``: the rasterised mask area is used."""

    def __post_init__(self) -> None:
        n = len(self.rles)
        if len(self.iscrowd) != n:
            raise ValueError("rles and iscrowd must have the same length")
        for name in ("category_ids", "areas"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"rles and {name} must have the same length")

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
class SemanticMap:
    """Semantic ground truth of one image: a class index per pixel."""

    labels: np.ndarray
    """HxW integer array of class indices."""
    void_index: int | None
    """Index of pixels ignored everywhere (``None``: none)."""
    classes: dict[int, str]
    """Class index -> name (the void class may be listed)."""


@dataclass
class VideoTruth:
    """Ground truth of a video: object masks on the frames that are annotated."""

    frames: list[Path]
    """Frame files in playback order (JPEG folder layout)."""
    frame_names: list[str]
    """Frame names (file stems), in the same order."""
    masks: dict[int, dict[int, dict[str, Any]]]
    """Frame index -> object id -> compressed RLE, for every annotated frame (objects absent
    from an annotated frame are empty there)."""
    height: int
    width: int

    @property
    def object_ids(self) -> list[int]:
        """Every object id annotated on some frame, sorted."""
        return sorted({o for objs in self.masks.values() for o in objs})


@dataclass
class Sample:
    """One loaded item with its ground truth. Image items have ``raw``; video items have
    ``video`` (frames are read by the task). ``gt`` holds instances where the source has them,
    ``semantic`` a class map."""

    ref: ImageRef
    raw: RawImage | None
    gt: GroundTruth | None
    semantic: SemanticMap | None = None
    video: VideoTruth | None = None

    @property
    def kind(self) -> str:
        """``image`` or ``video``."""
        return "video" if self.video is not None else "image"


#: What a dataset can provide (``Dataset.provides``); tasks name what they need.
PROVIDES = ("instances", "semantic", "video")


class Dataset(Protocol):
    """What the runner needs from a dataset loader."""

    name: str
    kind: str
    """Format name (``coco``, ``instance_folder``, ...)."""
    provides: tuple[str, ...]
    """Kinds of ground truth its samples carry (see :data:`PROVIDES`)."""

    def refs(self) -> list[ImageRef]:
        """Images in the dataset's stable order (``limit`` already applied)."""
        ...

    def load(self, ref: ImageRef) -> Sample:
        """Read one image and its annotations. Raises :class:`SampleError` with the reason."""
        ...

    def fingerprint(self) -> str:
        """sha256 over the image list and the annotations (identifies the evaluated data)."""
        ...
