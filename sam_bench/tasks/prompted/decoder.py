"""``SAM2ImagePredictor`` prompted for many instances of one image at once.

The image encoder runs once per image (:meth:`PromptDecoder.set_image`, through the on-disk
encoder cache when ``cache.dir`` is set) as ``SAM2ImagePredictor.set_image`` runs it, by
:class:`~sam_bench.engines.image_features.ImageFeatures` (the predictor's image side and prompt
preparation in torch alone, bit-identical: no torchvision import); every prompt batch is then
decoded against that
embedding by :meth:`PromptDecoder.decode`, which computes what ``SAM2ImagePredictor.predict``
computes for the same batch (``point_coords`` B x N x 2, ``point_labels`` B x N, ``box`` B x 4,
``mask_input`` B x 1 x 256 x 256):

* the prompts are prepared as the predictor's ``_prep_prompts`` does (coordinates normalised
  by the image size and scaled to 1024, a box as two corner points labelled 2 and 3, put
  before the clicks);
* prompt encoder and mask decoder as in ``SAM2ImagePredictor._predict``; on the CPU a batch of
  two or more prompts goes through the fast engine's
  :class:`~sam_bench.engines.decoder.SlicedMaskDecoder`, which is bit-identical to sam2's
  decoder for the same batch (``tests/integration/test_sliced_decoder.py``) and faster, or,
  with ``factored=True`` in fp32, through
  :class:`~sam_bench.engines.factored_decoder.FactoredMaskDecoder` (the same function with
  fewer operations, sums in another order: logits within ~1e-5);
* the low-res logits are upsampled to the image by the predictor's transforms and
  thresholded at the predictor's ``mask_threshold`` (0); the low-res logits returned for
  feeding back are clamped to +-32, as ``predict`` returns them.

``tests/integration/test_prompted_decoder.py`` checks that the masks are those of the official
``SAM2ImagePredictor.predict`` called with the same batch, and (IoU >= 0.999, scores within
1e-4) of instance-by-instance calls.

GPU memory: :meth:`PromptDecoder.set_image` returns the encoder's CUDA peak (the one stored
with the encoder-cache entry on a hit); the task measures each job's decoding apart and
combines the two (:func:`sam_bench.metrics.cost.combine_peaks`).

Timing: prompt preparation, prompt encoder and mask decoder count as ``decoder``; upsampling
and thresholding as ``postprocess`` (the stages a SAM 2 user pays); the encoder as ``encoder``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sam_bench.engines.base import autocast, release_cuda_memory
from sam_bench.engines.decoder import SlicedMaskDecoder, decode_prompts, slice_size_for
from sam_bench.engines.encoder_cache import EncoderCache
from sam_bench.engines.factored_decoder import FactoredMaskDecoder
from sam_bench.engines.image_side import ImageSideCache
from sam_bench.metrics.cost import Clock, GpuPeak, StageTimes


@dataclass
class Decoded:
    """The outputs of one prompt batch (B prompts, C masks each)."""

    masks: np.ndarray
    """B x C x H x W bool, the image's size."""
    iou_predictions: np.ndarray
    """B x C float32: the decoder's predicted IoU."""
    low_res: torch.Tensor
    """B x C x 256 x 256 float32 logits clamped to +-32 (on the model's device)."""
    decoder_s: float
    postprocess_s: float


class PromptDecoder:
    """Encodes an image once and decodes prompt batches against it (see the module doc)."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        dtype: str = "fp32",
        encoder_cache: EncoderCache | None = None,
        sliced: bool = True,
    ) -> None:
        from sam_bench.engines.image_features import ImageFeatures

        self.predictor: Any = ImageFeatures(model)  # SAM2ImagePredictor's image side and prompts
        self.device = device
        self.dtype = dtype
        self.clock = Clock(device)
        self.gpu = GpuPeak(device)
        self.encoder_cache = encoder_cache
        self.sliced = sliced

    @functools.cached_property
    def _sliced_decoder(self) -> SlicedMaskDecoder | None:
        size = slice_size_for(self.device, self.predictor.model) if self.sliced else None
        if size is None:
            return None
        return SlicedMaskDecoder(self.predictor.model.sam_mask_decoder, size, self._image_side)

    @functools.cached_property
    def _image_side(self) -> ImageSideCache:
        """The image's prompt-independent decoder terms, shared by both decoders: computed
        on the first prompt batch of an image, reused by every later one (every NoC round of
        every instance batch)."""
        return ImageSideCache(self.predictor.model.sam_mask_decoder)

    @functools.cached_property
    def _factored_decoder(self) -> FactoredMaskDecoder | None:
        own = self.sliced and self.dtype == "fp32"
        size = slice_size_for(self.device, self.predictor.model) if own else None
        if size is None:
            return None
        model = self.predictor.model
        return FactoredMaskDecoder(
            model.sam_mask_decoder, size, self._image_side,
            mask_projection=model.sam_prompt_encoder.mask_downscaling[-1],
        )  # fmt: skip

    # ------------------------------------------------------------------ image

    def set_image(self, image: np.ndarray, times: list[StageTimes]) -> float:
        """Encode ``image`` (HxWx3 uint8 RGB) or restore it from the encoder cache; every
        ``times`` gets the encoder seconds (on a cache hit the stored seconds, the difference
        to the time spent going to ``wall_offset``, as in the AMG fast engine). Returns the
        encoder's CUDA peak in MiB, measured after a reset (on a cache hit: the peak stored
        with the entry, so a hit does not lower a job's peak); NaN on the CPU."""
        if self.predictor is None:
            raise RuntimeError("PromptDecoder is closed")
        gpu = self.gpu if self.gpu.cuda else None
        t0 = self.clock.now()
        with torch.inference_mode(), autocast(self.device, self.dtype):
            if self.encoder_cache is None:
                self.gpu.reset()
                t0 = self.clock.now()
                self.predictor.set_image(image)
                enc = wall = self.clock.now() - t0
                peak = self.gpu.peak_mb()
            else:
                enc = self.encoder_cache.set_image(self.predictor, image, self.clock, gpu)
                wall = self.clock.now() - t0
                peak = self.encoder_cache.last_peak_mb if gpu is not None else math.nan
        for t in times:
            t.add("encoder", enc)
            t.wall_offset += wall - enc
        return peak

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the image set."""
        h, w = self.predictor._orig_hw[-1]
        return int(h), int(w)

    def reset(self) -> None:
        """Forget the image (its features and the decoder terms computed from them)."""
        if self.predictor is not None:
            self.predictor.reset_predictor()
        if "_image_side" in self.__dict__:
            self._image_side.clear()

    def close(self) -> None:
        """Drop the predictor (features and model reference); idempotent."""
        self.predictor = None
        self.__dict__.pop("_sliced_decoder", None)
        self.__dict__.pop("_factored_decoder", None)
        self.__dict__.pop("_image_side", None)
        release_cuda_memory(self.device)

    # ------------------------------------------------------------------ prompts

    def decode(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: torch.Tensor | np.ndarray | None = None,
        multimask_output: bool = True,
        factored: bool = False,
    ) -> Decoded:
        """One batch of prompts, exactly as ``SAM2ImagePredictor.predict`` with the same
        batch computes it (``point_coords`` B x N x 2 pixel (x, y), ``point_labels`` B x N,
        ``box`` B x 4 xyxy pixels, ``mask_input`` B x 1 x 256 x 256 logits); ``factored``:
        the same function with the image-side products factored where it applies (CPU,
        fp32; module doc)."""
        p = self.predictor
        if p is None or not p._is_image_set:
            raise RuntimeError("set an image before decoding prompts")
        clock = self.clock
        with torch.inference_mode(), autocast(self.device, self.dtype):
            t0 = clock.now()
            mask_in, coords, labels, boxes = p._prep_prompts(
                point_coords, point_labels, box, mask_input, True
            )
            low_res, iou = self._decode(coords, labels, boxes, mask_in, multimask_output,
                                        factored)  # fmt: skip
            t1 = clock.now()
            masks = p._transforms.postprocess_masks(low_res, p._orig_hw[-1])
            binary = (masks > p.mask_threshold).cpu().numpy()
            del masks
            low_res = torch.clamp(low_res, -32.0, 32.0).float()
            iou_np = iou.float().cpu().numpy()
            t2 = clock.now()
        return Decoded(binary, iou_np, low_res, t1 - t0, t2 - t1)

    def _decode(
        self,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        factored: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``SAM2ImagePredictor._predict`` up to the unclamped low-res logits and the
        predicted IoU."""
        p = self.predictor
        points: tuple[torch.Tensor, torch.Tensor] | None = None
        if coords is not None and labels is not None:
            points = (coords, labels)
        if boxes is not None:
            box_coords = boxes.reshape(-1, 2, 2)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device)
            box_labels = box_labels.repeat(boxes.size(0), 1)
            if points is not None:
                points = (
                    torch.cat([box_coords, points[0]], dim=1),
                    torch.cat([box_labels, points[1]], dim=1),
                )
            else:
                points = (box_coords, box_labels)
        if points is None:
            raise ValueError("a prompt batch needs points or boxes")
        factored_decoder = self._factored_decoder if factored else None
        if factored_decoder is not None and mask_input is not None and points[0].shape[0] > 1:
            return _decode_masked(p, points, mask_input, multimask_output, factored_decoder)
        decoder = factored_decoder or self._sliced_decoder
        return decode_prompts(p, points, mask_input, multimask_output, decoder)


def _decode_masked(
    predictor: Any,
    points: tuple[torch.Tensor, torch.Tensor],
    mask_input: torch.Tensor,
    multimask_output: bool,
    decoder: FactoredMaskDecoder,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~sam_bench.engines.decoder.decode_prompts` for a batch with mask inputs through
    the factored decoder: the prompt encoder without the masks (the sparse embedding does not
    depend on them), the masks through ``mask_downscaling`` up to its last 1 x 1 convolution,
    which the decoder folds into its first layer
    (:mod:`~sam_bench.engines.masked_layer`)."""
    model = predictor.model
    encoder = model.sam_prompt_encoder
    sparse, dense = encoder(points=points, boxes=None, masks=None)
    features = encoder.mask_downscaling[:-1](mask_input)
    high_res = [f[-1].unsqueeze(0) for f in predictor._features["high_res_feats"]]
    image_embed = predictor._features["image_embed"][-1].unsqueeze(0)
    return decoder(
        image_embed, encoder.get_dense_pe(), sparse, dense, multimask_output, high_res,
        mask_features=features,
    )  # fmt: skip
