"""An AMG engine's masks as JSON (``predictions.json`` entries, the journal, example files)
and as the instance evaluator sees them. Semantic segmentation builds on the same forms."""

from __future__ import annotations

import re
from typing import Any

from sam_bench.engines import MaskRecord
from sam_bench.metrics.instance import InstancePredictions


def prediction_entries(image_id: str, masks: list[MaskRecord]) -> list[dict[str, Any]]:
    """COCO-results-style entries (``segmentation`` RLE with str counts) for one image."""
    return [
        {
            "image_id": image_id,
            "category_id": 1,
            "segmentation": {"size": list(m.rle["size"]), "counts": counts_str(m.rle["counts"])},
            "score": m.predicted_iou,
            "predicted_iou": m.predicted_iou,
            "stability_score": m.stability_score,
            "area": m.area,
            "bbox": m.bbox,
            "point_coords": m.point_coords,
            "crop_box": m.crop_box,
        }
        for m in masks
    ]


def mask_record(entry: dict[str, Any]) -> MaskRecord:
    """A :class:`MaskRecord` back from its :func:`prediction_entries` form."""
    seg = entry["segmentation"]
    counts = seg["counts"]
    return MaskRecord(
        rle={
            "size": list(seg["size"]),
            "counts": counts.encode() if isinstance(counts, str) else counts,
        },
        area=int(entry["area"]),
        bbox=[float(v) for v in entry["bbox"]],
        predicted_iou=float(entry["predicted_iou"]),
        stability_score=float(entry["stability_score"]),
        point_coords=entry["point_coords"],
        crop_box=[float(v) for v in entry["crop_box"]],
    )


def counts_str(counts: bytes | str) -> str:
    """RLE counts as JSON text."""
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def as_instances(masks: list[MaskRecord] | InstancePredictions) -> InstancePredictions:
    """The instance evaluator's view of an engine's masks (saved predictions already are)."""
    if isinstance(masks, InstancePredictions):
        return masks
    return InstancePredictions([m.rle for m in masks], [m.predicted_iou for m in masks])


def safe_name(image_id: str) -> str:
    """A file-name-safe version of an image id (semantic's example files; AMG names its item
    files by :func:`sam_bench.layout.item_stem`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id) or "_"
