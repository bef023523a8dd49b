"""The evaluator interface every task's metrics implement, and their combination.

Modelled on detectron2's ``DatasetEvaluator`` / ``DatasetEvaluators`` and mmengine's
``BaseMetric``: an evaluator keeps per-item statistics (never whole predictions it does not
need), ``process`` scores one item and returns that item's row values (``per_image.csv``),
``evaluate`` aggregates over the dataset. Evaluators never run a model, so the same evaluators
score predictions that already exist (``predictions=PATH``).
"""

from __future__ import annotations

from typing import Any, Protocol

from sam_bench.data.base import Sample


class Evaluator(Protocol):
    """reset / process / evaluate."""

    name: str

    def reset(self) -> None:
        """Forget every processed item."""
        ...

    def process(self, sample: Sample, prediction: Any) -> dict[str, Any]:
        """Score one item; returns its per-item values."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Aggregate metrics over every processed item."""
        ...


class Evaluators:
    """Several evaluators as one. Each gets the prediction ``pick(name, prediction)`` selects
    (default: the same object); per-item values and aggregates are merged, and two evaluators
    producing the same key is an error (as in detectron2)."""

    name = "combined"

    def __init__(self, evaluators: list[Evaluator], pick: Any = None) -> None:
        names = [e.name for e in evaluators]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluator names must be unique, got {names}")
        self.evaluators = evaluators
        self.pick = pick or (lambda name, prediction: prediction)

    def reset(self) -> None:
        for e in self.evaluators:
            e.reset()

    def _merge(self, parts: list[tuple[str, dict[str, Any]]], what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for name, values in parts:
            for key, value in values.items():
                if key in out:
                    raise ValueError(f"{what} key {key!r} from {name} and {owner[key]}")
                out[key], owner[key] = value, name
        return out

    def process(self, sample: Sample, prediction: Any) -> dict[str, Any]:
        parts = [
            (e.name, e.process(sample, self.pick(e.name, prediction))) for e in self.evaluators
        ]
        return self._merge(parts, "per-item")

    def evaluate(self) -> dict[str, float]:
        return self._merge([(e.name, e.evaluate()) for e in self.evaluators], "metric")
