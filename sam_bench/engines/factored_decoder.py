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

What remains per prompt is the attention itself, the layer norms of the image tokens and the
upscaling convolutions. Sharing the first layer is exact (its projections are row-wise, so one
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
from sam_bench.engines.image_side import ImageSide


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
    """:class:`SlicedMaskDecoder` with the image-side products factored (module doc)."""

    def _transformer(
        self,
        srcs: list[torch.Tensor],
        key_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        slices: list[slice],
        side: ImageSide | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = self.d.transformer
        queries, keys = point_embedding, srcs
        n_tokens = point_embedding.shape[1]
        for i, layer in enumerate(t.layers):
            if i == 0 and side is not None:
                queries, keys = self._first_block(layer, queries, side, point_embedding, slices)
            elif self._factor(layer.cross_attn_image_to_token, n_tokens):
                queries, keys = self._block_factored(
                    layer, queries, keys, point_embedding, key_pe, slices
                )
            else:
                queries, keys = self._block(layer, queries, keys, point_embedding, key_pe, slices)
        q = queries + point_embedding
        attn = t.final_attn_token_to_image
        if self._factor(attn, n_tokens):
            attn_out = self._t2i_factored(attn, q, keys, [k + key_pe for k in keys], slices)
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
            # one product per head for the slice's prompts: N x d times d x (b*T)
            k_all = k_tok[sl].transpose(0, 1).reshape(1, h, b * t, dh)
            logits = (q_img @ k_all.transpose(-1, -2) * dh**-0.5).view(h, n, b, t)
            a = logits.softmax(-1).permute(2, 1, 0, 3).reshape(b, n, h * t)
            new_keys.append(layer.norm4(torch.baddbmm(key, a, vo[sl])))  # b x N x C
        return new_keys

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
        xs = [k + key_pe for k in keys]  # the image tokens with their positions, used twice
        attn_out = self._t2i_factored(
            layer.cross_attn_token_to_image, queries + query_pe, keys, xs, slices
        )
        queries = self._tokens_mlp(layer, queries + attn_out)

        attn = layer.cross_attn_image_to_token
        h = attn.num_heads
        q = queries + query_pe
        k_tok = _heads(attn.k_proj(q), h)  # B x H x T x d
        scale = k_tok.shape[-1] ** -0.5
        wq, _, _, _ = _weights(attn)
        # q_img . k = x . (Wq^T k) + bq . k, scaled: B x C x (H*T), and B x 1 x (H*T)
        kq = (k_tok * scale @ wq.unsqueeze(0)).flatten(1, 2).transpose(1, 2)
        kb = (k_tok * scale * attn.q_proj.bias.view(1, h, 1, -1)).sum(-1).flatten(1)[:, None]
        vo = self._value_out(attn, _heads(attn.v_proj(queries), h))
        new_keys = []
        for sl, key, x in zip(slices, keys, xs, strict=True):
            b, n, _ = key.shape
            logits = torch.baddbmm(kb[sl], x, kq[sl])  # b x N x (H*T)
            a = logits.view(b, n, h, -1).softmax(-1).view(b, n, -1)
            new_keys.append(layer.norm4(torch.baddbmm(key, a, vo[sl])))
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
