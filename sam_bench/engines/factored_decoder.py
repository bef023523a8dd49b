"""SAM 2's mask decoder for many prompts on one image, with the image-side products factored.

For each prompt, sam2's ``TwoWayTransformer`` projects the 4096 image tokens (256 channels) to
128 channels five times per layer and twice more in the final attention: ~2.7 GFLOP of the
decoder's 3.6 GFLOP per prompt (sam2.1 tiny, counted by ``torch.utils.flop_counter``). Most of
it is not needed:

* **Shared first layer.** Without mask prompts the first layer's image tokens are the same for
  every prompt (image embedding plus the "no mask" embedding): its key, value and query
  projections of the image are computed once per batch, not once per prompt.
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
import torch.nn.functional as F

from sam_bench.engines.decoder import SlicedMaskDecoder, _heads, _merge


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
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        t = self.d.transformer
        queries, keys = point_embedding, srcs
        n_tokens = point_embedding.shape[1]
        for i, layer in enumerate(t.layers):
            first = i == 0 and self._same_image(srcs)
            if first:
                queries, keys = self._first_block(layer, queries, srcs, point_embedding, key_pe,
                                                  slices)  # fmt: skip
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

    def _sources(
        self, image_embeddings: torch.Tensor, dense: torch.Tensor, slices: list[slice]
    ) -> list[torch.Tensor]:
        """One 1 x N x C source for the whole batch when every prompt's dense embedding is
        the same (no mask prompts: the prompt encoder expands one embedding; checked on the
        values), else one per slice as :class:`SlicedMaskDecoder` makes them."""
        first = dense[:1]
        if dense.stride(0) == 0 or bool(torch.equal(dense, first.expand_as(dense))):
            return [(image_embeddings + first).flatten(2).permute(0, 2, 1)]
        return super()._sources(image_embeddings, dense, slices)

    @staticmethod
    def _same_image(srcs: list[torch.Tensor]) -> bool:
        """Whether :meth:`_sources` gave one source for every prompt."""
        return len(srcs) == 1 and srcs[0].shape[0] == 1

    # ------------------------------------------------------------------ first layer, shared

    def _first_block(
        self,
        layer: Any,
        queries: torch.Tensor,
        srcs: list[torch.Tensor],
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        slices: list[slice],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``TwoWayAttentionBlock.forward`` when every prompt sees the same image tokens: the
        image's projections once, the attention per prompt."""
        key = srcs[0][:1]  # 1 x N x C
        queries = self._tokens_in(layer, queries, query_pe)

        attn = layer.cross_attn_token_to_image
        h = attn.num_heads
        k_img = _heads(attn.k_proj(key + key_pe), h)  # 1 x H x N x d
        v_img = _heads(attn.v_proj(key), h)
        q_tok = _heads(attn.q_proj(queries + query_pe), h)  # B x H x T x d
        outs = [F.scaled_dot_product_attention(q_tok[sl], k_img.expand(sl.stop - sl.start,
                                               -1, -1, -1), v_img.expand(sl.stop - sl.start,
                                               -1, -1, -1)) for sl in slices]  # fmt: skip
        queries = queries + attn.out_proj(_merge(torch.cat(outs, dim=0)))
        queries = self._tokens_mlp(layer, queries)

        attn = layer.cross_attn_image_to_token
        q = queries + query_pe
        q_img = _heads(attn.q_proj(key + key_pe), h)  # 1 x H x N x d
        k_tok = _heads(attn.k_proj(q), h)
        v_tok = _heads(attn.v_proj(queries), h)
        factor = self._factor(attn, queries.shape[1])
        vo = self._value_out(attn, v_tok) if factor else None
        new_keys = []
        for sl in slices:
            b = sl.stop - sl.start
            if factor:
                assert vo is not None
                logits = q_img @ k_tok[sl].transpose(-1, -2) * q_img.shape[-1] ** -0.5
                a = logits.softmax(-1).transpose(1, 2).reshape(b, key.shape[1], -1)
                new = torch.baddbmm(key, a, vo[sl])  # b x N x C
            else:
                o = F.scaled_dot_product_attention(q_img.expand(b, -1, -1, -1), k_tok[sl],
                                                   v_tok[sl])  # fmt: skip
                new = key + attn.out_proj(_merge(o))
            new_keys.append(layer.norm4(new))
        return queries, new_keys

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
