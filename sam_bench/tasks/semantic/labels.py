"""Class maps of ``task=semantic``: painting labelled masks into a per-pixel map, the map as PNG
pixels and as compact RLEs (the per-item journal), and the dataset's class list."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.data.base import Dataset
from sam_bench.data.semantic_folder import ClassList
from sam_bench.errors import ConfigError
from sam_bench.tasks.semantic.metrics import UNLABELLED


def priority_order(areas: np.ndarray, ious: np.ndarray, rule: str) -> np.ndarray:
    """Mask indices, highest priority first (``semantic.overlap``: ``iou``: highest predicted
    IoU first, ties: smaller area; ``area``: smallest area first, ties: higher predicted IoU;
    then the engine's order)."""
    areas = np.asarray(areas, dtype=np.float64)
    ious = np.asarray(ious, dtype=np.float64)
    index = np.arange(len(areas))
    if rule == "iou":
        return np.lexsort((index, areas, -ious))
    if rule == "area":
        return np.lexsort((index, -ious, areas))
    raise ValueError(f"overlap rule must be 'iou' or 'area', got {rule!r}")


def paint_label_map(
    rles: list[dict[str, Any]],
    labels: list[int] | np.ndarray,
    areas: list[int] | np.ndarray,
    ious: list[float] | np.ndarray,
    rule: str,
    height: int,
    width: int,
) -> np.ndarray:
    """HxW int32 class map: each pixel the label of the highest-priority labelled mask
    covering it, :data:`UNLABELLED` where none does (masks labelled UNLABELLED claim
    nothing)."""
    out = np.full((height, width), UNLABELLED, dtype=np.int32)
    free = np.ones((height, width), dtype=bool)
    for i in priority_order(np.asarray(areas), np.asarray(ious), rule):
        label = int(labels[i])
        if label == UNLABELLED:
            continue
        m = mask_utils.decode(rles[i]).astype(bool) & free
        out[m] = label
        free &= ~m
    return out


def label_png(label_map: np.ndarray) -> tuple[np.ndarray, int]:
    """The map as PNG pixels (uint8, or uint16 when a class index is >= 255) and the value
    standing for "unlabelled" (255 or 65535)."""
    top = int(label_map.max(initial=0))
    dtype, value = (np.uint8, 255) if top < 255 else (np.uint16, 65535)
    out = np.where(label_map == UNLABELLED, value, label_map).astype(dtype)
    return out, value


def label_map_rles(label_map: np.ndarray) -> list[list[Any]]:
    """The map compactly: ``[label, RLE counts]`` per class it holds (pixels of no entry are
    :data:`UNLABELLED`); :func:`label_map_from_rles` gives it back exactly."""
    out: list[list[Any]] = []
    for value in np.unique(label_map):
        if int(value) == UNLABELLED:
            continue
        rle = mask_utils.encode(np.asfortranarray((label_map == value).astype(np.uint8)))
        out.append([int(value), rle_text(rle["counts"])])
    return out


def label_map_from_rles(entries: list[list[Any]], height: int, width: int) -> np.ndarray:
    """The HxW int32 map :func:`label_map_rles` encoded."""
    out = np.full((height, width), UNLABELLED, dtype=np.int32)
    for value, counts in entries:
        rle = {"size": [height, width], "counts": str(counts).encode("ascii")}
        out[mask_utils.decode(rle).astype(bool)] = int(value)
    return out


def rle_text(counts: bytes | str) -> str:
    """RLE counts as JSON text."""
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def classes_of(dataset: Dataset) -> ClassList:
    """The dataset's class list (``semantic_classes()``), or a :class:`ConfigError`."""
    get = getattr(dataset, "semantic_classes", None)
    if not callable(get):
        raise ConfigError(
            "dataset.format",
            f"task semantic needs a class list; dataset.format={getattr(dataset, 'kind', '?')} "
            "has none (use dataset=semantic_folder)",
        )
    classes = get()
    if not isinstance(classes, ClassList):
        raise ConfigError("dataset.classes", "the dataset's class list is not a ClassList")
    return classes
