"""The prompted task's protocols on one image: the prompts a simulated user derives from the
ground truth, decoded against the image's embedding in batches, and each instance's outcome.

* :func:`read_truth`: the image's instances to prompt (crowd regions and empty masks are
  skipped with their reason).
* :class:`ProtocolRunner`: ``click`` (one positive click, 3 masks, highest predicted IoU kept,
  oracle recorded), ``box`` (tight ground-truth boxes, optionally jittered), ``detector_box``
  (a detector's boxes matched to ground truth) and ``clicks`` (RITM / SimpleClick iterative
  clicks with the previous low-res logits fed back). Definitions: :mod:`sam_bench.prompts.clicks`,
  :mod:`sam_bench.prompts.boxes`, :mod:`sam_bench.tasks.prompted.metrics`.

Timing: decoder calls add to the ``decoder`` / ``postprocess`` stages (what a SAM 2 user pays);
placing clicks and measuring IoUs against the ground truth add to ``metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam_bench.data.base import GroundTruth, Sample
from sam_bench.errors import SampleError
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.prompts.boxes import (
    Detections,
    box_iou,
    instance_rng,
    jitter_box,
    match_detections,
    tight_box,
)
from sam_bench.prompts.clicks import Click, first_click, next_click
from sam_bench.tasks.prompted.decoder import Decoded, PromptDecoder
from sam_bench.tasks.prompted.metrics import ImagePrompted, InstanceOutcome, mask_iou
from sam_bench.tasks.prompted.settings import PromptConfig


@dataclass
class Truth:
    """The image's annotations: the instances to prompt (bool masks) and those skipped."""

    image_id: str
    height: int
    width: int
    masks: list[np.ndarray] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    categories: list[int | None] = field(default_factory=list)
    skipped: list[InstanceOutcome] = field(default_factory=list)

    def outcome(self, i: int) -> InstanceOutcome:
        """A fresh outcome for instance ``i`` of :attr:`masks`."""
        return InstanceOutcome(
            self.image_id, self.index[i], self.areas[i], category_id=self.categories[i]
        )


def read_truth(sample: Sample, height: int, width: int) -> Truth:
    """Decode the instances to prompt; crowd regions and empty masks are skipped with a
    reason. Raises :class:`SampleError` when the annotation size is not the image's."""
    gt: GroundTruth | None = sample.gt
    truth = Truth(sample.ref.image_id, height, width)
    if gt is None:
        return truth
    if (gt.height, gt.width) != (height, width):
        raise SampleError(
            sample.ref.path,
            f"annotations are {gt.width}x{gt.height} but the image is {width}x{height}",
        )
    for i, (rle, crowd) in enumerate(zip(gt.rles, gt.iscrowd, strict=True)):
        cat = gt.category_ids[i] if gt.category_ids is not None else None
        if crowd:
            area = float(gt.areas[i]) if gt.areas is not None else float(mask_utils.area(rle))
            truth.skipped.append(
                InstanceOutcome(truth.image_id, i, area, cat, status="skipped",
                                reason="crowd region (iscrowd): never an instance to prompt")
            )  # fmt: skip
            continue
        mask = np.asarray(mask_utils.decode(rle), dtype=bool)
        pixels = int(np.count_nonzero(mask))
        area = float(gt.areas[i]) if gt.areas is not None else float(pixels)
        if pixels == 0:
            truth.skipped.append(
                InstanceOutcome(truth.image_id, i, area, cat, status="skipped",
                                reason="empty mask (0 pixels once rasterised): nothing to click")
            )  # fmt: skip
            continue
        truth.masks.append(mask)
        truth.index.append(i)
        truth.areas.append(area)
        truth.categories.append(cat)
    return truth


def _batches(n: int, size: int) -> list[range]:
    return [range(s, min(s + size, n)) for s in range(0, n, size)]


def rle_of(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": counts_str(rle["counts"])}


def counts_str(counts: bytes | str) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


class ProtocolRunner:
    """Runs one job's protocol on the image set in ``decoder`` (see the module docstring)."""

    def __init__(self, decoder: PromptDecoder, clock: Clock) -> None:
        self.decoder = decoder
        self.clock = clock

    def _decode(
        self, p: PromptConfig, times: StageTimes, out: ImagePrompted, n: int, **prompts: Any
    ) -> Decoded:
        dec = self.decoder.decode(factored=p.decoder == "factored", **prompts)
        times.add("decoder", dec.decoder_s)
        times.add("postprocess", dec.postprocess_s)
        out.decoder_s += dec.decoder_s
        out.n_prompts += n
        return dec

    def click(self, p: PromptConfig, truth: Truth, times: StageTimes) -> ImagePrompted:
        out = ImagePrompted("click", [])
        clicks = [first_click(m) for m in truth.masks]
        for batch in _batches(len(truth.masks), p.batch_size):
            coords = np.array([[[clicks[i].x, clicks[i].y]] for i in batch], dtype=np.float64)  # type: ignore[union-attr]
            labels = np.ones((len(batch), 1), dtype=np.int64)
            dec = self._decode(p, times, out, len(batch), point_coords=coords, point_labels=labels,
                               multimask_output=True)  # fmt: skip
            with times.measure("metrics", self.clock):
                for b, i in enumerate(batch):
                    o = truth.outcome(i)
                    ious = [
                        mask_iou(dec.masks[b, c], truth.masks[i]) for c in range(dec.masks.shape[1])
                    ]
                    kept = int(np.argmax(dec.iou_predictions[b]))
                    o.ious = [ious[kept]]
                    o.predicted_ious = [float(dec.iou_predictions[b, kept])]
                    o.oracle_iou = max(ious)
                    o.clicks = [clicks[i].as_list()]  # type: ignore[union-attr]
                    o.rle = rle_of(dec.masks[b, kept])
                    out.instances.append(o)
        return out

    def gt_boxes(self, p: PromptConfig, seed: int, truth: Truth) -> list[np.ndarray]:
        boxes = []
        for i, m in enumerate(truth.masks):
            box = tight_box(m)
            assert box is not None  # empty masks were skipped
            if p.box_jitter > 0:
                rng = instance_rng(seed, truth.image_id, truth.index[i])
                box = jitter_box(box, p.box_jitter, rng, truth.width, truth.height)
            boxes.append(box)
        return boxes

    def box(self, p: PromptConfig, seed: int, truth: Truth, times: StageTimes) -> ImagePrompted:
        out = ImagePrompted("box", [])
        boxes = self.gt_boxes(p, seed, truth)
        for batch in _batches(len(boxes), p.batch_size):
            arr = np.stack([boxes[i] for i in batch])
            dec = self._decode(p, times, out, len(batch), box=arr, multimask_output=False)
            with times.measure("metrics", self.clock):
                for b, i in enumerate(batch):
                    o = truth.outcome(i)
                    o.ious = [mask_iou(dec.masks[b, 0], truth.masks[i])]
                    o.predicted_ious = [float(dec.iou_predictions[b, 0])]
                    o.box = [float(v) for v in boxes[i]]
                    o.rle = rle_of(dec.masks[b, 0])
                    out.instances.append(o)
        return out

    def detector_box(
        self, p: PromptConfig, truth: Truth, dets: Detections, times: StageTimes
    ) -> ImagePrompted:
        out = ImagePrompted("box", [])
        found = dets.for_image(truth.image_id, p.box_min_score)
        det_boxes = np.array([b for b, _ in found], dtype=np.float64).reshape(-1, 4)
        scores = np.array([s for _, s in found], dtype=np.float64)
        gt_boxes = np.stack([tight_box(m) for m in truth.masks])  # type: ignore[misc]
        match = match_detections(det_boxes, scores, gt_boxes, p.box_match_iou)
        masks: list[np.ndarray] = []
        pred_iou: list[float] = []
        for batch in _batches(len(found), p.batch_size):
            dec = self._decode(p, times, out, len(batch), box=det_boxes[batch.start : batch.stop],
                               multimask_output=False)  # fmt: skip
            masks.extend(dec.masks[:, 0])
            pred_iou.extend(float(v) for v in dec.iou_predictions[:, 0])
        out.n_unmatched_boxes = int(len(found) - np.count_nonzero(match >= 0))
        with times.measure("metrics", self.clock):
            ious = box_iou(det_boxes, gt_boxes) if len(found) else None
            for i, gt in enumerate(truth.masks):
                o = truth.outcome(i)
                d = int(match[i])
                if d < 0:
                    o.status, o.reason, o.ious = "missed", "no detection matched it", [0.0]
                else:
                    o.ious = [mask_iou(masks[d], gt)]
                    o.predicted_ious = [pred_iou[d]]
                    o.box = [float(v) for v in det_boxes[d]]
                    o.det_score = float(scores[d])
                    o.det_box_iou = float(ious[d, i]) if ious is not None else None
                    o.rle = rle_of(masks[d])
                out.instances.append(o)
        out.detector_boxes = [[float(v) for v in b] for b in det_boxes]
        return out

    def clicks(self, p: PromptConfig, truth: Truth, times: StageTimes, k_max: int) -> ImagePrompted:
        out = ImagePrompted("clicks", [])
        n = len(truth.masks)
        outcomes = [truth.outcome(i) for i in range(n)]
        clicks: list[list[Click]] = [[] for _ in range(n)]
        preds: list[np.ndarray | None] = [None] * n
        logits: list[torch.Tensor | None] = [None] * n
        active = list(range(n))
        for k in range(1, k_max + 1):
            with times.measure("metrics", self.clock):
                going = []
                for i in active:
                    c = (
                        first_click(truth.masks[i])
                        if k == 1
                        else next_click(truth.masks[i], preds[i], clicks[i])  # type: ignore[arg-type]
                    )
                    if c is None:  # no error pixel left: the mask stays as it is
                        outcomes[i].stopped = k - 1
                        continue
                    clicks[i].append(c)
                    going.append(i)
                active = going
            multimask = k == 1 and p.first_multimask
            for batch in _batches(len(active), p.batch_size):
                idx = [active[b] for b in batch]
                coords = np.array([[[c.x, c.y] for c in clicks[i]] for i in idx], dtype=np.float64)
                labels = np.array([[c.label for c in clicks[i]] for i in idx], dtype=np.int64)
                mask_input = None
                if k > 1 and p.feed_logits:
                    mask_input = torch.stack([logits[i] for i in idx])  # type: ignore[misc]
                dec = self._decode(p, times, out, len(idx), point_coords=coords,
                                   point_labels=labels, mask_input=mask_input,
                                   multimask_output=multimask)  # fmt: skip
                with times.measure("metrics", self.clock):
                    for b, i in enumerate(idx):
                        kept = int(np.argmax(dec.iou_predictions[b])) if multimask else 0
                        preds[i] = dec.masks[b, kept]
                        logits[i] = dec.low_res[b, kept : kept + 1].clone()
                        outcomes[i].ious.append(mask_iou(preds[i], truth.masks[i]))  # type: ignore[arg-type]
                        outcomes[i].predicted_ious.append(float(dec.iou_predictions[b, kept]))
            with times.measure("metrics", self.clock):
                moving = set(active)
                for i in range(n):  # stopped instances keep their last IoU
                    if i not in moving:
                        o = outcomes[i]
                        o.ious.append(o.ious[-1] if o.ious else 0.0)
                        if o.predicted_ious:
                            o.predicted_ious.append(o.predicted_ious[-1])
        for i, o in enumerate(outcomes):
            o.clicks = [c.as_list() for c in clicks[i]]
            if preds[i] is not None:
                o.rle = rle_of(preds[i])  # type: ignore[arg-type]
        out.instances.extend(outcomes)
        return out
