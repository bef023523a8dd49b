"""The toy task: it builds no model; per image it measures the model input's mean brightness
(its own timed stage, ``toy``) and scores which fraction of ground-truth instance pixels are
brighter than that mean. Its writer saves the "bright" map of every image as a label PNG
(declared output of kind ``label_png``), so the regression check compares it."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.data.base import Sample
from sam_bench.layout import Output
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.tasks.base import Task, TaskSpec, Writer


class ToyEvaluator:
    name = "toy"

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def reset(self) -> None:
        self.rows = []

    def process(self, sample: Sample, prediction: dict[str, Any]) -> dict[str, float]:
        assert sample.gt is not None
        bright = prediction["bright"]
        inside = [mask_utils.decode(r).astype(bool) for r, c in
                  zip(sample.gt.rles, sample.gt.iscrowd, strict=True) if not c]  # fmt: skip
        union = np.any(inside, axis=0) if inside else np.zeros_like(bright)
        agree = float(bright[union].mean()) if union.any() else float("nan")
        row = {"toy_brightness": prediction["mean"] / 255.0, "toy_agreement": agree}
        self.rows.append(row)
        return row

    def evaluate(self) -> dict[str, float]:
        return {k: float(np.nanmean([r[k] for r in self.rows])) for k in self.rows[0]}


class ToyWriter(Writer):
    """Writes each image's bright map as ``predictions/<stem>.png`` (save_predictions=true)."""

    def item(self, sample: Sample, inputs: Any, prediction: Any, saved: int) -> bool:
        if self.ctx.cfg.save_predictions:
            out = self.layout.item_file(ToyTask.spec.outputs[0], sample.ref.image_id, ".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(prediction["bright"].astype(np.uint8)).save(out)
        return False


class ToyTask(Task):
    spec: ClassVar[TaskSpec] = TaskSpec(
        name="toy",
        metrics=("toy_agreement", "toy_brightness"),
        headline=("toy_agreement", "toy_brightness", "latency_ms_p50"),
        objective="toy_agreement",
        pareto=("latency_ms_p50", "toy_agreement"),
        stages=("preprocess", "toy"),
        own_stages=("toy",),
        model=False,
        outputs=(
            Output("bright_maps", "label_png", "predictions/", "1 where a pixel is brighter "
                   "than its image's mean", when="save_predictions"),
        ),
    )  # fmt: skip
    writer = ToyWriter

    @classmethod
    def evaluator_for(cls, ctx: Any, *, live: bool = True) -> ToyEvaluator:
        return ToyEvaluator()

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        clock = Clock(self.lead.device)
        t0 = clock.now()
        gray = np.asarray(inputs, dtype=np.float64).mean(axis=-1)
        out = {"mean": float(gray.mean()), "bright": gray > gray.mean()}
        for t in times:
            t.add("toy", clock.now() - t0)
        return [out for _ in times]
