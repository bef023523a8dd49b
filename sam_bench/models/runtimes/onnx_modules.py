"""sam2's image encoder, prompt encoder and mask decoder as modules backed by ONNX Runtime.

Each adapter has the forward signature and the attributes of the sam2 module it replaces,
so sam2's ``SAM2Base`` / ``SAM2ImagePredictor`` / ``SAM2AutomaticMaskGenerator`` /
``SAM2VideoPredictor`` call it unchanged. The graphs are those of
:mod:`sam_bench.models.runtimes.onnx_graphs`; what stays in Python here is what sam2 does in
Python around them (padding a point prompt, repeating the image per prompt, choosing the
single / multi-mask outputs), done with sam2's own code where it can be reused as is.

Not carried over (``AttributeError`` naming the runtime): the eager submodules and weights
(``trunk``, ``neck``, ``transformer``, ``output_upscaling``, ``mask_tokens``...), which the
fast AMG engine's sliced decoder and the prompted task's factored decoder read: those engines
do not run on this runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sam2.modeling.sam.mask_decoder import MaskDecoder
from torch import nn

from sam_bench.errors import SamBenchError
from sam_bench.models.runtimes.swap import prompt_batch_size


class OrtGraph:
    """One ONNX Runtime session called with torch tensors (returns torch tensors on the
    device of the first input). Inputs go through host memory (numpy): with the CUDA provider
    ONNX Runtime copies them to the GPU and back."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def __deepcopy__(self, memo: dict[int, Any]) -> OrtGraph:
        # a session cannot be copied; it is read-only and safe to share between callers
        return self

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        device = inputs[0].device
        feed = {
            name: t.detach().to("cpu", torch.float32).contiguous().numpy()
            for name, t in zip(self.input_names, inputs, strict=True)
        }
        outs = self.session.run(None, feed)
        return [torch.from_numpy(o).to(device) for o in outs]


class _Adapter(nn.Module):
    """Names the runtime when code asks for an eager submodule the adapter does not have."""

    _replaces = "module"

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} (model.runtime=onnxruntime's {self._replaces}) has no "
                f"attribute {name!r}: code that reads the eager module's internals (e.g. "
                "engine=fast's sliced decoder) does not run on this runtime"
            ) from None


class OrtImageEncoder(_Adapter):
    """sam2's ``ImageEncoder``: ``forward(image) -> {"vision_features", "vision_pos_enc",
    "backbone_fpn"}``. The FPN levels come from ONNX Runtime; the positional encodings, which
    depend on the levels' shapes only, from sam2's own (weightless) ``PositionEmbeddingSine``
    (cached per shape). The graph is exported for one image: a batch runs image by image."""

    _replaces = "image encoder"

    def __init__(self, graph: OrtGraph, position_encoding: nn.Module, image_shape: Sequence[int]):
        super().__init__()
        self.graph = graph
        self.position_encoding = position_encoding
        self.image_shape = tuple(image_shape)

    def forward(self, sample: torch.Tensor) -> dict[str, Any]:
        if tuple(sample.shape[1:]) != self.image_shape[1:]:
            raise SamBenchError(
                f"model.runtime=onnxruntime's image encoder was exported for images of shape "
                f"{self.image_shape[1:]}, got {tuple(sample.shape[1:])}"
            )
        per_image = [self.graph(sample[i : i + 1]) for i in range(sample.shape[0])]
        features = [torch.cat(levels) if len(levels) > 1 else levels[0]
                    for levels in zip(*per_image, strict=True)]  # fmt: skip
        pos = [self.position_encoding(x).to(x.dtype) for x in features]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}


class OrtConv(_Adapter):
    """A 1x1 convolution of the mask decoder (``conv_s0`` / ``conv_s1``) on ONNX Runtime."""

    _replaces = "mask decoder convolution"

    def __init__(self, graph: OrtGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)[0]


class OrtPromptEncoder(_Adapter):
    """sam2's ``PromptEncoder``: ``forward(points, boxes, masks) -> (sparse, dense)``, any
    number of prompts and points, with or without boxes and mask inputs, as sam2 computes it:
    the point / box / mask embeddings come from ONNX Runtime, the padding point, the
    concatenation and the no-mask embedding from Python. ``get_dense_pe()`` returns the dense
    positional encoding computed once at export (it depends on shapes and the fixed random
    projection only)."""

    _replaces = "prompt encoder"

    def __init__(self, eager: Any, points: OrtGraph, boxes: OrtGraph, masks: OrtGraph):
        super().__init__()
        self.embed_dim = int(eager.embed_dim)
        self.input_image_size = tuple(eager.input_image_size)
        self.image_embedding_size = tuple(eager.image_embedding_size)
        self.mask_input_size = tuple(eager.mask_input_size)
        self.num_point_embeddings = int(eager.num_point_embeddings)
        with torch.no_grad():
            self.register_buffer("dense_pe", eager.get_dense_pe().detach().clone())
            self.register_buffer("no_mask", eager.no_mask_embed.weight.detach().clone())
        self.points, self.boxes, self.masks = points, boxes, masks

    def get_dense_pe(self) -> torch.Tensor:
        """The dense positional encoding, ``1 x embed_dim x H x W`` (as sam2's)."""
        return self.dense_pe

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bs = prompt_batch_size(points, boxes, masks)  # sam2's rule
        device = self.no_mask.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if points is not None:
            coords, labels = points
            labels = labels.to(torch.float32)
            if boxes is None:  # sam2 pads a "not a point" (label -1) after the points
                # (its coordinate is unused; -0.5 gives sam2's padded 0 after its +0.5 shift)
                coords = torch.cat([coords, coords.new_full((bs, 1, 2), -0.5)], dim=1)
                labels = torch.cat([labels, labels.new_full((bs, 1), -1.0)], dim=1)
            sparse = torch.cat([sparse, self.points(coords, labels)[0].to(device)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self.boxes(boxes)[0].to(device)], dim=1)
        if masks is not None:
            dense = self.masks(masks)[0]
        else:
            dense = self.no_mask.reshape(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense


class OrtMaskDecoder(_Adapter):
    """sam2's ``MaskDecoder``: ``forward`` is sam2's own ``MaskDecoder.forward`` (output
    selection, ``dynamic_multimask_via_stability``, the object-pointer token) around
    ``predict_masks``, whose transformer and heads run on ONNX Runtime. ``repeat_image=True``
    repeats the image embedding per prompt before the graph, as sam2 does inside it; the
    high-resolution features are broadcast to the prompt batch the same way."""

    _replaces = "mask decoder"

    forward = MaskDecoder.forward
    _get_stability_scores = MaskDecoder._get_stability_scores
    _dynamic_multimask_via_stability = MaskDecoder._dynamic_multimask_via_stability

    def __init__(self, eager: Any, graph: OrtGraph, conv_s0: nn.Module | None,
                 conv_s1: nn.Module | None) -> None:  # fmt: skip
        super().__init__()
        for name in (
            "transformer_dim", "num_multimask_outputs", "num_mask_tokens", "pred_obj_scores",
            "use_multimask_token_for_obj_ptr", "use_high_res_features",
            "dynamic_multimask_via_stability", "dynamic_multimask_stability_delta",
            "dynamic_multimask_stability_thresh",
        ):  # fmt: skip
            setattr(self, name, getattr(eager, name))
        self.graph = graph
        if self.use_high_res_features:
            self.conv_s0, self.conv_s1 = conv_s0, conv_s1
        self.training = False

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All mask tokens' masks and IoU predictions, the mask tokens and the object score
        logits, as ``MaskDecoder.predict_masks``."""
        b = sparse_prompt_embeddings.shape[0]
        if repeat_image:
            src = torch.repeat_interleave(image_embeddings, b, dim=0)
        else:
            if image_embeddings.shape[0] != b:
                raise ValueError("image_embeddings and the prompts differ in batch size")
            src = image_embeddings
        if image_pe.size(0) != 1:
            raise ValueError("image_pe should have size 1 in batch dim (from `get_dense_pe()`)")
        high_res = []
        if self.use_high_res_features:
            if high_res_features is None:
                raise ValueError("this mask decoder needs high_res_features")
            high_res = [f.expand(b, -1, -1, -1) for f in high_res_features]
        masks, iou, tokens, obj = self.graph(
            src, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, *high_res
        )
        return masks, iou, tokens, obj
