"""The files of one prompted job (:class:`PromptedWriter`, declared in
:data:`OUTPUTS`):

* ``per_instance.csv``: every annotation (size, status / reason, IoU per click, NoC, the clicks
  and boxes sent);
* ``masks/<stem>.json`` + ``.png`` for the first ``task.save_masks`` images that had an
  instance to prompt (stem: :func:`sam_bench.layout.item_stem` of the image id): ground truth,
  predicted masks and the prompts sent, the layout the sweep report's overlays read;
* ``figures/overlays.png`` (drawn from those examples) and, for ``prompt.mode=clicks``,
  ``figures/clicks_by_size.png`` (mIoU after k clicks by object size);
* with ``save_predictions=true`` ``predictions.json`` (every instance's final mask).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from sam_bench.data.base import Sample
from sam_bench.engines.encoder_cache import EncoderCache
from sam_bench.layout import Output, item_stem
from sam_bench.metrics.base import Evaluator
from sam_bench.prompts.boxes import Detections
from sam_bench.record import atomic_write_text, write_json, write_rows_csv
from sam_bench.tasks.base import JobContext, Writer
from sam_bench.tasks.prompted.identity import protocol
from sam_bench.tasks.prompted.metrics import ImagePrompted, InstanceOutcome
from sam_bench.tasks.prompted.protocols import counts_str
from sam_bench.tasks.prompted.settings import decoder_used, mode_of, prompt_of

log = logging.getLogger(__name__)

PER_INSTANCE_FILE = "per_instance.csv"
PREDICTIONS_FILE = "predictions.json"
MASKS_DIR = "masks"
FIGURES_DIR = "figures"

EXAMPLES = Output(
    "examples", "instance_examples", f"{MASKS_DIR}/",
    "the first task.save_masks images with instances: <stem>.png (the model input) and "
    "<stem>.json (ground truth, predicted masks, prompts sent)", "task.save_masks",
)  # fmt: skip

#: Every file a prompted job may write besides the runner's own.
OUTPUTS = (
    Output("predictions", "instance_rle", PREDICTIONS_FILE,
           "every prompted instance's final mask (RLE) with its score, IoU and prompts",
           "save_predictions"),
    EXAMPLES,
    Output("per_instance", "table_csv", PER_INSTANCE_FILE,
           "one row per annotation: size, status / reason, IoU per click, NoC, prompts sent"),
    Output("overlays", "figure", f"{FIGURES_DIR}/overlays.png",
           "ground truth | prediction of the saved examples, with the prompts sent",
           "task.save_masks"),
    Output("clicks_by_size", "figure", f"{FIGURES_DIR}/clicks_by_size.png",
           "mIoU after k clicks, all instances and by object size", "prompt.mode=clicks"),
)  # fmt: skip


@dataclass
class GroupShared:
    """What the jobs of one task group share and their writers report: the group's encoder
    cache (its statistics) and each job's detector boxes."""

    cache: EncoderCache | None
    detections: Detections | None


#: The key of :class:`GroupShared` in ``JobContext.resources``.
RESOURCE = "prompted"


def share(ctx: JobContext, shared: GroupShared) -> None:
    """Make ``shared`` known to the writer of job ``ctx`` (until :func:`unshare`)."""
    ctx.resources[RESOURCE] = shared


def unshare(ctx: JobContext) -> None:
    ctx.resources.pop(RESOURCE, None)


class PromptedWriter(Writer):
    """Writes one prompted job's declared outputs (:data:`OUTPUTS`)."""

    def __init__(self, ctx: JobContext, *, live: bool = True) -> None:
        super().__init__(ctx, live=live)
        self.untrained = bool(ctx.weights is not None and ctx.weights.untrained)
        self.instance_rows: list[dict[str, Any]] = []
        self.predictions: list[dict[str, Any]] = []
        self.saved: list[str] = []
        self.first_prompts = hashlib.sha256()
        self.all_prompts = hashlib.sha256()
        self.stopped = 0

    # ------------------------------------------------------------------ per item

    def item(self, sample: Sample, inputs: Any, prediction: ImagePrompted, saved: int) -> bool:
        """Collect the job's per-instance rows and prompt fingerprints; write the example
        files of the first ``task.save_masks`` images that had instances to prompt."""
        self._account(sample.ref.image_id, prediction)
        prompted = any(o.status == "ok" for o in prediction.instances)
        if saved >= self.ctx.cfg.task.save_masks or not prompted:
            return False
        self._save_example(sample, inputs, prediction)
        return True

    def _account(self, image_id: str, prediction: ImagePrompted) -> None:
        """Add one image's outcomes to the job's per-instance rows, prompt fingerprints and
        predictions."""
        cfg = self.ctx.cfg
        k = prompt_of(cfg).max_clicks if mode_of(cfg) == "clicks" else None
        for o in prediction.instances:
            self.instance_rows.append({**o.row(k), "untrained": self.untrained})
            if o.stopped is not None:
                self.stopped += 1
        prompted = [o for o in prediction.instances if o.status == "ok"]
        first: list[Any] = [[o.index, o.clicks[:1] if o.clicks else o.box] for o in prompted]
        if prediction.detector_boxes is not None:
            first = [["detector", prediction.detector_boxes]]
        self.first_prompts.update(json.dumps([image_id, first]).encode())
        sent = [[o.index, o.clicks, o.box] for o in prompted]
        self.all_prompts.update(json.dumps([image_id, sent]).encode())
        if cfg.save_predictions:
            self.predictions.extend(prediction_entries(image_id, prompted))

    def _save_example(self, sample: Sample, image: np.ndarray, prediction: ImagePrompted) -> None:
        """``masks/<stem>.png`` (the model input) and ``masks/<stem>.json`` (ground truth,
        predicted masks and the prompts sent), the layout the sweep report's overlays read."""
        out = self.layout.path(EXAMPLES)
        stem = item_stem(sample.ref.image_id)
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out / f"{stem}.png")
        gt = sample.gt
        ground_truth = []
        if gt is not None:
            for rle, crowd in zip(gt.rles, gt.iscrowd, strict=True):
                seg = {"size": list(rle["size"]), "counts": counts_str(rle["counts"])}
                ground_truth.append({"segmentation": seg, "iscrowd": bool(crowd)})
        write_json(
            out / f"{stem}.json",
            {
                "image_id": sample.ref.image_id,
                "path": str(sample.ref.path),
                "image_file": f"{stem}.png",
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
                "mode": prediction.mode,
                "untrained": self.untrained,
                "masks": prediction_entries(sample.ref.image_id, prediction.instances),
                "ground_truth": ground_truth,
                "detector_boxes": prediction.detector_boxes,
            },
        )
        self.saved.append(stem)

    # ------------------------------------------------------------------ resume

    def encode(self, prediction: ImagePrompted) -> Any:
        """The image's outcomes as JSON for the per-item log (``resume=true`` reuses them)."""
        return prediction.to_json()

    def decode(self, data: Any) -> ImagePrompted:
        return ImagePrompted.from_json(data)

    def restore(self, sample: Sample, prediction: ImagePrompted) -> None:
        """A reused image: its outcomes count again; its example files (written by the earlier
        run) are drawn again in the figures."""
        self._account(sample.ref.image_id, prediction)
        example = self.layout.item_file(EXAMPLES, sample.ref.image_id, ".json")
        if example.is_file() and len(self.saved) < self.ctx.cfg.task.save_masks:
            self.saved.append(example.stem)

    # ------------------------------------------------------------------ end of the job

    def finish(self, evaluator: Evaluator) -> dict[str, Any]:
        ctx = self.ctx
        rows = self.instance_rows
        per_instance = ctx.job_dir / PER_INSTANCE_FILE
        if rows:
            write_rows_csv(per_instance, rows)
        else:
            atomic_write_text(per_instance, "image_id,instance,status,reason\n")
        if ctx.cfg.save_predictions:
            write_json(
                ctx.job_dir / PREDICTIONS_FILE,
                {"source": _source(ctx), "predictions": self.predictions},
            )
        shared = ctx.resources.get(RESOURCE, GroupShared(None, None))
        dets, cache = shared.detections, shared.cache
        reasons = Counter(str(r.get("reason")) for r in rows if r.get("status") == "skipped")
        return {
            "prompts": {
                "protocol": protocol(ctx.cfg),
                "fingerprint": self.first_prompts.hexdigest(),
                "sent_sha256": self.all_prompts.hexdigest(),
                "boxes": dets.info() if dets is not None else None,
            },
            "skipped": dict(reasons),
            "stopped_early": self.stopped if mode_of(ctx.cfg) == "clicks" else None,
            "decoder": decoder_used(
                ctx.device.type, ctx.cfg.dtype, prompt_of(ctx.cfg).decoder, ctx.cfg.model.runtime
            ),
            "encoder_cache": cache.info() if cache is not None else None,
            "per_instance_file": PER_INSTANCE_FILE,
        }

    def figures(self, evaluator: Evaluator) -> list[dict[str, str]]:
        from sam_bench.tasks.prompted.figures import clicks_by_size_figure, overlay_figure

        ctx = self.ctx
        cfg = ctx.cfg
        out: list[dict[str, str]] = []
        folder = ctx.job_dir / FIGURES_DIR
        tag = " -- UNTRAINED MODEL (random weights)" if self.untrained else ""
        try:
            if self.saved:
                path = folder / "overlays.png"
                overlay_figure(self.layout.path(EXAMPLES), self.saved, path, tag)
                out.append({
                    "path": f"{FIGURES_DIR}/{path.name}",
                    "caption": f"prompt.mode={mode_of(cfg)}: ground truth | prediction, "
                    "positive clicks green +, negative red x, boxes dashed" + tag,
                })  # fmt: skip
            if mode_of(cfg) == "clicks" and self.instance_rows:
                path = folder / "clicks_by_size.png"
                clicks_by_size_figure(self.instance_rows, prompt_of(cfg).max_clicks, path, tag)
                out.append({
                    "path": f"{FIGURES_DIR}/{path.name}",
                    "caption": "mIoU after k clicks, all instances and by object size" + tag,
                })  # fmt: skip
        except Exception as e:  # a figure must never fail the job
            log.warning("prompted figures of job %s not drawn: %s", ctx.job_dir, e)
        return out


def prediction_entries(image_id: str, outcomes: list[InstanceOutcome]) -> list[dict[str, Any]]:
    """COCO-results-style entries of the instances' final masks (with their prompts)."""
    return [
        {
            "image_id": image_id,
            "instance": o.index,
            "category_id": o.category_id if o.category_id is not None else 1,
            "segmentation": o.rle,
            "score": o.predicted_ious[-1] if o.predicted_ious else None,
            "iou": o.final,
            "clicks": o.clicks,
            "box": o.box,
        }
        for o in outcomes
        if o.rle is not None
    ]


def _source(ctx: JobContext) -> dict[str, Any]:
    w = ctx.weights
    return {
        "tool": "sam_bench",
        "task": "prompted",
        "mode": mode_of(ctx.cfg),
        "model": ctx.cfg.model.name,
        "weights": None if w is None else w.label,
        "untrained": None if w is None else w.untrained,
    }
