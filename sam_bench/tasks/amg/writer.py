"""The files of an AMG job (:data:`OUTPUTS`) and its ``task_info``.

* ``masks/<stem>.json`` + ``masks/<stem>.png`` for the first ``task.save_masks`` images: the
  predicted and ground-truth RLEs and the model input, so the report's overlays are drawn from
  the sweep folder alone (``<stem>``: :func:`sam_bench.layout.item_stem` of the image id).
* with ``save_predictions=true``, ``predictions.json``: COCO results with RLE masks and scores,
  which ``predictions=PATH`` scores again without a model (:meth:`AMGWriter.read`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam_bench.data.base import Dataset, Sample
from sam_bench.engines import GroupEngine, MaskRecord
from sam_bench.engines.encoder_cache import EncoderCache
from sam_bench.layout import Output
from sam_bench.metrics.base import Evaluator
from sam_bench.record import write_json
from sam_bench.tasks.amg.masks import counts_str, mask_record, prediction_entries
from sam_bench.tasks.amg.settings import amg_settings, prompts_per_image
from sam_bench.tasks.base import JobContext, Writer
from sam_bench.tasks.predictions import read_instance_predictions

PREDICTIONS = Output(
    "predictions",
    "instance_rle",
    "predictions.json",
    "every image's masks: COCO results with RLE masks and scores ({source, predictions})",
    when="save_predictions",
)
EXAMPLES = Output(
    "examples",
    "instance_examples",
    "masks/",
    "the first task.save_masks images: <stem>.json (predicted and ground-truth RLEs) and "
    "<stem>.png (the model input it names as image_file), for the report's overlays",
    when="task.save_masks",
)
#: Every file an AMG job may write besides the runner's own.
OUTPUTS = (PREDICTIONS, EXAMPLES)

#: The key of :class:`EngineRun` in ``JobContext.resources``.
RESOURCE = "amg"


@dataclass
class EngineRun:
    """What the task shares with its jobs' writers while the group runs
    (``JobContext.resources["amg"]``): the group's engine and encoder cache, whose facts each
    job records in ``task_info``."""

    engine: GroupEngine
    cache: EncoderCache | None


class AMGWriter(Writer):
    """Writes an AMG job's :data:`OUTPUTS` (nothing when it scores saved predictions)."""

    def __init__(self, ctx: JobContext, *, live: bool = True) -> None:
        super().__init__(ctx, live=live)
        self.predictions: list[dict[str, Any]] = []

    def item(self, sample: Sample, inputs: Any, prediction: list[MaskRecord], saved: int) -> bool:
        cfg = self.ctx.cfg
        if not self.live:
            return False
        example = saved < cfg.task.save_masks
        if not (cfg.save_predictions or example):
            return False
        entries = prediction_entries(sample.ref.image_id, prediction)
        if example and sample.gt is not None:
            self._save_example(sample, inputs, entries)
        if cfg.save_predictions:
            self.predictions.extend(entries)
        return example

    def encode(self, prediction: list[MaskRecord]) -> Any:
        return prediction_entries("", prediction)

    def decode(self, data: Any) -> list[MaskRecord]:
        return [mask_record(entry) for entry in data]

    def restore(self, sample: Sample, prediction: list[MaskRecord]) -> None:
        if self.live and self.ctx.cfg.save_predictions:
            self.predictions.extend(prediction_entries(sample.ref.image_id, prediction))

    def finish(self, evaluator: Evaluator) -> dict[str, Any]:
        if not self.live:
            return {}
        ctx = self.ctx
        if ctx.cfg.save_predictions:
            write_json(
                self.layout.path(PREDICTIONS),
                {"source": predictions_source(ctx), "predictions": self.predictions},
            )
        run = ctx.resources[RESOURCE]
        assert isinstance(run, EngineRun)
        return {
            "engine": ctx.cfg.engine,
            "cc_impl": run.engine.cc_impl,
            "min_mask_region_area_applied": amg_settings(ctx.cfg).min_mask_region_area > 0,
            "prompts_per_image": prompts_per_image(ctx.cfg),
            "encoder_cache": run.cache.info() if run.cache is not None else None,
        }

    @classmethod
    def read(cls, path: Path, dataset: Dataset) -> Any:
        """A COCO results JSON (list, or ``{"predictions": [...]}``) with RLE masks."""
        return read_instance_predictions(path, dataset)

    def _save_example(
        self, sample: Sample, image: np.ndarray, entries: list[dict[str, Any]]
    ) -> None:
        """``masks/<stem>.json`` (predicted + ground-truth RLEs) and ``masks/<stem>.png`` (the
        model input)."""
        gt = sample.gt
        assert gt is not None
        image_id = sample.ref.image_id
        png = self.layout.item_file(EXAMPLES, image_id, ".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(png)
        gt_entries = [
            {"segmentation": {"size": list(r["size"]), "counts": counts_str(r["counts"])},
             "iscrowd": bool(c)}
            for r, c in zip(gt.rles, gt.iscrowd, strict=True)
        ]  # fmt: skip
        write_json(
            self.layout.item_file(EXAMPLES, image_id, ".json"),
            {
                "image_id": image_id,
                "path": str(sample.ref.path),
                "image_file": png.name,
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "masks": entries,
                "ground_truth": gt_entries,
            },
        )


def predictions_source(ctx: JobContext) -> dict[str, Any]:
    """What produced a ``predictions.json`` (carried into a job that scores it again)."""
    w = ctx.weights
    return {
        "tool": "sam_bench",
        "model": ctx.cfg.model.name,
        "weights": None if w is None else w.label,
        "untrained": None if w is None else w.untrained,
    }
