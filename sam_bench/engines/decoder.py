"""SAM 2's mask decoder with its per-prompt image-side work done in cache-sized slices.

For a batch of B point prompts, upstream ``MaskDecoder.predict_masks`` repeats the 64x64x256
image embedding B times and runs the two-way transformer and the upscaling convolutions on
B-sized tensors (1 GB each for B=64). On a CPU those element-wise passes are bound by memory
bandwidth and take most of the decoder's time.

:class:`SlicedMaskDecoder` computes the same function with the same modules and the same
operations, but splits the work in two kinds:

* **Prompt-side** work (tokens: self-attention, the token MLP, layer norms, the q/k/v/out
  projections of the tokens, the hypernetwork, IoU and object-score heads) runs on the whole
  batch, with exactly upstream's tensor shapes: small matrix products pick their kernel by
  their row count, so their results depend on the batch size.
* **Image-side** work (projections of the 4096 image tokens, the attention itself, the image
  layer norm and the upscaling convolutions) runs ``slice_size`` prompts at a time. These are
  row-wise operations on >= 4096 rows per prompt, whose results do not depend on how many
  prompts share a call; their tensors now fit in the CPU's caches.

Without mask prompts the first layer's image-side projections are the same for every prompt:
they are computed once per image (per crop in AMG) by
:class:`~sam_bench.engines.image_side.ImageSideCache` and reused by every prompt batch, and the
image embedding is never copied per prompt (it is broadcast).

The outputs are bit-identical to ``model.sam_mask_decoder(...)`` (checked against it in
``tests/integration/test_sliced_decoder.py``, and end to end against the official generator
in ``tests/integration/test_fast_engine.py``). Only the CPU uses slicing: on CUDA the fast
engine calls the upstream decoder as is, and so does every engine on a ``model.runtime`` other
than ``eager`` (see :func:`slice_size_for`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from sam_bench.engines.image_side import (
    ImageSide,
    ImageSideCache,
    merge_heads,
    separate_heads,
    shared_dense,
)
from sam_bench.models.runtimes.swap import is_eager_decoder

#: Prompts per image-side slice on the CPU (measured by ``benchmarks/bench_decoder.py``).
CPU_SLICE_SIZE = 4


def slice_size_for(device: torch.device, model: torch.nn.Module | None = None) -> int | None:
    """Image-side slice size for ``device``; ``None``: run the upstream decoder unchanged.

    ``model``: the model whose decoder would be sliced. Only sam2's own eager ``MaskDecoder``
    is (:func:`~sam_bench.models.runtimes.swap.is_eager_decoder`): on a ``model.runtime``
    other than ``eager`` the decoder is the runtime's module, called as the official
    predictor calls it, so the runtime is what decodes (never eager weights copied into
    sam_bench's own implementation)."""
    if model is not None and not is_eager_decoder(model):
        return None
    return CPU_SLICE_SIZE if device.type == "cpu" else None


def split(n: int, size: int) -> list[slice]:
    """Consecutive slices of ``size`` of ``range(n)``, the last one taking the remainder (so
    no slice holds fewer than ``size`` unless ``n`` does)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < size:
        starts.pop()  # merge the short remainder into the previous slice
    return [slice(s, e) for s, e in zip(starts, [*starts[1:], n], strict=True)]


_heads = separate_heads
_merge = merge_heads


class SlicedMaskDecoder:
    """``MaskDecoder.forward`` for a batch of prompts on one image, image side sliced.

    Args:
        decoder: the model's ``sam_mask_decoder`` (weights are used, never changed).
        slice_size: prompts per image-side slice.
        image_side: where the per-image terms are kept (module doc); a new cache when
            ``None``. Decoders of one model may share one.
    """

    def __init__(
        self, decoder: torch.nn.Module, slice_size: int, image_side: ImageSideCache | None = None
    ) -> None:
        if slice_size < 2:
            raise ValueError("slice_size must be >= 2 (see _slices)")
        self.d: Any = decoder
        self.slice_size = slice_size
        self.image_side = image_side if image_side is not None else ImageSideCache(decoder)

    def __call__(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits and predicted IoU, as ``MaskDecoder.forward`` returns them
        (with ``repeat_image=True``: one image, ``B`` prompts)."""
        d = self.d
        if d.training:
            raise RuntimeError("SlicedMaskDecoder is for inference (the decoder is in training)")
        masks, iou_pred = self._predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
            high_res_features,
        )  # fmt: skip
        if multimask_output:
            return masks[:, 1:, :, :], iou_pred[:, 1:]
        if d.dynamic_multimask_via_stability:
            out: tuple[torch.Tensor, torch.Tensor] = d._dynamic_multimask_via_stability(
                masks, iou_pred
            )
            return out
        return masks[:, 0:1, :, :], iou_pred[:, 0:1]

    # ------------------------------------------------------------------ predict_masks

    def _slices(self, n: int) -> list[slice]:
        """Consecutive slices of ``slice_size`` prompts, the last one taking the remainder.

        No slice holds a single prompt unless the batch does: a 1-prompt tensor takes a
        different memory layout through the upscaling convolution than a batch does, and
        so different rounding."""
        return split(n, self.slice_size)

    def _predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res_features: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.d
        s = 0
        if d.pred_obj_scores:
            output_tokens = torch.cat(
                [d.obj_score_token.weight, d.iou_token.weight, d.mask_tokens.weight], dim=0
            )
            s = 1
        else:
            output_tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        n = tokens.shape[0]
        if image_embeddings.shape[0] != 1 or image_pe.size(0) != 1:
            raise ValueError("SlicedMaskDecoder decodes prompts on one image")
        slices = self._slices(n)
        _, c, h, w = image_embeddings.shape
        side: ImageSide | None = None
        if shared_dense(dense):
            side = self.image_side.get(image_embeddings, image_pe, dense)
            key_pe, srcs = side.key_pe, [side.keys]
        else:
            srcs = self._sources(image_embeddings, dense, slices)
            # The positional encoding is the same for every prompt: one contiguous 1 x HW x C
            # copy broadcast in the additions (element-wise, so the sums are the same bits as
            # upstream's repeated copy, and cheaper to read).
            key_pe = image_pe.flatten(2).permute(0, 2, 1).contiguous()

        hs, keys = self._transformer(srcs, key_pe, tokens, slices, side)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1 : (s + 1 + d.num_mask_tokens), :]
        mlps = d.output_hypernetworks_mlps
        hyper_in = torch.stack(
            [mlps[i](mask_tokens_out[:, i, :]) for i in range(d.num_mask_tokens)], dim=1
        )
        masks = []
        upscale = _Upscaling(d, high_res_features)
        for sl, src in zip(slices, keys, strict=True):
            k = sl.stop - sl.start
            up = upscale(src.transpose(1, 2).view(k, c, h, w))
            _, uc, uh, uw = up.shape
            masks.append((hyper_in[sl] @ up.view(k, uc, uh * uw)).view(k, -1, uh, uw))
        iou_pred = d.iou_prediction_head(iou_token_out)
        return torch.cat(masks, dim=0), iou_pred

    def _sources(
        self, image_embeddings: torch.Tensor, dense: torch.Tensor, slices: list[slice]
    ) -> list[torch.Tensor]:
        """Per slice: the repeated image embedding plus the prompts' dense embeddings,
        flattened to tokens as TwoWayTransformer.forward does (same strides, so the same
        kernels: a contiguous copy here would change bf16 rounding in the projections)."""
        srcs = []
        for sl in slices:
            k = sl.stop - sl.start
            src = torch.repeat_interleave(image_embeddings, k, dim=0) + dense[sl]
            srcs.append(src.flatten(2).permute(0, 2, 1))
        return srcs

    # ------------------------------------------------------------------ TwoWayTransformer

    def _transformer(
        self,
        srcs: list[torch.Tensor],
        key_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        slices: list[slice],
        side: ImageSide | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``TwoWayTransformer.forward``: queries on the whole batch, keys per slice; the
        first layer from the per-image terms ``side`` when every prompt shares them."""
        t = self.d.transformer
        queries, keys = point_embedding, srcs
        for i, layer in enumerate(t.layers):
            if i == 0 and side is not None:
                queries, keys = self._first_block(layer, queries, side, point_embedding, slices)
            else:
                queries, keys = self._block(layer, queries, keys, point_embedding, key_pe, slices)
        q = queries + point_embedding
        attn = t.final_attn_token_to_image
        attn_out = self._token_to_image_pe(attn, q, keys, key_pe, slices)
        queries = queries + attn_out
        queries = t.norm_final_attn(queries)
        return queries, keys

    def _first_block(
        self,
        layer: Any,
        queries: torch.Tensor,
        side: ImageSide,
        query_pe: torch.Tensor,
        slices: list[slice],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``TwoWayAttentionBlock.forward`` of the first layer when every prompt sees the same
        image tokens: the image's projections come from ``side`` (broadcast, never copied).
        The token-to-image attention runs once for the whole batch, every prompt's tokens as
        queries against the one image (B*T query rows instead of B attentions of T rows:
        larger matrix products; each query row's softmax and sums are its own, the same bits
        as per prompt on the BLAS measured, asserted by the exactness tests)."""
        queries = self._tokens_in(layer, queries, query_pe)
        attn = layer.cross_attn_token_to_image
        q_tok = _heads(attn.q_proj(queries + query_pe), attn.num_heads)  # B x H x T x d
        b, h, t, dh = q_tok.shape
        folded = q_tok.transpose(0, 1).reshape(1, h, b * t, dh)
        out = F.scaled_dot_product_attention(folded, side.k_t2i, side.v_t2i)
        out = out.view(h, b, t, dh).transpose(0, 1)  # B x H x T x d
        queries = self._tokens_mlp(layer, queries + attn.out_proj(_merge(out)))
        return queries, self._first_image_to_token(layer, queries, side, query_pe, slices)

    def _first_image_to_token(
        self,
        layer: Any,
        queries: torch.Tensor,
        side: ImageSide,
        query_pe: torch.Tensor,
        slices: list[slice],
    ) -> list[torch.Tensor]:
        """The first layer's image-to-token attention and its norm, per slice, with the
        image's queries from ``side``."""
        attn = layer.cross_attn_image_to_token
        k_tok = _heads(attn.k_proj(queries + query_pe), attn.num_heads)
        v_tok = _heads(attn.v_proj(queries), attn.num_heads)
        new_keys = []
        for sl in slices:
            q_img = side.q_i2t.expand(sl.stop - sl.start, -1, -1, -1)
            out = F.scaled_dot_product_attention(q_img, k_tok[sl], v_tok[sl])
            # side.keys + out: an addition commutes exactly, and gives the same bits in any
            # layout; in place in the contiguous projection, from the contiguous keys (a sum
            # into the token-strided layout is slow, and copied again by the norm)
            out = attn.out_proj(_merge(out))
            new_keys.append(layer.norm4(_inplace_add(out, side.keys_rows)))
        return new_keys

    def _block(
        self,
        layer: Any,
        queries: torch.Tensor,
        keys: list[torch.Tensor],
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        slices: list[slice],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``TwoWayAttentionBlock.forward``."""
        queries = self._tokens_in(layer, queries, query_pe)

        q = queries + query_pe
        attn_out = self._token_to_image_pe(layer.cross_attn_token_to_image, q, keys, key_pe, slices)
        queries = self._tokens_mlp(layer, queries + attn_out)

        q = queries + query_pe
        attn = layer.cross_attn_image_to_token
        k_tok = _heads(attn.k_proj(q), attn.num_heads)
        v_tok = _heads(attn.v_proj(queries), attn.num_heads)
        new_keys = []
        with_pe = _WithPe(key_pe)
        for sl, key in zip(slices, keys, strict=True):
            q_img = _heads(attn.q_proj(with_pe(key)), attn.num_heads)
            out = F.scaled_dot_product_attention(q_img, k_tok[sl], v_tok[sl])
            key = _inplace_add(attn.out_proj(_merge(out)), key)  # key + out, commuted
            new_keys.append(layer.norm4(key))
        return queries, new_keys

    @staticmethod
    def _tokens_in(layer: Any, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
        """``TwoWayAttentionBlock``: the tokens' self-attention and its norm."""
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        out: torch.Tensor = layer.norm1(queries)
        return out

    @staticmethod
    def _tokens_mlp(layer: Any, queries: torch.Tensor) -> torch.Tensor:
        """``TwoWayAttentionBlock``: after the token-to-image attention was added, its norm,
        the token MLP and its norm."""
        queries = layer.norm2(queries)
        out: torch.Tensor = layer.norm3(queries + layer.mlp(queries))
        return out

    @staticmethod
    def _token_to_image(
        attn: Any,
        q: torch.Tensor,
        ks: list[torch.Tensor],
        vs: list[torch.Tensor],
        slices: list[slice],
    ) -> torch.Tensor:
        """``Attention.forward`` with token queries (whole batch) and image keys (sliced)."""
        q_tok = _heads(attn.q_proj(q), attn.num_heads)
        outs = []
        for sl, k, v in zip(slices, ks, vs, strict=True):
            k_img = _heads(attn.k_proj(k), attn.num_heads)
            v_img = _heads(attn.v_proj(v), attn.num_heads)
            outs.append(F.scaled_dot_product_attention(q_tok[sl], k_img, v_img))
        return attn.out_proj(_merge(torch.cat(outs, dim=0)))

    @staticmethod
    def _token_to_image_pe(
        attn: Any,
        q: torch.Tensor,
        keys: list[torch.Tensor],
        key_pe: torch.Tensor,
        slices: list[slice],
    ) -> torch.Tensor:
        """:meth:`_token_to_image` with the keys ``key + key_pe`` formed slice by slice, in
        one reused buffer (:class:`_WithPe`), the values ``keys``."""
        q_tok = _heads(attn.q_proj(q), attn.num_heads)
        with_pe = _WithPe(key_pe)
        outs = []
        for sl, v in zip(slices, keys, strict=True):
            k_img = _heads(attn.k_proj(with_pe(v)), attn.num_heads)
            v_img = _heads(attn.v_proj(v), attn.num_heads)
            outs.append(F.scaled_dot_product_attention(q_tok[sl], k_img, v_img))
        return attn.out_proj(_merge(torch.cat(outs, dim=0)))


class _WithPe:
    """``key + key_pe`` for one slice after another, written into one buffer per shape and
    dtype (the same additions as upstream's; a fresh 16 MB sum per slice would be mapped and
    faulted in each time). A sum is valid until the next call: the projection that reads it
    runs first."""

    def __init__(self, key_pe: torch.Tensor) -> None:
        self.key_pe = key_pe
        self._buf: torch.Tensor | None = None

    def __call__(self, key: torch.Tensor) -> torch.Tensor:
        if key.requires_grad or not key.is_contiguous() or not _fits(key, self.key_pe):
            return key + self.key_pe
        buf = self._buf
        if buf is None or buf.shape != key.shape or buf.dtype != key.dtype:
            buf = self._buf = torch.empty_like(key)
        return torch.add(key, self.key_pe, out=buf)


class _Upscaling:
    """``MaskDecoder``'s upscaling of the image tokens (``output_upscaling`` plus the
    high-resolution features) for one slice at a time, with upstream's operations in
    upstream's order on tensors of upstream's layout, the element-wise ones in place on the
    fresh temporaries they would otherwise copy (:func:`_fits`).

    The transposed convolutions return channels-last tensors (their input is the token
    layout); the high-resolution features they are added to are contiguous, and a sum of two
    layouts is a slow strided pass. The features are laid out like the convolution's output
    once per call (an addition is element-wise: the same bits in any layout)."""

    def __init__(self, decoder: Any, high_res_features: list[torch.Tensor] | None) -> None:
        self.d = decoder
        self.feats = high_res_features
        self._laid_out: dict[int, torch.Tensor] = {}

    def __call__(self, src: torch.Tensor) -> torch.Tensor:
        d = self.d
        if not d.use_high_res_features:
            out: torch.Tensor = d.output_upscaling(src)
            return out
        dc1, ln1, act1, dc2, act2 = d.output_upscaling
        feat_s0, feat_s1 = self.feats or (None, None)
        up = self._add_feature(1, dc1(src), feat_s1)
        up = _activation(act1, _layer_norm_2d(ln1, up))
        up = self._add_feature(0, dc2(up), feat_s0)
        return _activation(act2, up)

    def _add_feature(self, i: int, x: torch.Tensor, feat: Any) -> torch.Tensor:
        """``x + feat`` (upstream's sum), in place in ``x`` with ``feat`` laid out as ``x``
        when that keeps the result's values and dtype; out of place, as upstream, otherwise."""
        if not _fits(x, feat):
            return x + feat  # type: ignore[no-any-return]
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            if i not in self._laid_out:
                self._laid_out[i] = feat.contiguous(memory_format=torch.channels_last)
            feat = self._laid_out[i]
        return x.add_(feat)


def _inplace_add(x: torch.Tensor, y: Any) -> torch.Tensor:
    """``x + y``, written into ``x`` (a fresh temporary) when the sum has ``x``'s shape and
    dtype: the same element-wise additions, no new buffer (a large one is mapped fresh, and
    faulted in page by page, on every call)."""
    if _fits(x, y):
        return x.add_(y)
    return x + y  # type: ignore[no-any-return]


def _fits(x: torch.Tensor, y: Any) -> bool:
    """Whether ``x op y`` can be written into ``x`` with the same result: no broadcast of
    ``x`` and no type promotion (autocast hands bf16 convolution outputs to fp32 terms)."""
    if not isinstance(y, torch.Tensor) or x.requires_grad:
        return False
    return _broadcasts_to(y.shape, x.shape) and torch.result_type(x, y) == x.dtype


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether broadcasting ``shape`` against ``target`` gives ``target`` (each trailing
    dimension equal or 1). Not ``torch.broadcast_shapes``: its first call imports sympy
    (~0.3 s), which would land in the first image's timed decoder stage."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False))


def _layer_norm_2d(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """sam2's ``LayerNorm2d.forward`` (mean, subtract, square, mean, add eps, sqrt, divide,
    scale, shift) on a fresh ``x``, the element-wise steps in place where they keep ``x``'s
    dtype; any other module is called as is."""
    if not _is_sam2_layer_norm_2d(norm) or x.requires_grad:
        out: torch.Tensor = norm(x)
        return out
    weight, bias = norm.weight[:, None, None], norm.bias[:, None, None]
    u = x.mean(1, keepdim=True)
    if not (_fits(x, u) and _fits(x, weight) and _fits(x, bias)):
        out = norm(x)
        return out
    x = x.sub_(u)  # upstream computes x - u twice: the same values
    s = x.pow(2).mean(1, keepdim=True)
    x = x.div_(torch.sqrt(s.add_(norm.eps)))
    return x.mul_(weight).add_(bias)  # weight * x + bias (a product commutes exactly)


def _is_sam2_layer_norm_2d(module: Any) -> bool:
    """Whether ``module`` is sam2's ``LayerNorm2d`` (by its class, sam2 not imported here)."""
    cls = type(module)
    return cls.__name__ == "LayerNorm2d" and cls.__module__ == "sam2.modeling.sam2_utils"


def _activation(act: Any, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` on a fresh ``x``: GELU in place (the same kernel), anything else as is."""
    if type(act) is torch.nn.GELU and not x.requires_grad:
        out: torch.Tensor = torch.ops.aten.gelu_(x, approximate=act.approximate)
        return out
    out = act(x)
    return out


def decode_prompts(
    predictor: Any,
    points: tuple[torch.Tensor, torch.Tensor],
    mask_input: torch.Tensor | None,
    multimask_output: bool,
    sliced: SlicedMaskDecoder | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``SAM2ImagePredictor._predict`` up to the unclamped low-res logits and the predicted IoU,
    on the image ``predictor`` holds: prompt encoder, then the mask decoder -- ``sliced`` for a
    batch of several prompts when given (bit-identical, cache-sized on the CPU), upstream's
    otherwise. ``points``: (coords B x N x 2, labels B x N), boxes already folded in as corner
    points (labels 2 and 3), as upstream does."""
    model = predictor.model
    sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
    batched = points[0].shape[0] > 1
    high_res = [f[-1].unsqueeze(0) for f in predictor._features["high_res_feats"]]
    image_embed = predictor._features["image_embed"][-1].unsqueeze(0)
    image_pe = model.sam_prompt_encoder.get_dense_pe()
    if batched and sliced is not None:
        return sliced(image_embed, image_pe, sparse, dense, multimask_output, high_res)
    low_res, iou, _, _ = model.sam_mask_decoder(
        image_embeddings=image_embed,
        image_pe=image_pe,
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        repeat_image=batched,
        high_res_features=high_res,
    )
    return low_res, iou
