"""SAM 2's mask decoder for many prompts on one image, with the image-side products factored.

For each prompt, sam2's ``TwoWayTransformer`` projects the 4096 image tokens (256 channels) to
128 channels five times per layer and twice more in the final attention: ~2.7 GFLOP of the
decoder's 3.6 GFLOP per prompt (sam2.1 tiny, counted by ``torch.utils.flop_counter``). Most of
it is not needed:

* **Shared first layer** (as in :class:`~sam_bench.engines.decoder.SlicedMaskDecoder`).
  Without mask prompts the first layer's image tokens are the same for every prompt (image
  embedding plus the "no mask" embedding): its key, value and query projections of the image
  are computed once per image and reused by every prompt batch
  (:class:`~sam_bench.engines.image_side.ImageSideCache`).
* **Re-associated products.** Where the image side meets the T prompt tokens (T = 8 for a
  click or a box), ``softmax(q (X Wk)^T) (X Wv)`` is computed as
  ``softmax((q Wk) X^T) X`` then ``Wv``, and the image-to-token output projection as
  ``A (v Wo)`` instead of ``(A v) Wo``: products with the image cost ``H*T`` (64) columns
  instead of the projection's 128 (a key bias that is the same for every image token cancels
  in the softmax; the others are kept).

* **Mask inputs** (NoC rounds after the first): the first layer takes the image and the
  prompts' 16-channel mask features apart, the dense embedding's 1 x 1 convolution folded
  into its products (:mod:`~sam_bench.engines.masked_layer`); the 256-channel dense
  embedding and the per-prompt copies of the image embedding are never made.
* **Upscaling** as per-pixel matrix products, channels last, for the returned masks' tokens
  only (:mod:`~sam_bench.engines.upscaling`).
* **Fewer passes over memory**: softmaxes over a head's few tokens run along rows of 4096
  image tokens (token rows first), GELUs and residual additions work in place, and the
  largest intermediates go to scratch buffers the decoder keeps between calls (~100 MB for
  batches of 16): mapping fresh memory for a 16 MB tensor cost 5-8x the pass over it here.

What remains per prompt is the attention itself, the layer norms of the image tokens and the
upscaling products. Sharing the first layer is exact (its projections are row-wise, so one
image's rows are the same bits as each prompt's copy); re-associating is the same function
with the floating-point sums in another order:
logits agree with sam2's decoder to ~1e-5 and masks to IoU >= 0.999 (tested against the
official predictor in ``tests/integration/test_prompted_decoder.py``), not bit for bit, which is
why the prompted task can choose (``prompt.decoder``) and the AMG engine never uses it. Used
for fp32 only (bf16 rounding of the re-associated products is not tested); a batch with more
than ``internal_dim / num_heads`` tokens (many clicks) computes the products sam2's way.
"""

from __future__ import annotations

from typing import Any

import torch

from sam_bench.engines.decoder import SlicedMaskDecoder, _heads, _merge
from sam_bench.engines.image_side import ImageSide, ImageSideCache, shared_dense
from sam_bench.engines.masked_layer import MaskedImage
from sam_bench.engines.upscaling import PixelUpscaler


def _weights(attn: Any) -> tuple[torch.Tensor, ...]:
    """Per-head weight blocks of an ``Attention``: ``Wq, Wk, Wv`` as H x d x C_in and
    ``Wo`` as H x C x d (``d`` = internal_dim / H)."""
    h = attn.num_heads
    d = attn.internal_dim // h
    wq = attn.q_proj.weight.view(h, d, -1)
    wk = attn.k_proj.weight.view(h, d, -1)
    wv = attn.v_proj.weight.view(h, d, -1)
    wo = attn.out_proj.weight.view(-1, h, d).transpose(0, 1)
    return wq, wk, wv, wo


class FactoredMaskDecoder(SlicedMaskDecoder):
    """:class:`SlicedMaskDecoder` with the image-side products factored (module doc).

    Args:
        decoder: the model's ``sam_mask_decoder``.
        slice_size: prompts per image-side slice.
        image_side: the per-image terms' cache (a new one when ``None``).
        mask_projection: the prompt encoder's last ``mask_downscaling`` module (the 1 x 1
            convolution 16 -> 256 channels); needed to decode ``mask_features``.
    """

    def __init__(
        self,
        decoder: torch.nn.Module,
        slice_size: int,
        image_side: ImageSideCache | None = None,
        mask_projection: torch.nn.Module | None = None,
    ) -> None:
        super().__init__(decoder, slice_size, image_side)
        self.mask_projection: Any = mask_projection
        self._buffers: dict[str, torch.Tensor] = {}

    def __call__(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: list[torch.Tensor] | None = None,
        mask_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`SlicedMaskDecoder.__call__`, computing only the masks returned.
        ``mask_features``: B x 16 x h x w, the mask inputs through ``mask_downscaling``
        without its last 1 x 1 convolution (``mask_projection``); the dense embedding is then
        that convolution of them and ``dense_prompt_embeddings`` is not used."""
        d = self.d
        if d.training:
            raise RuntimeError("FactoredMaskDecoder is for inference (the decoder is in training)")
        dynamic = not multimask_output and bool(d.dynamic_multimask_via_stability)
        n = d.num_mask_tokens
        wanted = range(1, n) if multimask_output else range(n if dynamic else 1)
        masks, iou_pred = self._predict_wanted(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
            high_res_features, wanted, mask_features,
        )  # fmt: skip
        if multimask_output:
            return masks, iou_pred[:, 1:]
        if dynamic:
            out: tuple[torch.Tensor, torch.Tensor] = d._dynamic_multimask_via_stability(
                masks, iou_pred
            )
            return out
        return masks, iou_pred[:, 0:1]

    def _predict_wanted(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res_features: list[torch.Tensor] | None,
        wanted: range,
        mask_features: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``SlicedMaskDecoder._predict_masks`` with the first layer of mask inputs factored
        (:mod:`~sam_bench.engines.masked_layer`), and the masks of the tokens wanted only,
        upscaled by :class:`~sam_bench.engines.upscaling.PixelUpscaler` when the decoder
        uses high-resolution features."""
        d = self.d
        s = 1 if d.pred_obj_scores else 0
        parts = [d.obj_score_token.weight] if d.pred_obj_scores else []
        output_tokens = torch.cat([*parts, d.iou_token.weight, d.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        if image_embeddings.shape[0] != 1 or image_pe.size(0) != 1:
            raise ValueError("FactoredMaskDecoder decodes prompts on one image")
        slices = self._slices(tokens.shape[0])
        _, c, h, w = image_embeddings.shape
        side: ImageSide | None = None
        masked: MaskedImage | None = None
        key_pe = image_pe.flatten(2).permute(0, 2, 1).contiguous()
        first = d.transformer.layers[0].cross_attn_image_to_token
        if mask_features is not None and not self._factor(first, tokens.shape[1]):
            # many clicks: the re-associated products cost more than sam2's projections
            dense = self._project(mask_features)
            mask_features = None
        if mask_features is not None:
            if self.mask_projection is None:
                raise ValueError("mask_features need the decoder's mask_projection")
            masked = MaskedImage.build(
                image_embeddings, key_pe, mask_features, self.mask_projection
            )
            srcs = [masked.residual for _ in slices]
        elif shared_dense(dense):
            side = self.image_side.get(image_embeddings, image_pe, dense)
            key_pe, srcs = side.key_pe, [side.keys]
        else:
            srcs = self._sources(image_embeddings, dense, slices)
        hs, keys = self._transformer(srcs, key_pe, tokens, slices, side, masked)
        mlps = d.output_hypernetworks_mlps
        hyper_in = torch.stack([mlps[i](hs[:, s + 1 + i, :]) for i in wanted], dim=1)
        if d.use_high_res_features and high_res_features is not None:
            feat_s0, feat_s1 = high_res_features
            up = PixelUpscaler.build(d, feat_s0, feat_s1, (h, w))
            most = max(sl.stop - sl.start for sl in slices) * h * w
            scratch = (
                self._scratch("up1", most * 4 * feat_s1.shape[1], feat_s1),
                self._scratch("up2", most * 16 * feat_s0.shape[1], feat_s0),
            )
            masks = [up.masks(k, hyper_in[sl], scratch) for sl, k in zip(slices, keys, strict=True)]
        else:
            masks = []
            for sl, src in zip(slices, keys, strict=True):
                b = sl.stop - sl.start
                out = d.output_upscaling(src.transpose(1, 2).view(b, c, h, w))
                _, uc, uh, uw = out.shape
                masks.append((hyper_in[sl] @ out.view(b, uc, uh * uw)).view(b, -1, uh, uw))
        return torch.cat(masks, dim=0), d.iou_prediction_head(hs[:, s, :])

    def _scratch(self, name: str, size: int, like: torch.Tensor) -> torch.Tensor:
        """A flat buffer ``name`` of at least ``size`` values of ``like``'s dtype and device,
        kept for the next calls. Intermediates of a few slices' image tokens (16 MB and more)
        are written into such buffers rather than fresh tensors: on the machines measured,
        mapping fresh memory for them (page faults) cost 5-8x the element-wise pass itself.
        Only for intermediates that no output refers to."""
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.numel() < size
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = self._buffers[name] = torch.empty(size, dtype=like.dtype, device=like.device)
        return buf

    def _with_pe(self, keys: list[torch.Tensor], key_pe: torch.Tensor) -> list[torch.Tensor]:
        """``key + key_pe`` for each slice, in the scratch buffer ``x`` (one layer's at a
        time: the caller drops them before the next layer's)."""
        buf = self._scratch("x", sum(k.numel() for k in keys), keys[0])
        xs, start = [], 0
        for k in keys:
            x = buf[start : start + k.numel()].view(k.shape)
            xs.append(torch.add(k, key_pe, out=x))
            start += k.numel()
        return xs

    def _project(self, mask_features: torch.Tensor) -> torch.Tensor:
        """The dense prompt embedding of mask features (``mask_projection``)."""
        if self.mask_projection is None:
            raise ValueError("mask_features need the decoder's mask_projection")
        out: torch.Tensor = self.mask_projection(mask_features)
        return out

    def _transformer(
        self,
        srcs: list[torch.Tensor],
        key_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        slices: list[slice],
        side: ImageSide | None,
        masked: MaskedImage | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = self.d.transformer
        queries, keys = point_embedding, srcs
        n_tokens = point_embedding.shape[1]
        for i, layer in enumerate(t.layers):
            if i == 0 and side is not None:
                queries, keys = self._first_block(layer, queries, side, point_embedding, slices)
            elif i == 0 and masked is not None:
                queries, keys = self._first_block_masked(
                    layer, queries, masked, point_embedding, slices
                )
            elif self._factor(layer.cross_attn_image_to_token, n_tokens):
                queries, keys = self._block_factored(
                    layer, queries, keys, point_embedding, key_pe, slices
                )
            else:
                queries, keys = self._block(layer, queries, keys, point_embedding, key_pe, slices)
        q = queries + point_embedding
        attn = t.final_attn_token_to_image
        if self._factor(attn, n_tokens):
            attn_out = self._t2i_factored(attn, q, keys, self._with_pe(keys, key_pe), slices)
        else:
            ks = [k + key_pe for k in keys]
            attn_out = self._token_to_image(attn, q, ks, keys, slices)
        queries = t.norm_final_attn(queries + attn_out)
        return queries, keys

    @staticmethod
    def _factor(attn: Any, n_tokens: int) -> bool:
        """Whether the re-associated products are cheaper (H * T < internal_dim)."""
        return bool(attn.num_heads * n_tokens < attn.internal_dim)

    # ------------------------------------------------------------------ first layer, shared

    def _first_image_to_token(
        self,
        layer: Any,
        queries: torch.Tensor,
        side: ImageSide,
        query_pe: torch.Tensor,
        slices: list[slice],
    ) -> list[torch.Tensor]:
        """The first image-to-token attention with the image's queries from ``side`` and, when
        cheaper, the output projection re-associated (``A (v Wo)``)."""
        attn = layer.cross_attn_image_to_token
        if not self._factor(attn, queries.shape[1]):
            return super()._first_image_to_token(layer, queries, side, query_pe, slices)
        h = attn.num_heads
        k_tok = _heads(attn.k_proj(queries + query_pe), h)
        vo = self._value_out(attn, _heads(attn.v_proj(queries), h))
        q_img, key = side.q_i2t, side.keys  # 1 x H x N x d, 1 x N x C
        _, _, n, dh = q_img.shape
        t = k_tok.shape[2]
        new_keys = []
        for sl in slices:
            b = sl.stop - sl.start
            # one product per head for the slice's prompts: (b*T) x d times d x N, token
            # rows first so that the softmax over T runs along rows of N values
            k_all = k_tok[sl].transpose(0, 1).reshape(1, h, b * t, dh)
            logits = (k_all @ q_img.transpose(-1, -2) * dh**-0.5).view(h, b, t, n)
            a = logits.softmax(2).permute(1, 3, 0, 2).reshape(b, n, h * t)
            new_keys.append(layer.norm4(torch.baddbmm(key, a, vo[sl])))  # b x N x C
        return new_keys

    def _first_block_masked(
        self,
        layer: Any,
        queries: torch.Tensor,
        masked: MaskedImage,
        query_pe: torch.Tensor,
        slices: list[slice],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``TwoWayAttentionBlock.forward`` of the first layer for prompts with mask inputs,
        the image side from :class:`~sam_bench.engines.masked_layer.MaskedImage`."""
        queries = self._tokens_in(layer, queries, query_pe)
        attn = layer.cross_attn_token_to_image
        h = attn.num_heads
        _, wk, wv, _ = _weights(attn)
        q_tok = _heads(attn.q_proj(queries + query_pe), h)  # B x H x T x d
        qk = (q_tok * q_tok.shape[-1] ** -0.5 @ wk.unsqueeze(0)).flatten(1, 2)  # B x HT x C
        t = q_tok.shape[2]
        outs = []
        for sl in slices:
            ax = masked.token_to_image(qk, sl).view(sl.stop - sl.start, h, t, -1)
            outs.append(ax @ wv.transpose(1, 2).unsqueeze(0) + attn.v_proj.bias.view(1, h, 1, -1))
        queries = self._tokens_mlp(layer, queries + attn.out_proj(_merge(torch.cat(outs))))

        attn = layer.cross_attn_image_to_token
        kq, kb = self._key_query(attn, queries + query_pe)
        vo = self._value_out(attn, _heads(attn.v_proj(queries), h))
        keys = [layer.norm4(masked.image_to_token(kq, kb, vo, attn.num_heads, sl)) for sl in slices]
        return queries, keys

    @staticmethod
    def _key_query(attn: Any, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens' keys of an image-to-token ``Attention`` through its query weights,
        scaled, B x (H*T) x C, and the query bias term B x (H*T) x 1: the image tokens'
        logits are ``kq X^T + kb``."""
        h = attn.num_heads
        k_tok = _heads(attn.k_proj(q), h)  # B x H x T x d
        k_tok = k_tok * k_tok.shape[-1] ** -0.5
        wq, _, _, _ = _weights(attn)
        kq = (k_tok @ wq.unsqueeze(0)).flatten(1, 2)
        kb = (k_tok * attn.q_proj.bias.view(1, h, 1, -1)).sum(-1).flatten(1)[:, :, None]
        return kq, kb

    # ------------------------------------------------------------------ later layers

    def _block_factored(
        self,
        layer: Any,
        queries: torch.Tensor,
        keys: list[torch.Tensor],
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        slices: list[slice],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``TwoWayAttentionBlock.forward`` with every image-side product re-associated."""
        queries = self._tokens_in(layer, queries, query_pe)
        xs = self._with_pe(keys, key_pe)  # the image tokens with their positions, used twice
        attn_out = self._t2i_factored(
            layer.cross_attn_token_to_image, queries + query_pe, keys, xs, slices
        )
        queries = self._tokens_mlp(layer, queries + attn_out)

        attn = layer.cross_attn_image_to_token
        h = attn.num_heads
        # q_img . k = x . (Wq^T k) + bq . k, scaled: B x (H*T) x C, and B x (H*T) x 1
        kq, kb = self._key_query(attn, queries + query_pe)
        vo = self._value_out(attn, _heads(attn.v_proj(queries), h))
        new_keys = []
        for sl, key, x in zip(slices, keys, xs, strict=True):
            b, n, _ = key.shape
            # token rows first: the softmax over each head's T tokens then runs along
            # rows of N values (a softmax over a last dimension of T is ~2x slower)
            logits = torch.baddbmm(kb[sl], kq[sl], x.transpose(1, 2))  # b x (H*T) x N
            a = logits.view(b, h, -1, n).softmax(2).view(b, -1, n)
            # in place: the keys of this layer are this decoder's own (the previous layer's
            # output, or the repeated image embedding), and their t2i attention is done
            new_keys.append(layer.norm4(key.baddbmm_(a.transpose(1, 2), vo[sl])))
        return queries, new_keys

    @staticmethod
    def _t2i_factored(
        attn: Any,
        q: torch.Tensor,
        keys: list[torch.Tensor],
        xs: list[torch.Tensor],
        slices: list[slice],
    ) -> torch.Tensor:
        """Token-to-image ``Attention`` with ``(q Wk) X^T`` and ``(A X) Wv``: the key bias is
        the same for every image token and cancels in the softmax; the value bias passes
        through (each row of A sums to 1)."""
        h = attn.num_heads
        _, wk, wv, _ = _weights(attn)
        q_tok = _heads(attn.q_proj(q), h)  # B x H x T x d
        qk = (q_tok * q_tok.shape[-1] ** -0.5 @ wk.unsqueeze(0)).flatten(1, 2)  # B x H*T x C
        t = q_tok.shape[2]
        outs = []
        for sl, key, x in zip(slices, keys, xs, strict=True):
            b = sl.stop - sl.start
            logits = qk[sl] @ x.transpose(1, 2)  # b x (H*T) x N
            ax = logits.softmax(-1) @ key  # b x (H*T) x C
            ax = ax.view(b, h, t, -1)
            outs.append(ax @ wv.transpose(1, 2).unsqueeze(0) + attn.v_proj.bias.view(1, h, 1, -1))
        return attn.out_proj(_merge(torch.cat(outs, dim=0)))  # type: ignore[no-any-return]

    @staticmethod
    def _value_out(attn: Any, v_tok: torch.Tensor) -> torch.Tensor:
        """Token values through the output projection, per head, B x (H*T) x C, with the
        output bias shared out among the heads (each head's attention rows sum to 1, so
        ``A vo`` then carries the bias once)."""
        _, _, _, wo = _weights(attn)
        h = attn.num_heads
        vo = v_tok @ wo.transpose(1, 2).unsqueeze(0) + attn.out_proj.bias / h
        return vo.flatten(1, 2)
