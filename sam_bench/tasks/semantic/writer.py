"""The files a ``task=semantic`` job writes (:data:`OUTPUTS`, declared in the task's spec) and
reading saved class maps back (:meth:`SemanticWriter.read`).

Per job: ``per_class.csv`` (IoU, pixels, precision and recall per class); for the first
``task.save_masks`` images ``masks/<stem>.json`` (masks with label, class name and confidence),
``masks/<stem>.png`` (the model input) and ``masks/<stem>_semantic.png`` (the predicted class
map: class indices, "unlabelled" = 255, or 65535 with indices >= 255); with
``save_predictions=true`` the same map of every image in ``predictions/`` and all masks in
``predictions.json``; figures (a confusion matrix, and predicted maps beside the ground truth
with the class legend) under ``figures/``. ``<stem>`` is the image id's
:func:`~sam_bench.layout.item_stem`.

A job scoring saved maps (``live=False``) writes ``per_class.csv`` and the figures only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.data.base import Dataset, Sample
from sam_bench.data.semantic_folder import ClassList
from sam_bench.engines import MaskRecord
from sam_bench.layout import Output, item_stem
from sam_bench.metrics.base import Evaluator
from sam_bench.record import write_json, write_rows_csv
from sam_bench.tasks.amg.masks import prediction_entries
from sam_bench.tasks.base import JobContext, Writer
from sam_bench.tasks.semantic.evaluators import SavedMapsEvaluator, semantic_part
from sam_bench.tasks.semantic.figures import (
    CONFUSION_FILE,
    FIGURES_DIR,
    MAPS_FILE,
    MAX_FIGURE_ITEMS,
    Example,
    draw_figures,
)
from sam_bench.tasks.semantic.labels import (
    classes_of,
    label_map_from_rles,
    label_map_rles,
    label_png,
    rle_text,
)
from sam_bench.tasks.semantic.metrics import UNLABELLED, SemanticPrediction
from sam_bench.tasks.semantic.outputs import ClassMapFolder

MASKS_DIR = "masks"
PREDICTIONS_DIR = "predictions"
PREDICTIONS_FILE = "predictions.json"
PER_CLASS_FILE = "per_class.csv"

#: Every file a semantic job may write besides the runner's own.
OUTPUTS: tuple[Output, ...] = (
    Output(
        "label_maps", "label_png", f"{PREDICTIONS_DIR}/",
        "the predicted class map of every image (<stem>.png: class indices; 'unlabelled' 255 "
        "in 8-bit PNGs, 65535 in 16-bit ones)", "save_predictions",
    ),
    Output(
        "predictions", "instance_rle", PREDICTIONS_FILE,
        "every mask of every image (RLE) with its label, class name and confidence, and the "
        "class list", "save_predictions",
    ),
    Output(
        "examples", "instance_examples", f"{MASKS_DIR}/",
        "the first images: <stem>.json (masks, labels, ground truth), <stem>.png (the model "
        "input), <stem>_semantic.png (the predicted class map)", "task.save_masks",
    ),
    Output("per_class", "table_csv", PER_CLASS_FILE,
           "IoU, pixels, precision and recall per class"),
    Output("confusion", "figure", f"{FIGURES_DIR}/{CONFUSION_FILE}",
           "confusion matrix, rows normalised (void ignored)"),
    Output("maps_figure", "figure", f"{FIGURES_DIR}/{MAPS_FILE}",
           "predicted class maps beside the ground truth, with the class legend"),
)  # fmt: skip


@dataclass
class LiveJob:
    """What only the computing task knows of a job (its CLIP, text prompts, engine), handed to
    the job's writer through the job's context (:func:`attach`)."""

    task_info: Callable[[], dict[str, Any]]
    """The job's ``task_info`` entries from the model side (asked at the job's end)."""
    untrained_models: list[str]
    """Networks besides SAM 2 that ran with random weights (the record's banner names them)."""


#: The key of :class:`LiveJob` in ``JobContext.resources``.
RESOURCE = "semantic"


def attach(ctx: JobContext, job: LiveJob) -> None:
    """Give the writer of job ``ctx`` what the task knows of it (until :func:`detach`)."""
    ctx.resources[RESOURCE] = job


def detach(ctx: JobContext) -> None:
    """Drop what :func:`attach` gave ``ctx`` (the task closes: its models are released)."""
    ctx.resources.pop(RESOURCE, None)


def live_job(ctx: JobContext) -> LiveJob | None:
    """What :func:`attach` gave ``ctx`` (``None``: no computing task did)."""
    job = ctx.resources.get(RESOURCE)
    return job if isinstance(job, LiveJob) else None


class SemanticWriter(Writer):
    """Writes one semantic job's :data:`OUTPUTS` (see the module docstring)."""

    def __init__(self, ctx: JobContext, *, live: bool = True) -> None:
        super().__init__(ctx, live=live)
        self._classes: ClassList | None = None
        self.examples: list[Example] = []
        """Images kept (downsampled) for the predicted-maps figure."""
        self.saved_examples = 0
        """Items saved as examples (``masks/``), computed or reused."""
        self.predictions: list[dict[str, Any]] = []

    @property
    def classes(self) -> ClassList:
        if self._classes is None:
            self._classes = classes_of(self.ctx.dataset)
        return self._classes

    @property
    def untrained_models(self) -> list[str]:
        job = live_job(self.ctx)
        return list(job.untrained_models) if job is not None else []

    # ------------------------------------------------------------------ per item

    def item(self, sample: Sample, inputs: Any, prediction: SemanticPrediction, saved: int) -> bool:
        ctx = self.ctx
        example = saved < ctx.cfg.task.save_masks
        if not (ctx.cfg.save_predictions or example):
            return False
        stem = item_stem(sample.ref.image_id)
        entries = self._entries(sample.ref.image_id, prediction)
        png, value = label_png(prediction.label_map)
        if example:
            out = ctx.job_dir / MASKS_DIR
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(inputs)).save(out / f"{stem}.png")
            Image.fromarray(png).save(out / f"{stem}_semantic.png")
            write_json(out / f"{stem}.json", {
                "image_id": sample.ref.image_id, "path": str(sample.ref.path),
                "image_file": f"{stem}.png", "semantic_file": f"{stem}_semantic.png",
                "unlabelled_value": value, "height": int(png.shape[0]),
                "width": int(png.shape[1]), "classes": self.classes.names, "masks": entries,
                "ground_truth": _gt_entries(sample),
            })  # fmt: skip
            self.saved_examples += 1
            self._keep_example(sample, np.asarray(inputs), prediction)
        if ctx.cfg.save_predictions:
            out = ctx.job_dir / PREDICTIONS_DIR
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(png).save(out / f"{stem}.png")
            self.predictions.extend(entries)
        return example

    def _keep_example(
        self, sample: Sample, image: np.ndarray, prediction: SemanticPrediction
    ) -> None:
        """Keep an example image (downsampled) for the predicted-maps figure."""
        if len(self.examples) < MAX_FIGURE_ITEMS and sample.semantic is not None:
            self.examples.append(
                Example.of(sample.ref.image_id, image, sample.semantic.labels,
                           prediction.label_map)
            )  # fmt: skip

    def _entries(self, image_id: str, p: SemanticPrediction) -> list[dict[str, Any]]:
        masks = [
            MaskRecord(rle=r, area=int(mask_utils.area(r)), bbox=[float(v) for v in
                       mask_utils.toBbox(r)], predicted_iou=s, stability_score=float("nan"),
                       point_coords=[], crop_box=[])
            for r, s in zip(p.rles, p.scores, strict=True)
        ]  # fmt: skip
        entries = prediction_entries(image_id, masks)
        for e, label, best, conf in zip(entries, p.labels, p.best, p.confidences, strict=True):
            for key in ("stability_score", "point_coords", "crop_box"):
                e.pop(key, None)
            e["label"] = label
            e["label_name"] = "unlabelled" if label == UNLABELLED else self.classes.name_of(label)
            e["best_class"] = best
            e["confidence"] = conf
        return entries

    # ------------------------------------------------------------------ resume

    def encode(self, prediction: SemanticPrediction) -> Any:
        """The image's prediction as JSON for the per-item log (``resume=true`` reuses it):
        the masks as RLE with their scores, labels and confidences, the painted map as one RLE
        per class, and the CLIP time (``clip_ms_per_mask`` counts it)."""
        h, w = prediction.label_map.shape
        return {
            "size": [int(h), int(w)],
            "masks": [
                {"size": [int(v) for v in r["size"]], "counts": rle_text(r["counts"])}
                for r in prediction.rles
            ],
            "scores": [float(v) for v in prediction.scores],
            "labels": [int(v) for v in prediction.labels],
            "confidences": [float(v) for v in prediction.confidences],
            "best": [int(v) for v in prediction.best],
            "clip_seconds": float(prediction.clip_seconds),
            "label_map": label_map_rles(prediction.label_map),
        }

    def decode(self, data: Any) -> SemanticPrediction:
        h, w = (int(v) for v in data["size"])
        return SemanticPrediction(
            label_map=label_map_from_rles(data["label_map"], h, w),
            rles=[
                {"size": [int(v) for v in m["size"]], "counts": str(m["counts"]).encode("ascii")}
                for m in data["masks"]
            ],
            scores=[float(v) for v in data["scores"]],
            labels=[int(v) for v in data["labels"]],
            confidences=[float(v) for v in data["confidences"]],
            best=[int(v) for v in data["best"]],
            clip_seconds=float(data["clip_seconds"]),
        )

    def restore(self, sample: Sample, prediction: SemanticPrediction) -> None:
        """A reused image: its masks go into ``predictions.json`` again; an example the earlier
        run saved (``masks/<stem>.json``) counts again and is drawn again in the maps figure
        (from the model input it saved as ``masks/<stem>.png``)."""
        ctx = self.ctx
        stem = item_stem(sample.ref.image_id)
        example = ctx.job_dir / MASKS_DIR / f"{stem}.json"
        if example.is_file() and self.saved_examples < ctx.cfg.task.save_masks:
            self.saved_examples += 1
            try:
                with Image.open(ctx.job_dir / MASKS_DIR / f"{stem}.png") as im:
                    image = np.asarray(im.convert("RGB"))
            except OSError:
                image = self._model_input(sample)
            self._keep_example(sample, image, prediction)
        if ctx.cfg.save_predictions:
            path = ctx.job_dir / PREDICTIONS_DIR / f"{stem}.png"
            if not path.is_file():  # written by the earlier run, unless it was removed since
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(label_png(prediction.label_map)[0]).save(path)
            self.predictions.extend(self._entries(sample.ref.image_id, prediction))

    def _model_input(self, sample: Sample) -> np.ndarray:
        from sam_bench.preprocess import to_model_input

        if sample.raw is None:
            raise ValueError(f"item {sample.ref.image_id} has no image")
        return np.asarray(to_model_input(sample.raw, self.ctx.cfg.preprocess)[0])

    # ------------------------------------------------------------------ the job's end

    def finish(self, evaluator: Evaluator) -> dict[str, Any]:
        """``per_class.csv`` from the job's confusion matrix; a computing job also writes
        ``predictions.json`` and returns what the task knows of its CLIP, prompts and
        engine."""
        scores = self._per_class(evaluator)
        if not self.live:
            return scores
        ctx = self.ctx
        if ctx.cfg.save_predictions:
            untrained = bool(self.untrained_models) or (
                ctx.weights is not None and ctx.weights.untrained
            )
            write_json(ctx.job_dir / PREDICTIONS_FILE, {
                "source": {"tool": "sam_bench", "task": "semantic", "model": ctx.cfg.model.name,
                           "untrained": untrained},
                "classes": self.classes.names, "predictions": self.predictions,
            })  # fmt: skip
        job = live_job(ctx)
        return {
            **(job.task_info() if job is not None else {}),
            "void_index": self.classes.void_index,
            "per_class_file": PER_CLASS_FILE,
        }

    def _per_class(self, evaluator: Evaluator) -> dict[str, Any]:
        ev = semantic_part(evaluator)
        if ev is None:
            return {"per_class_file": None}
        write_rows_csv(self.ctx.job_dir / PER_CLASS_FILE, ev.per_class_rows())
        return {"per_class_file": PER_CLASS_FILE, "void_index": ev.void_index}

    def figures(self, evaluator: Evaluator) -> list[dict[str, str]]:
        """The confusion matrix, and the predicted maps beside the ground truth (the examples
        kept: this writer's, or the saved-maps evaluator's)."""
        ev = semantic_part(evaluator)
        if ev is None:
            return []
        ctx = self.ctx
        flag = ctx.weights.untrained if ctx.weights is not None else None
        if self.live:
            untrained = [*(["SAM 2"] if flag else []),
                         *(["CLIP"] if self.untrained_models else [])]  # fmt: skip
            note = f"UNTRAINED ({' and '.join(untrained)} random weights)" if untrained else ""
            return draw_figures(ctx.job_dir, ev, self.examples, self.classes, note)
        examples: list[Example] = []
        classes: ClassList | None = None
        names: list[str] = []
        if isinstance(evaluator, SavedMapsEvaluator):
            examples, classes = evaluator.examples, evaluator.classes
            if flag is None:
                flag = evaluator.untrained
            names = list(evaluator.untrained_models)
        elif flag:
            names = ["SAM 2"]
        note = ""
        if flag:
            listed = " and ".join(names)
            note = f"UNTRAINED ({listed + ' ' if listed else ''}random weights)"
        return draw_figures(ctx.job_dir, ev, examples, classes, note)

    @classmethod
    def read(cls, path: Path, dataset: Dataset) -> ClassMapFolder:
        """A folder of class-index PNGs, ``<image stem>.png`` (what ``save_predictions=true``
        writes into ``<job>/predictions/``, or any semantic segmenter's maps), or a job folder
        holding one (:mod:`sam_bench.tasks.semantic.outputs`)."""
        return ClassMapFolder(path, dataset, classes_of(dataset))


def _gt_entries(sample: Sample) -> list[dict[str, Any]]:
    """Instance ground truth (where the data has it) as the AMG task saves it."""
    if sample.gt is None:
        return []
    return [
        {"segmentation": {"size": list(r["size"]), "counts": rle_text(r["counts"])},
         "iscrowd": bool(c)}
        for r, c in zip(sample.gt.rles, sample.gt.iscrowd, strict=True)
    ]  # fmt: skip
