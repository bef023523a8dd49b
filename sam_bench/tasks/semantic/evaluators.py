"""The evaluators of ``task=semantic``: a live job's (:func:`live_evaluator`: the semantic
scores of the painted maps plus the instance metrics of the same masks, or mask statistics),
and that of saved class maps (:class:`SavedMapsEvaluator`, ``predictions=DIR``)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from sam_bench.config import PreprocessConfig
from sam_bench.data.base import Dataset, Sample
from sam_bench.data.semantic_folder import ClassInfo, ClassList
from sam_bench.errors import SampleError
from sam_bench.metrics.base import Evaluator, Evaluators
from sam_bench.metrics.instance import InstanceEvaluator, InstancePredictions
from sam_bench.tasks.semantic.figures import MAX_FIGURE_ITEMS, Example
from sam_bench.tasks.semantic.metrics import (
    MaskStatsEvaluator,
    SemanticEvaluator,
    SemanticPrediction,
)
from sam_bench.tasks.semantic.outputs import SavedMap

log = logging.getLogger(__name__)


def live_evaluator(dataset: Dataset, classes: ClassList) -> Evaluator:
    """A computing job's evaluator: :class:`SemanticEvaluator` on the dataset's class list,
    with the instance metrics of the masks where the data has instances
    (:class:`InstanceEvaluator`), else mask counts / coverage / overlap."""
    labelled = classes.labelled
    sem = SemanticEvaluator(
        [c.index for c in labelled], [c.name for c in labelled], classes.void_index
    )
    if "instances" in getattr(dataset, "provides", ()):
        return Evaluators([sem, InstanceEvaluator()], pick=_pick)
    return Evaluators([sem, MaskStatsEvaluator()], pick=_pick)


def _pick(name: str, prediction: SemanticPrediction) -> Any:
    if name == "instance":
        return InstancePredictions(list(prediction.rles), list(prediction.scores))
    return prediction


class SavedMapsEvaluator:
    """The evaluator of saved class maps (``predictions=DIR``): a
    :class:`~sam_bench.tasks.semantic.metrics.SemanticEvaluator` without mask-level values (the
    maps have no masks), on the class list the maps were checked against (the first map brings
    it). It also keeps the first :data:`MAX_FIGURE_ITEMS` images scored (downsampled) for the
    maps figure, and the maps' provenance (untrained) for the figures' note.

    Raises (per item, from :meth:`process`): :class:`SampleError` when a map's size is not
    the ground truth's."""

    name = "semantic"

    def __init__(self, preprocess: PreprocessConfig | None = None) -> None:
        self.preprocess = preprocess if preprocess is not None else PreprocessConfig()
        self.reset()

    def reset(self) -> None:
        self.semantic: SemanticEvaluator | None = None
        self.classes: ClassList | None = None
        self.examples: list[Example] = []
        self.untrained: bool | None = None
        self.untrained_models: tuple[str, ...] = ()

    def process(self, sample: Sample, prediction: SemanticPrediction) -> dict[str, Any]:
        if sample.semantic is None:
            raise ValueError(f"item {sample.ref.image_id} has no semantic ground truth")
        gt = sample.semantic.labels
        pred = prediction.label_map
        path = getattr(prediction, "path", None)
        if pred.shape != gt.shape:
            name = path.name if isinstance(path, Path) else "the prediction"
            raise SampleError(
                path or sample.ref.path,
                f"prediction {name} is {pred.shape[1]}x{pred.shape[0]}, the image's label map "
                f"is {gt.shape[1]}x{gt.shape[0]}",
            )
        if self.semantic is None:
            classes = getattr(prediction, "classes", None)
            if not isinstance(classes, ClassList):
                classes = ClassList(
                    tuple(ClassInfo(i, (n,)) for i, n in sorted(sample.semantic.classes.items())),
                    sample.semantic.void_index,
                )
            labelled = classes.labelled
            self.classes = classes
            self.semantic = SemanticEvaluator(
                [c.index for c in labelled], [c.name for c in labelled], classes.void_index,
                masks=False,
            )  # fmt: skip
        if isinstance(prediction, SavedMap):
            self.untrained = prediction.untrained
            self.untrained_models = prediction.untrained_models
        row = self.semantic.process(sample, prediction)
        if len(self.examples) < MAX_FIGURE_ITEMS and sample.raw is not None:
            self._keep_example(sample, pred)
        return row

    def _keep_example(self, sample: Sample, pred: np.ndarray) -> None:
        from sam_bench.preprocess import to_model_input

        assert sample.raw is not None and sample.semantic is not None
        try:
            image = np.asarray(to_model_input(sample.raw, self.preprocess)[0])
        except Exception as e:  # the figure goes without it; the item is scored
            log.warning("%s: not drawn in the maps figure: %s", sample.ref.image_id, e)
            return
        self.examples.append(Example.of(sample.ref.image_id, image, sample.semantic.labels, pred))

    def evaluate(self) -> dict[str, float]:
        if self.semantic is None:  # no map was scored
            return {"semantic_miou": math.nan, "pixel_acc": math.nan, "unlabelled_frac": math.nan}
        return self.semantic.evaluate()


def semantic_part(evaluator: Evaluator) -> SemanticEvaluator | None:
    """The :class:`SemanticEvaluator` of a job's evaluator (``None`` before any map was
    scored by a :class:`SavedMapsEvaluator`)."""
    if isinstance(evaluator, SemanticEvaluator):
        return evaluator
    if isinstance(evaluator, SavedMapsEvaluator):
        return evaluator.semantic
    for e in getattr(evaluator, "evaluators", []):
        found = semantic_part(e)
        if found is not None:
            return found
    return None
