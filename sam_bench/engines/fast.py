"""The fast AMG engine: one encoder + decoder pass shared by many configurations.

It reproduces ``SAM2AutomaticMaskGenerator.generate`` step by step, with the same sam2
functions on the same tensors, so the masks are identical (``tests/integration/
test_fast_engine.py`` checks it against the reference engine). Three things differ:

* **Sharing.** For each image, the image encoder runs once per crop and the mask decoder
  (plus the m2m refinement) once per prompt batch, for every configuration that shares the
  *candidate key* (:func:`candidate_key`: the AMG fields whose role is ``candidate`` in
  :class:`sam_bench.tasks.amg.settings.AMGConfig` -- point grid, crop settings,
  ``multimask_output``, ``use_m2m``, ``points_per_batch`` -- besides model, weights, image,
  preprocessing and dtype).
  Each configuration then post-processes those candidates on its own: the ``postprocess``
  fields (``pred_iou_thresh``, ``stability_score_thresh`` / ``_offset``, ``mask_threshold``,
  ``box_nms_thresh``, ``crop_nms_thresh``, ``min_mask_region_area`` -- hole filling / island
  removal on the low-res logits, as upstream does --, ``output_mode``, ``postfilter``) never
  touch the shared results. Configurations that would compute the same candidate masks
  (equal :func:`mask_key`: predicted-IoU threshold, mask threshold, stability offset, hole /
  island area) upsample them and score their stability once per prompt batch; only the
  filters after that (stability threshold, crop edge), RLEs and NMS are each one's own.
* **Order of cheap filters.** Candidates are filtered by predicted IoU *before* their logits
  are upsampled (upstream upsamples every candidate first); upsampling, hole filling and the
  stability score are per mask, so the kept masks are the same.
* **Upstream slow spots removed.** No ``MaskData.cat`` deep copy of RLE lists, no per-mask
  device sync in RLE encoding (masks are encoded by pycocotools in C, in chunks). On the CPU,
  stability scores and boxes are counted with numpy instead of torch's boolean reductions
  (:mod:`sam_bench.engines.postprocess`: the same numbers, bit for bit).
* **Cache-sized decoder work (CPU).** The mask decoder runs as
  :class:`~sam_bench.engines.decoder.SlicedMaskDecoder`: the same modules and operations, with
  the per-prompt image-side tensors computed a few prompts at a time instead of as one 1 GB
  batch; its output is bit-identical to upstream's decoder for the same prompt batch.
* **Out of memory.** A prompt batch (decoder, then every configuration's post-processing)
  that fails for lack of memory is run again as halves, down to ``limits.oom_min_batch``; the
  rest of the image keeps the smaller size (:class:`sam_bench.limits.HalvingBatches`). The
  prompts are independent, but the batch *size* can change the decoder's last bits (see
  :mod:`sam_bench.limits`), so a retried image is computed as a run with the smaller
  ``points_per_batch`` would compute it, not necessarily bit for bit as the unretried run;
  each retry is recorded (``per_image.csv`` ``oom_retries`` / ``oom_batch``).

Timing: the shared encoder / decoder seconds (and shared candidate masks' seconds, into
``postprocess``) are added in full to every configuration's :class:`StageTimes`, so a
configuration's latency is what it would cost alone. Upsampling of
the kept logits counts as post-processing here (upstream counts it inside the decoder call).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from sam_bench import progress
from sam_bench.engines.base import MaskRecord, autocast, release_cuda_memory
from sam_bench.engines.decoder import SlicedMaskDecoder, decode_prompts, slice_size_for
from sam_bench.engines.encoder_cache import EncoderCache
from sam_bench.engines.image_features import ImageFeatures, ImageTransforms
from sam_bench.engines.nms import batched_nms, box_area
from sam_bench.engines.postprocess import encode_rles, mask_boxes, stability_and_binary
from sam_bench.limits import HalvingBatches
from sam_bench.metrics.cost import Clock, GpuPeak, StageTimes, combine_peaks
from sam_bench.models import connected_components

if TYPE_CHECKING:
    from sam_bench.tasks.amg.settings import AMGConfig

T = TypeVar("T")


def mask_key(amg: AMGConfig) -> tuple[Any, ...]:
    """The AMG settings that decide a prompt batch's candidate masks before any per-mask
    filter but the predicted-IoU one (:meth:`FastAMG._candidate_masks`): configurations with
    equal keys (and equal :func:`candidate_key`) compute them once."""
    return (
        amg.pred_iou_thresh,
        amg.mask_threshold,
        amg.stability_score_offset,
        amg.min_mask_region_area,
    )


def groups_by(keys: list[Any]) -> list[list[int]]:
    """Indices of equal ``keys``, grouped, in order of first appearance."""
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def candidate_key(amg: AMGConfig) -> tuple[Any, ...]:
    """The AMG settings that decide the decoder candidates (equal keys can share them): the
    fields whose role is ``candidate`` (:func:`sam_bench.tasks.amg.settings.amg_fields`)."""
    names = (f.name for f in fields(amg) if f.metadata.get("role") == "candidate")
    return tuple(
        (name, str(getattr(amg, name)) if name == "point_grids" else getattr(amg, name))
        for name in names
    )


@dataclass
class _Peaks:
    """CUDA peaks of one image (MB, NaN on CPU): the shared stages' and each
    configuration's own post-processing."""

    shared: float
    own: list[float]


@dataclass
class _Masks:
    """A prompt batch's candidate masks for the configurations of one :func:`mask_key`: the
    candidates' indices in the batch, stability scores and binary masks (N x H x W)."""

    idx: torch.Tensor
    stability: torch.Tensor
    binary: torch.Tensor


@dataclass
class _Kept:
    """Masks one configuration kept so far (tensors on the model's device, RLEs as a plain
    list)."""

    boxes: list[torch.Tensor] = field(default_factory=list)
    iou_preds: list[torch.Tensor] = field(default_factory=list)
    stability: list[torch.Tensor] = field(default_factory=list)
    points: list[torch.Tensor] = field(default_factory=list)
    rles: list[dict[str, Any]] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)

    def extend(self, other: _Kept) -> None:
        """Append the masks ``other`` kept (a later prompt batch)."""
        self.boxes.extend(other.boxes)
        self.iou_preds.extend(other.iou_preds)
        self.stability.extend(other.stability)
        self.points.extend(other.points)
        self.rles.extend(other.rles)
        self.areas.extend(other.areas)

    def cat(self, device: torch.device) -> dict[str, Any]:
        """The kept masks as one tensor per field (empty ones on ``device``)."""

        def c(ts: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
            return torch.cat(ts) if ts else torch.zeros(shape, device=device)

        return {
            "boxes": c(self.boxes, (0, 4)),
            "iou_preds": c(self.iou_preds, (0,)),
            "stability": c(self.stability, (0,)),
            "points": c(self.points, (0, 2)),
            "rles": self.rles,
            "areas": self.areas,
        }

    @staticmethod
    def select(d: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
        """Rows ``keep`` of every field. ``keep`` is moved to each tensor's device, as sam2's
        ``MaskData.filter`` does: indexing a CPU tensor with CUDA indices raises."""
        idx = keep.tolist()
        out: dict[str, Any] = {
            k: v[keep.to(v.device)] for k, v in d.items() if isinstance(v, torch.Tensor)
        }
        out["rles"] = [d["rles"][i] for i in idx]
        out["areas"] = [d["areas"][i] for i in idx]
        return out


class FastAMG:
    """Generates masks for several AMG configurations that share a candidate key."""

    def __init__(
        self,
        model: torch.nn.Module,
        configs: list[AMGConfig],
        device: torch.device,
        dtype: str = "fp32",
        encoder_cache: EncoderCache | None = None,
    ) -> None:
        from sam2.utils.amg import build_all_layer_point_grids

        if not configs:
            raise ValueError("FastAMG needs at least one configuration")
        keys = {candidate_key(c) for c in configs}
        if len(keys) != 1:
            raise ValueError("FastAMG configurations must share one candidate key")
        connected_components.install()
        self.configs = configs
        self.device = device
        self.dtype = dtype
        self.clock = Clock(device)
        self.gpu = GpuPeak(device)
        self.encoder_cache = encoder_cache
        first = configs[0]
        self.first = first
        # ``SAM2ImagePredictor``'s image side without torchvision (the same tensors, bit for
        # bit: :mod:`sam_bench.engines.image_features`); it only encodes images and holds
        # features. Each configuration post-processes masks with its own transforms below.
        self.predictor: Any = ImageFeatures(model)
        self.transforms = [
            ImageTransforms(
                resolution=self.predictor._transforms.resolution,
                mask_threshold=0.0,  # upstream's predictor threshold (AMG passes none)
                max_hole_area=c.min_mask_region_area,
                max_sprinkle_area=c.min_mask_region_area,
            )
            for c in configs
        ]
        #: configurations computing the same candidate masks (:func:`mask_key`), in order
        self.mask_groups = groups_by([mask_key(c) for c in configs])
        if first.points_per_side is not None:
            self.point_grids = build_all_layer_point_grids(
                first.points_per_side, first.crop_n_layers, first.crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [np.asarray(g, dtype=np.float64) for g in first.point_grids or []]

    @property
    def cc_impl(self) -> str:
        """The connected-components implementation that runs (see
        :func:`connected_components.implementation`)."""
        return connected_components.implementation(self.device)

    def close(self) -> None:
        """Drop the predictor (its features and its reference to the model) and the sliced
        decoder; on CUDA, return the freed cached memory. Idempotent; generating afterwards
        raises."""
        self.predictor = None
        self.__dict__.pop("_sliced_decoder", None)
        release_cuda_memory(self.device)

    # ------------------------------------------------------------------ shared computation

    def _decode(
        self,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``SAM2ImagePredictor._predict`` without upsampling: unclamped low-res logits, IoU."""
        return decode_prompts(
            self.predictor, (coords, labels), mask_input, multimask_output, self._sliced_decoder
        )

    @functools.cached_property
    def _sliced_decoder(self) -> SlicedMaskDecoder | None:
        """The mask decoder with image-side work in slices (CPU), or ``None``: upstream's."""
        size = slice_size_for(self.device, self.predictor.model)
        if size is None:
            return None
        return SlicedMaskDecoder(self.predictor.model.sam_mask_decoder, size)

    def _batch_candidates(
        self, points: np.ndarray, im_size: tuple[int, int], step: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder candidates of one prompt batch: (low-res logits N x 1 x 256 x 256,
        predicted IoU N, points N x 2), flattened as upstream flattens them. ``step``: the
        batch size in force (m2m refines the candidates in chunks of it, as upstream does
        with ``points_per_batch``); ``None``: ``points_per_batch``."""
        cfg = self.first
        tf = self.predictor._transforms
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.predictor.device)
        in_points = tf.transform_coords(pts, normalize=True, orig_hw=im_size)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        low_res, iou = self._decode(
            in_points[:, None, :], in_labels[:, None], None, cfg.multimask_output
        )
        n_masks = low_res.shape[1]
        low_res = low_res.flatten(0, 1)
        iou = iou.flatten(0, 1)
        pts = pts.repeat_interleave(n_masks, dim=0)
        if cfg.use_m2m:  # upstream refine_with_m2m, on the clamped logits, same batching
            clamped = torch.clamp(low_res, -32.0, 32.0)
            ref_points = tf.transform_coords(pts, normalize=True, orig_hw=im_size)
            ref_labels = torch.ones(ref_points.shape[0], dtype=torch.int, device=pts.device)
            outs, ious = [], []
            step = step or cfg.points_per_batch
            for s in range(0, ref_points.shape[0], step):
                lr, io = self._decode(
                    ref_points[s : s + step][:, None, :],
                    ref_labels[s : s + step][:, None],
                    clamped[s : s + step][:, None, :],
                    multimask_output=False,
                )
                outs.append(lr)
                ious.append(io)
            low_res = torch.cat(outs, dim=0).flatten(0, 1)
            iou = torch.cat(ious, dim=0).flatten(0, 1)
        return low_res.unsqueeze(1), iou, pts

    # ------------------------------------------------------------ per-configuration steps

    def _candidate_masks(
        self, j: int, low_res: torch.Tensor, iou: torch.Tensor, im_size: tuple[int, int]
    ) -> _Masks | None:
        """Upstream ``_process_batch`` after the decoder, first part, for configuration ``j``:
        candidates over ``pred_iou_thresh``, upsampled (hole filling / island removal on the
        low-res logits), their stability scores and binary masks. The same for every
        configuration with ``j``'s :func:`mask_key`. ``None``: no candidate passes."""
        cfg = self.configs[j]
        idx = torch.arange(iou.shape[0], device=iou.device)
        if cfg.pred_iou_thresh > 0.0:
            idx = idx[iou > cfg.pred_iou_thresh]
        if idx.numel() == 0:
            return None
        # every candidate kept: the logits as they are (indexing would copy them all)
        kept_low_res = low_res if idx.numel() == low_res.shape[0] else low_res[idx]
        masks = self.transforms[j].postprocess_masks(kept_low_res, im_size)[:, 0]
        stability, binary = stability_and_binary(
            masks, cfg.mask_threshold, cfg.stability_score_offset
        )
        return _Masks(idx, stability, binary)

    def _keep_masks(
        self,
        j: int,
        masks: _Masks,
        iou: torch.Tensor,
        pts: torch.Tensor,
        crop_box: list[int],
        orig_size: tuple[int, int],
        kept: _Kept,
    ) -> None:
        """Upstream ``_process_batch`` after the decoder, second part, for configuration
        ``j``: the stability filter, boxes, crop-edge filter and RLEs of ``masks`` (which it
        does not change) into ``kept``."""
        from sam2.utils.amg import is_box_near_crop_edge

        cfg = self.configs[j]
        orig_h, orig_w = orig_size
        idx, stability, binary = masks.idx, masks.stability, masks.binary
        if cfg.stability_score_thresh > 0.0:
            keep = stability >= cfg.stability_score_thresh
            idx, binary, stability = idx[keep], binary[keep], stability[keep]
        boxes = mask_boxes(binary)
        keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            idx, binary, stability, boxes = idx[keep], binary[keep], stability[keep], boxes[keep]
        if idx.numel() == 0:
            return
        kept.boxes.append(boxes)
        kept.iou_preds.append(iou[idx])
        kept.stability.append(stability)
        kept.points.append(pts[idx])
        rles, areas = encode_rles(binary, crop_box, orig_size)
        kept.rles.extend(rles)
        kept.areas.extend(areas)

    def _finish_crop(self, j: int, kept: _Kept, crop_box: list[int]) -> dict[str, Any]:
        """Upstream NMS within the crop, then back to image coordinates."""
        from sam2.utils.amg import uncrop_boxes_xyxy, uncrop_points

        device = self.predictor.device
        d = kept.cat(device)
        if d["boxes"].shape[0] == 0:
            d["crop_boxes"] = torch.zeros((0, 4), dtype=torch.long, device=device)
            return d
        keep = batched_nms(
            d["boxes"].float(),
            d["iou_preds"],
            torch.zeros_like(d["boxes"][:, 0]),
            iou_threshold=self.configs[j].box_nms_thresh,
        )
        d = _Kept.select(d, keep)
        d["boxes"] = uncrop_boxes_xyxy(d["boxes"], crop_box)
        d["points"] = uncrop_points(d["points"], crop_box)
        # on the masks' device: every tensor of one image lives on one device
        d["crop_boxes"] = torch.tensor(
            [crop_box for _ in range(len(d["rles"]))], device=d["boxes"].device
        )
        return d

    def _set_image(self, crop: np.ndarray, times: list[StageTimes]) -> float:
        """Encode ``crop`` (``predictor.set_image``), or restore it from the encoder cache,
        adding the encoder seconds to every configuration. On a cache hit the stage gets the
        seconds stored with the entry (a configuration's latency never depends on the cache);
        ``wall_offset`` gets the difference to the time actually spent. Returns the encoder's
        CUDA peak (stored with a cache entry and restored on a hit; NaN on CPU)."""
        t0 = self.clock.now()
        if self.encoder_cache is None:
            self.gpu.reset()
            self.predictor.set_image(crop)
            enc = wall = self.clock.now() - t0
            peak = self.gpu.peak_mb()
        else:
            gpu = self.gpu if self.gpu.cuda else None
            enc = self.encoder_cache.set_image(self.predictor, crop, self.clock, gpu)
            wall = self.clock.now() - t0
            peak = self.encoder_cache.last_peak_mb
        for t in times:
            t.add("encoder", enc)
            t.wall_offset += wall - enc
        return peak

    def _peak(self, current: float) -> float:
        """``current`` combined with the CUDA peak since the last reset (NaN on CPU)."""
        if not self.gpu.cuda:
            return math.nan
        now = self.gpu.peak_mb()
        return now if math.isnan(current) else max(current, now)

    # --------------------------------------------------------------------- public API

    def generate_many(self, image: np.ndarray, times: list[StageTimes]) -> list[list[MaskRecord]]:
        """Masks of ``image`` for every configuration (``times[j]`` gets configuration j's
        stages, shared encoder/decoder time included in full)."""
        from sam2.utils.amg import generate_crop_boxes

        if self.predictor is None:
            raise RuntimeError("FastAMG is closed")
        if len(times) != len(self.configs):
            raise ValueError("one StageTimes per configuration")
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.first.crop_n_layers, self.first.crop_overlap_ratio
        )
        per_crop: list[list[dict[str, Any]]] = [[] for _ in self.configs]
        # CUDA peaks: of the shared stages (encoder, decoder) and of each configuration's own
        # post-processing; a configuration's figure is what it would use alone (issue: a
        # strict configuration grouped with a keep-all one must not report the latter's peak)
        peaks = _Peaks(math.nan, [math.nan for _ in self.configs])
        # prompt batches of this image: halved after an out-of-memory error (sam_bench.limits)
        batches = HalvingBatches(self.first.points_per_batch, device=self.device)
        n_prompts = sum(len(self.point_grids[i]) for i in layer_idxs)
        with (
            torch.inference_mode(),
            autocast(self.device, self.dtype),
            progress.inner(n_prompts, "prompts", "prompt") as prompt_bar,
        ):
            for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
                x0, y0, x1, y1 = crop_box
                crop = image[y0:y1, x0:x1, :]
                im_size = (int(crop.shape[0]), int(crop.shape[1]))
                enc_peak = self._set_image(crop, times)
                peaks.shared = enc_peak if math.isnan(peaks.shared) else max(peaks.shared, enc_peak)
                points_all = self.point_grids[layer_idx] * np.array(im_size)[None, ::-1]
                kept = [_Kept() for _ in self.configs]
                batch = _counted(
                    functools.partial(
                        self._process_batch, points_all, batches, im_size, crop_box,
                        orig_size, times, peaks,
                    ),
                    prompt_bar,
                )  # fmt: skip
                for outs in batches.run(batch, len(points_all)):
                    for k, o in zip(kept, outs, strict=True):
                        k.extend(o)
                self.predictor.reset_predictor()
                for j, t in enumerate(times):
                    self.gpu.reset()
                    with t.measure("postprocess", self.clock):
                        per_crop[j].append(self._finish_crop(j, kept[j], crop_box))
                    peaks.own[j] = self._peak(peaks.own[j])
        out = []
        for j, t in enumerate(times):
            self.gpu.reset()
            with t.measure("postprocess", self.clock):
                out.append(self._records(j, per_crop[j], len(crop_boxes), orig_size))
            peaks.own[j] = self._peak(peaks.own[j])
            if self.gpu.cuda:
                t.peak_mb = combine_peaks(peaks.shared, peaks.own[j])
        return out

    def _process_batch(
        self,
        points_all: np.ndarray,
        batches: HalvingBatches,
        im_size: tuple[int, int],
        crop_box: list[int],
        orig_size: tuple[int, int],
        times: list[StageTimes],
        peaks: _Peaks,
        start: int,
        stop: int,
    ) -> list[_Kept]:
        """Prompts ``start:stop`` of a crop, upstream's ``_process_batch``: the decoder once,
        then each configuration's post-processing, into new :class:`_Kept` s that the caller
        merges only when the whole batch succeeded (a batch run again after an out-of-memory
        error leaves no trace). A failed attempt's seconds count in the stages: they were
        spent."""
        self.gpu.reset()
        t0 = self.clock.now()
        try:
            low_res, iou, pts = self._batch_candidates(
                points_all[start:stop], im_size, batches.size
            )
        finally:
            dec = self.clock.now() - t0
            for t in times:
                t.add("decoder", dec)
        peaks.shared = self._peak(peaks.shared)
        out = [_Kept() for _ in times]
        for group in self.mask_groups:
            # the candidates' masks once for the configurations that would compute the same;
            # each counts those seconds (and that peak) in full, as if it had run alone
            self.gpu.reset()
            t0 = self.clock.now()
            masks = self._candidate_masks(group[0], low_res, iou, im_size)
            seconds = self.clock.now() - t0
            group_peak = self._peak(math.nan)
            for j in group:
                times[j].add("postprocess", seconds)
                self.gpu.reset()
                with times[j].measure("postprocess", self.clock):
                    if masks is not None:
                        self._keep_masks(j, masks, iou, pts, crop_box, orig_size, out[j])
                peaks.own[j] = self._peak(combine_peaks(peaks.own[j], group_peak))
            del masks
        return out

    def _records(
        self, j: int, crops: list[dict[str, Any]], n_crops: int, orig_size: tuple[int, int]
    ) -> list[MaskRecord]:
        """Upstream's cross-crop NMS, the post-filter, and the output records. The kept
        tensors are copied to the host once (one transfer per field), not once per mask."""
        from sam2.utils.amg import box_xyxy_to_xywh

        cfg = self.configs[j]
        d: dict[str, Any] = {
            k: torch.cat([c[k] for c in crops if c["boxes"].shape[0]] or [crops[0][k]])
            for k in ("boxes", "iou_preds", "stability", "points", "crop_boxes")
        }
        d["rles"] = [r for c in crops for r in c["rles"]]
        d["areas"] = [a for c in crops for a in c["areas"]]
        if n_crops > 1 and len(d["rles"]):
            scores = (1 / box_area(d["crop_boxes"])).to(d["boxes"].device)
            keep = batched_nms(
                d["boxes"].float(),
                scores,
                torch.zeros_like(d["boxes"][:, 0]),
                iou_threshold=cfg.crop_nms_thresh,
            )
            d = _Kept.select(d, keep)
        h, w = orig_size
        limit = cfg.postfilter.max_area_fraction
        if not d["rles"]:
            return []
        host = {
            k: d[k].float().cpu().numpy()
            for k in ("boxes", "crop_boxes", "iou_preds", "stability", "points")
        }
        records = []
        for i, rle in enumerate(d["rles"]):
            area = d["areas"][i]
            if limit is not None and area >= limit * h * w:
                continue
            records.append(
                MaskRecord(
                    rle=rle,
                    area=int(area),
                    bbox=[float(v) for v in box_xyxy_to_xywh(host["boxes"][i])],
                    predicted_iou=float(host["iou_preds"][i]),
                    stability_score=float(host["stability"][i]),
                    point_coords=[host["points"][i].tolist()],
                    crop_box=[float(v) for v in box_xyxy_to_xywh(host["crop_boxes"][i])],
                )
            )
        return records


def _counted(fn: Callable[[int, int], T], bar: Any) -> Callable[[int, int], T]:
    """``fn(start, stop)`` that moves ``bar`` by ``stop - start`` when it returns (a batch
    retried after running out of memory counts once, when it succeeds)."""

    def counted(start: int, stop: int) -> T:
        out = fn(start, stop)
        bar.update(stop - start)
        return out

    return counted


class FastEngine:
    """:class:`FastAMG` for a single configuration (the ``AMGEngine`` protocol)."""

    def __init__(
        self,
        model: torch.nn.Module,
        amg: AMGConfig,
        device: torch.device,
        dtype: str = "fp32",
        encoder_cache: EncoderCache | None = None,
    ) -> None:
        self.amg = FastAMG(model, [amg], device, dtype, encoder_cache=encoder_cache)

    @property
    def cc_impl(self) -> str:
        return self.amg.cc_impl

    def generate(self, image: np.ndarray, times: StageTimes) -> list[MaskRecord]:
        return self.amg.generate_many(image, [times])[0]

    def close(self) -> None:
        """See :meth:`FastAMG.close`."""
        self.amg.close()
