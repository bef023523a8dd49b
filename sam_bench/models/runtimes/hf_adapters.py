"""sam2's three prompt-path components, computed by a Hugging Face ``transformers`` model.

The adapters wrap the submodules of a ``Sam2Model`` (or a family model with the same layout:
``EdgeTamModel``, ``Sam3TrackerModel``) and expose sam2's forward signatures
(:mod:`sam_bench.models.runtimes.base`), so sam2's official image predictor, automatic mask
generator and video predictor run on them unchanged:

* :class:`HFImageEncoder` returns sam2's ``{"vision_features", "vision_pos_enc",
  "backbone_fpn"}`` from the HF vision encoder's FPN levels (high to low resolution). The raw
  levels: ``SAM2Base.forward_image`` then applies ``sam_mask_decoder.conv_s0`` / ``conv_s1``
  (the HF decoder's own convolutions), as it does for eager sam2, and HF's
  ``get_image_features`` (which would apply them a second time) is never called.
* :class:`HFPromptEncoder` embeds sam2's ``(coords, labels)`` / boxes / masks with the HF
  prompt encoder's modules (sam2's padding rule: one "not a point" appended when no box).
* :class:`HFMaskDecoder` maps sam2's ``(B, N, C)`` prompt batches onto HF's
  ``(batch, point_batch, N, C)`` layout, repeating the image per prompt as sam2 does
  (``repeat_image``), and returns sam2's ``(masks, iou_pred, sam_tokens_out,
  object_score_logits)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sam_bench.models.runtimes.swap import prompt_batch_size

#: Input normalisation change ``(mean_in, std_in, mean_out, std_out)``, per RGB channel.
Renorm = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]]


class HFImageEncoder(nn.Module):
    """sam2's ``ImageEncoder`` surface over an HF vision encoder (``model.vision_encoder``):
    the first ``num_feature_levels`` FPN levels (high to low resolution). ``renorm``: turn
    input normalised with ``(mean_in, std_in)`` (sam2's transforms) into the model's own
    ``(mean_out, std_out)``."""

    def __init__(
        self, vision_encoder: nn.Module, num_feature_levels: int = 3, renorm: Renorm | None = None
    ) -> None:
        super().__init__()
        self.vision_encoder = vision_encoder
        self.num_feature_levels = num_feature_levels
        self.renorm = renorm

    def forward(self, sample: torch.Tensor) -> dict[str, Any]:
        if self.renorm is not None:
            mean_in, std_in, mean_out, std_out = (
                torch.tensor(v, dtype=sample.dtype, device=sample.device).view(1, -1, 1, 1)
                for v in self.renorm
            )
            sample = (sample * std_in + mean_in - mean_out) / std_out
        out = self.vision_encoder(sample, return_dict=True)
        features = list(out.fpn_hidden_states)[: self.num_feature_levels]
        pos = list(out.fpn_position_encoding)[: self.num_feature_levels]
        return {"vision_features": features[-1], "vision_pos_enc": pos, "backbone_fpn": features}


class HFPromptEncoder(nn.Module):
    """sam2's ``PromptEncoder`` surface over an HF prompt encoder (``model.prompt_encoder``);
    the dense positional encoding comes from ``image_pe`` (``model.shared_image_embedding``,
    which HF's ``Sam2Model`` keeps apart from the prompt encoder's own: equal in converted and
    published checkpoints, two random draws at random init)."""

    def __init__(self, prompt_encoder: nn.Module, image_pe: nn.Module) -> None:
        super().__init__()
        self.hf = prompt_encoder
        self.image_pe = image_pe
        size: Any = prompt_encoder.image_embedding_size
        self.image_embedding_size: tuple[int, int] = (int(size[0]), int(size[1]))
        mask: Any = prompt_encoder.mask_input_size
        self.mask_input_size: tuple[int, int] = (int(mask[0]), int(mask[1]))
        image: Any = prompt_encoder.input_image_size
        self.input_image_size: tuple[int, int] = (int(image), int(image))
        self.embed_dim = int(prompt_encoder.hidden_size)  # type: ignore[arg-type]

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid, ``1 x C x H x W`` (sam2's
        ``PositionEmbeddingRandom`` on the grid of cell centres)."""
        pe: Any = self.image_pe
        h, w = self.image_embedding_size
        weight = pe.positional_embedding
        grid = torch.ones((h, w), device=weight.device, dtype=weight.dtype)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        return pe(torch.stack([x, y], dim=-1)).permute(2, 0, 1).unsqueeze(0)

    def _embed(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        embed: Any = self.hf._embed_points
        out = embed(coords[:, None].float(), labels[:, None].long(), pad=pad)
        return out[:, 0]

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bs = prompt_batch_size(points, boxes, masks)  # sam2's rule
        weight: torch.Tensor = self.hf.no_mask_embed.weight  # type: ignore[union-attr,assignment]
        parts = [torch.empty((bs, 0, self.embed_dim), device=weight.device)]
        if points is not None:
            parts.append(self._embed(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([2, 3], device=corners.device).expand(len(corners), 2)
            parts.append(self._embed(corners, corner_labels, pad=False))
        sparse = torch.cat(parts, dim=1)
        if masks is not None:
            mask_embed: Any = self.hf.mask_embed
            dense = mask_embed(masks)
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense


class HFMaskDecoder(nn.Module):
    """sam2's ``MaskDecoder`` surface over an HF mask decoder (``model.mask_decoder``)."""

    def __init__(self, mask_decoder: nn.Module) -> None:
        super().__init__()
        self.hf = mask_decoder
        self.conv_s0 = mask_decoder.conv_s0
        self.conv_s1 = mask_decoder.conv_s1
        self.num_mask_tokens = int(mask_decoder.num_mask_tokens)  # type: ignore[arg-type]
        self.dynamic_multimask_via_stability = bool(mask_decoder.dynamic_multimask_via_stability)
        self.sam2_layout = False
        """Hand the decoder's two-way transformer sam2's ``src`` (same values, sam2's memory
        layout): set by :func:`sam_bench.models.runtimes.hf_numerics.match_sam2_numerics`."""

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = sparse_prompt_embeddings.shape[0]
        if repeat_image:
            image_embeddings = torch.repeat_interleave(image_embeddings, n, dim=0)
        elif image_embeddings.shape[0] != n:
            raise ValueError("image and prompt batches differ (repeat_image=False)")
        if high_res_features is None:
            raise ValueError("transformers' SAM 2 mask decoder needs the high-resolution features")
        # HF adds the dense embeddings before repeating per point batch (size 1 here), and
        # repeats the positional encoding to the image batch: sam2's order of operations.
        if self.sam2_layout:  # read (and dropped) by hf_numerics' hook on the transformer
            transformer: Any = self.hf.transformer
            transformer.sam2_src = image_embeddings + dense_prompt_embeddings
        masks, iou, tokens, obj = self.hf(
            image_embeddings=image_embeddings,
            image_positional_embeddings=image_pe.expand(n, -1, -1, -1),
            sparse_prompt_embeddings=sparse_prompt_embeddings[:, None],
            dense_prompt_embeddings=dense_prompt_embeddings,
            multimask_output=multimask_output,
            high_resolution_features=list(high_res_features),
        )
        return masks[:, 0], iou[:, 0], tokens[:, 0], obj[:, 0]


def swap_components(model: nn.Module, hf_model: nn.Module, renorm: Renorm | None = None) -> None:
    """Replace ``model``'s ``image_encoder``, ``sam_prompt_encoder`` and ``sam_mask_decoder``
    (a sam2 ``SAM2Base``) with adapters over ``hf_model``'s vision encoder, prompt encoder and
    mask decoder (``renorm``: see :class:`HFImageEncoder`)."""
    model.image_encoder = HFImageEncoder(
        hf_model.vision_encoder,  # type: ignore[arg-type]
        renorm=renorm,
    )
    model.sam_prompt_encoder = HFPromptEncoder(
        hf_model.prompt_encoder,  # type: ignore[arg-type]
        hf_model.shared_image_embedding,  # type: ignore[arg-type]
    )
    model.sam_mask_decoder = HFMaskDecoder(hf_model.mask_decoder)  # type: ignore[arg-type]
