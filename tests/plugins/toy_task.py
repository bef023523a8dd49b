"""A small task that exists only in the tests: it shows that a new task is a module plus its
configs (``tests/plugins/conf/task/toy.yaml``), registered by a plugin module, and that its
metrics reach summary, console, report, tracking and the objective without any change to
``sam_bench/report/``.

It builds no model: per image it measures the model input's mean brightness (its own timed
stage, ``toy``), and scores which fraction of ground-truth instance pixels are brighter than
that mean.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.data.base import Sample
from sam_bench.metrics.catalogue import Metric, declare
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.registry import register
from sam_bench.tasks.base import Task, TaskSpec

declare(
    Metric("toy_brightness", "neither", "brightness", "mean model-input value / 255, mean over "
           "images", tasks=("toy",), kind="count"),
    Metric("toy_agreement", "higher", "agreement", "fraction of GT instance pixels brighter "
           "than the image mean, mean over images", tasks=("toy",), reference="tests only"),
)  # fmt: skip


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
    )

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


register("task", "toy", "toy_task:ToyTask")
