"""The image side of ``SAM2ImagePredictor`` in torch alone (no torchvision import).

sam2's predictor prepares images with ``SAM2Transforms`` (torchvision's ``ToTensor``,
``Resize``, ``Normalize``), and importing torchvision costs about a second on a small command
(``torch._dynamo``, through ``torchvision.models``). The fast engine needs only what
``set_image`` computes, the prompt-coordinate transform and the mask post-processing; this
module computes them with the same torch operations, so the results are bit-identical
(``tests/unit/test_image_features.py`` compares them with sam2's classes):

* :class:`ImageTransforms` -- ``SAM2Transforms``: ``ToTensor`` (uint8 HWC -> float CHW / 255),
  ``Resize((r, r))`` (skipped when the image is already r x r; otherwise ``F.interpolate``
  bilinear, ``align_corners=False``, antialiased, as torchvision resizes a float tensor),
  ``Normalize`` (ImageNet mean / std), ``transform_coords`` / ``transform_boxes`` and
  ``postprocess_masks`` (hole filling / island removal on the low-res logits when
  ``max_hole_area`` / ``max_sprinkle_area`` > 0, through ``sam2.utils.misc
  .get_connected_components`` looked up at call time, then bilinear upsampling).
* :class:`ImageFeatures` -- the predictor's encoding state: :meth:`ImageFeatures.set_image`
  runs ``model.forward_image`` and ``_prepare_backbone_features``, adds ``no_mem_embed`` when
  ``directly_add_no_mem_embed``, and reshapes the levels with the predictor's feature sizes
  (a family shell's ``bb_feat_sizes``: :func:`~sam_bench.models.image_predictor
  .fit_image_predictor`). It keeps the predictor's attribute names (``model``,
  ``_transforms``, ``_features``, ``_orig_hw``, ``_is_batch``, ``_is_image_set``,
  ``_bb_feat_sizes``, ``device``, ``reset_predictor``, ``mask_threshold``), which the encoder
  cache and the decoders read, and prepares prompts as the predictor does
  (``_prep_prompts``: coordinates and boxes to the model's input pixels, tensors on the
  model's device).

The fast engine and the prompted task use it (a prompted single run then imports neither
torchvision nor ``torch._dynamo`` either); the reference engine runs sam2's own classes, and
the agreement checks of ``model.runtime`` call sam2's ``SAM2ImagePredictor.predict``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sam_bench.models.image_predictor import fit_image_predictor

#: ``SAM2Transforms``' normalisation (ImageNet mean and std).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: ``SAM2ImagePredictor``'s backbone feature sizes (a 1024-pixel input), high to low
#: resolution; a model's ``bb_feat_sizes`` replaces them.
DEFAULT_FEAT_SIZES = [(256, 256), (128, 128), (64, 64)]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """torchvision's ``ToTensor`` for an array: HxW or HxWxC -> CxHxW; uint8 becomes the
    default float dtype divided by 255, other dtypes are kept as they are."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ValueError(f"an image must be 2 or 3 dimensional, got {image.ndim} dimensions")
    if image.ndim == 2:
        image = image[:, :, None]
    t = torch.from_numpy(image.transpose((2, 0, 1))).contiguous()
    if t.dtype == torch.uint8:
        return t.to(dtype=torch.get_default_dtype()).div(255)
    return t


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision's ``Resize((size, size))`` of a CxHxW tensor (antialiased bilinear; the
    input itself when it already has that size). Non-float32/64 inputs are resized in float32
    and cast back (rounded for integers), as torchvision does."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    squeeze = x.ndim < 4
    y = x.unsqueeze(0) if squeeze else x
    out_dtype = y.dtype
    cast = out_dtype not in (torch.float32, torch.float64)
    if cast:
        y = y.to(torch.float32)
    y = F.interpolate(y, size=[size, size], mode="bilinear", align_corners=False, antialias=True)
    if squeeze:
        y = y.squeeze(0)
    if cast:
        if not out_dtype.is_floating_point:
            y = torch.round(y)
        y = y.to(out_dtype)
    return y


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """torchvision's ``Normalize``: ``(x - mean) / std`` per channel, in ``x``'s dtype."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x.sub(m).div_(s)


class ImageTransforms:
    """``sam2.utils.transforms.SAM2Transforms`` without torchvision (see the module docstring).

    Args:
        resolution: the model's input size (``model.image_size``).
        mask_threshold: logits above it are foreground (hole / island detection).
        max_hole_area: background components up to this area (low-res pixels) are filled.
        max_sprinkle_area: foreground components up to this area are removed.
    """

    def __init__(
        self,
        resolution: int,
        mask_threshold: float,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        self.resolution = resolution
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self.mean = MEAN
        self.std = STD

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        """The model input of ``image`` (HxWx3 uint8 RGB): 3 x resolution x resolution."""
        x = resize_square(to_tensor(image), self.resolution)
        return normalize(x, self.mean, self.std)

    def transform_coords(
        self,
        coords: torch.Tensor,
        normalize: bool = False,
        orig_hw: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Coordinates (last dimension x, y) in the model's input pixels. ``normalize``:
        ``coords`` are in pixels of an image of size ``orig_hw`` (divided by its width /
        height first); otherwise they are already in [0, 1]."""
        if normalize:
            if orig_hw is None:
                raise ValueError("orig_hw is needed to normalize coordinates")
            h, w = orig_hw
            coords = coords.clone()
            coords[..., 0] = coords[..., 0] / w
            coords[..., 1] = coords[..., 1] / h
        return coords * self.resolution

    def transform_boxes(
        self,
        boxes: torch.Tensor,
        normalize: bool = False,
        orig_hw: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Bx4 boxes as Bx2x2 corner coordinates in the model's input pixels."""
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """Low-res mask logits (B x C x h x w) -> float logits at ``orig_hw``: holes filled /
        islands removed first when their areas are set (skipped with sam2's warning when
        connected components fail), then bilinear upsampling."""
        from sam2.utils import misc

        masks = masks.float()
        input_masks = masks
        flat = masks.flatten(0, 1).unsqueeze(1)
        try:
            if self.max_hole_area > 0:
                labels, areas = misc.get_connected_components(flat <= self.mask_threshold)
                hole = ((labels > 0) & (areas <= self.max_hole_area)).reshape_as(masks)
                masks = torch.where(hole, self.mask_threshold + 10.0, masks)
            if self.max_sprinkle_area > 0:
                labels, areas = misc.get_connected_components(flat > self.mask_threshold)
                sprinkle = ((labels > 0) & (areas <= self.max_sprinkle_area)).reshape_as(masks)
                masks = torch.where(sprinkle, self.mask_threshold - 10.0, masks)
        except Exception as e:  # sam2 skips the step when its CUDA kernel fails
            warnings.warn(
                f"{e}\n\nSkipping the post-processing step due to the error above "
                "(sam2's connected components failed; hole filling / island removal skipped).",
                category=UserWarning,
                stacklevel=2,
            )
            masks = input_masks
        return F.interpolate(masks, orig_hw, mode="bilinear", align_corners=False)


class ImageFeatures:
    """``SAM2ImagePredictor``'s image encoding for ``model`` (see the module docstring).

    Args:
        model: a ``SAM2Base`` (or a family shell with ``bb_feat_sizes``).
        mask_threshold, max_hole_area, max_sprinkle_area: as for ``SAM2ImagePredictor``
            (its own :attr:`_transforms`).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        self.model: Any = model
        sam: Any = model
        self._transforms = ImageTransforms(
            resolution=sam.image_size,
            mask_threshold=mask_threshold,
            max_hole_area=max_hole_area,
            max_sprinkle_area=max_sprinkle_area,
        )
        self.mask_threshold = mask_threshold
        self._bb_feat_sizes: list[tuple[int, int]] = list(DEFAULT_FEAT_SIZES)
        fit_image_predictor(self)  # a family shell's own feature sizes
        self._is_image_set = False
        self._features: dict[str, Any] | None = None
        self._orig_hw: list[tuple[int, int]] | None = None
        self._is_batch = False

    @property
    def device(self) -> torch.device:
        """The model's device."""
        device: torch.device = self.model.device
        return device

    def reset_predictor(self) -> None:
        """Forget the encoded image."""
        self._is_image_set = False
        self._features = None
        self._orig_hw = None
        self._is_batch = False

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image`` (HxWx3 uint8 RGB) as ``SAM2ImagePredictor.set_image`` does:
        ``_features`` gets ``image_embed`` (1 x C x h x w) and ``high_res_feats``."""
        self.reset_predictor()
        if not isinstance(image, np.ndarray):
            raise TypeError(f"expected a numpy array, got {type(image).__name__}")
        self._orig_hw = [(int(image.shape[0]), int(image.shape[1]))]
        x = self._transforms(image)[None, ...].to(self.device)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the model input must be 1x3xHxW, got {tuple(x.shape)}")
        model = self.model
        backbone_out = model.forward_image(x)
        _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:  # added to the lowest-resolution level, as sam2
            vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        feats = [
            feat.permute(1, 2, 0).view(1, -1, *size)
            for feat, size in zip(vision_feats[::-1], self._bb_feat_sizes[::-1], strict=False)
        ][::-1]
        self._features = {"image_embed": feats[-1], "high_res_feats": feats[:-1]}
        self._is_image_set = True

    def _prep_prompts(
        self,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_logits: Any,
        normalize_coords: bool,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Prompts as ``SAM2ImagePredictor._prep_prompts`` prepares them, on the model's
        device: (mask input B x 1 x h x w float, point coordinates B x N x 2 in the model's
        input pixels, labels B x N int, boxes B x 2 x 2); a single prompt set (N x 2 points,
        1 x h x w mask) gets its batch dimension; ``normalize_coords``: the coordinates are
        pixels of the image set (``img_idx``), else already in [0, 1]."""
        hw = self._orig_hw[img_idx] if self._orig_hw else None
        coords = labels = boxes = masks = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be supplied if point_coords is supplied")
            xy = torch.as_tensor(point_coords, dtype=torch.float, device=self.device)
            coords = self._transforms.transform_coords(xy, normalize_coords, hw)
            labels = torch.as_tensor(point_labels, dtype=torch.int, device=self.device)
            if coords.ndim == 2:  # one prompt set
                coords, labels = coords.unsqueeze(0), labels.unsqueeze(0)
        if box is not None:
            xyxy = torch.as_tensor(box, dtype=torch.float, device=self.device)
            boxes = self._transforms.transform_boxes(xyxy, normalize_coords, hw)
        if mask_logits is not None:
            masks = torch.as_tensor(mask_logits, dtype=torch.float, device=self.device)
            if masks.ndim == 3:  # one mask
                masks = masks.unsqueeze(0)
        return masks, coords, labels, boxes
