"""What the ONNX Runtime runtime exports: small ``torch.nn.Module`` views of sam2's modules.

Each view's ``forward`` calls sam2's own module code (no reimplementation), with the
Python-only choices (``pad``, ``repeat_image``, ``multimask_output``) fixed, so the exported
graph has tensor inputs and outputs only. :mod:`sam_bench.models.runtimes.onnx_modules` does
the Python-side choices exactly as sam2 does, around ONNX Runtime sessions of these graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its module, example inputs, names and dynamic axes."""

    component: str
    """Name in the cache file name (``encoder``, ``conv_s0``, ``decoder``...)."""
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    shape: str
    """The shape token of the cache file name (fixed dims; ``b`` / ``n`` where dynamic)."""

    def __post_init__(self) -> None:
        # torch.onnx.export puts the module back in the mode it found it in, recursively: a
        # wrapper in training mode (the default of a new module) would leave sam2's modules
        # in training mode after the export
        self.module.eval()


class EncoderGraph(nn.Module):
    """``ImageEncoder`` without its positional encodings: image -> the FPN levels (after
    ``scalp``). The encodings depend on shapes only; the adapter computes them eagerly."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder: Any = encoder

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.encoder(image)
        return tuple(out["backbone_fpn"])


class PointsGraph(nn.Module):
    """``PromptEncoder._embed_points(coords, labels, pad=False)`` (the adapter pads)."""

    def __init__(self, prompt_encoder: nn.Module) -> None:
        super().__init__()
        self.pe: Any = prompt_encoder

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.pe._embed_points(coords, labels, pad=False)


class BoxesGraph(nn.Module):
    """``PromptEncoder._embed_boxes``."""

    def __init__(self, prompt_encoder: nn.Module) -> None:
        super().__init__()
        self.pe: Any = prompt_encoder

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.pe._embed_boxes(boxes)


class MasksGraph(nn.Module):
    """``PromptEncoder._embed_masks`` (mask inputs -> dense embeddings)."""

    def __init__(self, prompt_encoder: nn.Module) -> None:
        super().__init__()
        self.pe: Any = prompt_encoder

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return self.pe._embed_masks(masks)


class DecoderGraph(nn.Module):
    """``MaskDecoder.predict_masks`` with ``repeat_image=False`` and no high-resolution
    features: every mask token's mask and IoU, the mask tokens and the object score (the
    adapter repeats the image and selects the outputs)."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder: Any = decoder

    def predict(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor, high_res: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        out = self.decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=high_res,
        )
        return out[0], out[1], out[2], out[3]

    def forward(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        return self.predict(image_embeddings, image_pe, sparse, dense, None)


class HighResDecoderGraph(DecoderGraph):
    """:class:`DecoderGraph` with the two high-resolution feature levels (after
    ``conv_s0`` / ``conv_s1``), as SAM 2's decoder uses them (``use_high_res_features``)."""

    def forward(  # type: ignore[override]
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor, high_res0: torch.Tensor, high_res1: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        return self.predict(image_embeddings, image_pe, sparse, dense, [high_res0, high_res1])


def _dims(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape)


def graph_specs(sam: nn.Module) -> list[GraphSpec]:
    """The graphs that put ``sam``'s image encoder, prompt encoder and mask decoder on ONNX
    Runtime, with example inputs on the model's device (float32)."""
    model: Any = sam  # sam2's modules are untyped
    dev = next(model.parameters()).device

    def zeros(*shape: int) -> torch.Tensor:
        return torch.zeros(*shape, device=dev, dtype=torch.float32)

    pe, dec = model.sam_prompt_encoder, model.sam_mask_decoder
    size = int(model.image_size)
    c = int(pe.embed_dim)
    eh, ew = (int(v) for v in pe.image_embedding_size)
    mh, mw = (int(v) for v in pe.mask_input_size)
    image = zeros(1, 3, size, size)
    enc = model.image_encoder
    n_levels = len(enc.neck.convs) - int(enc.scalp)
    names = [f"fpn{i}" for i in range(n_levels)]
    specs = [GraphSpec("encoder", EncoderGraph(enc), (image,), ["image"], names, {}, _dims(image))]
    high_res: tuple[torch.Tensor, ...] = ()
    if dec.use_high_res_features:
        # conv_s0 / conv_s1 take the FPN levels at 4x / 2x the embedding's resolution
        for i, conv in enumerate((dec.conv_s0, dec.conv_s1)):
            x = zeros(2, conv.in_channels, 8, 8)
            axes = {"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}}
            specs.append(
                GraphSpec(f"conv_s{i}", conv, (x,), ["x"], ["y"], axes, f"bx{conv.in_channels}xhxw")
            )
        scale = (4, 2)
        high_res = tuple(
            zeros(2, conv.out_channels, scale[i] * eh, scale[i] * ew)
            for i, conv in enumerate((dec.conv_s0, dec.conv_s1))
        )
    coords = zeros(2, 3, 2)
    labels = zeros(2, 3) + 1
    specs.append(
        GraphSpec("prompt_points", PointsGraph(pe), (coords, labels), ["coords", "labels"],
                  ["sparse"], {"coords": {0: "b", 1: "n"}, "labels": {0: "b", 1: "n"},
                               "sparse": {0: "b", 1: "n"}}, f"bxnx2-{size}")
    )  # fmt: skip
    boxes = zeros(2, 4)
    specs.append(
        GraphSpec("prompt_boxes", BoxesGraph(pe), (boxes,), ["boxes"], ["sparse"],
                  {"boxes": {0: "b"}, "sparse": {0: "b"}}, f"bx4-{size}")
    )  # fmt: skip
    masks = zeros(2, 1, mh, mw)
    specs.append(
        GraphSpec("prompt_masks", MasksGraph(pe), (masks,), ["masks"], ["dense"],
                  {"masks": {0: "b"}, "dense": {0: "b"}}, f"bx1x{mh}x{mw}")
    )  # fmt: skip
    emb = zeros(2, c, eh, ew)
    image_pe = zeros(1, c, eh, ew)
    sparse = zeros(2, 3, c)
    hr_names = [f"high_res{i}" for i in range(len(high_res))]
    axes = {n: {0: "b"} for n in ["image_embeddings", "dense", *hr_names]}
    axes["sparse"] = {0: "b", 1: "n"}
    axes.update({n: {0: "b"} for n in ["masks", "iou_pred", "mask_tokens", "object_score"]})
    graph = (HighResDecoderGraph if high_res else DecoderGraph)(dec)
    specs.append(
        GraphSpec("decoder", graph, (emb, image_pe, sparse, emb.clone(), *high_res),
                  ["image_embeddings", "image_pe", "sparse", "dense", *hr_names],
                  ["masks", "iou_pred", "mask_tokens", "object_score"], axes,
                  f"bx{c}x{eh}x{ew}-hr{len(high_res)}")
    )  # fmt: skip
    return specs
