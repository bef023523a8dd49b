"""The mask decoder's image-side terms that no prompt changes, computed once per image.

sam2's ``MaskDecoder`` repeats the image embedding once per prompt and, in the first layer of
its ``TwoWayTransformer``, projects each copy: the token-to-image attention's keys
(``k_proj(src + pe)``) and values (``v_proj(src)``), and the image-to-token attention's
queries (``q_proj(src + pe)``). Without mask prompts ``src`` is the same for every prompt (the
image embedding plus the one "no mask" dense embedding), so these three 4096 x 256 -> 128
projections (~19% of the decoder's work per prompt) are the same for every prompt of an image
(and of an AMG crop). :class:`ImageSide` holds them, with the positional encoding as tokens;
:class:`ImageSideCache` computes them on the first prompt batch of an image and hands the same
terms to every later batch until the image changes.

The terms are computed with sam2's own modules on one copy of the image tokens, with the same
strides as upstream's copies. The projections are row-wise, so on the BLAS of the machines
measured here (AMD EPYC, Intel Xeon; fp32 and bf16 autocast) each prompt's rows are the same
bits as upstream's: ``tests/integration/test_sliced_decoder.py`` asserts it through the whole
decoder, and fails on a BLAS where it does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def separate_heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """``Attention._separate_heads``: B x T x C -> B x n x T x C/n."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``Attention._recombine_heads``: B x n x T x c -> B x T x n*c."""
    b, n, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, n * c)


def shared_dense(dense: torch.Tensor) -> bool:
    """Whether every prompt of a batch has the same dense embedding: the prompt encoder
    expands its one "no mask" embedding (batch stride 0) when no prompt has a mask input."""
    return dense.shape[0] == 1 or dense.stride(0) == 0


@dataclass(frozen=True)
class ImageSide:
    """The first decoder layer's prompt-independent terms of one image (batch dimension 1,
    broadcast over a batch of prompts, never copied per prompt)."""

    key_pe: torch.Tensor
    """1 x N x C: the dense positional encoding as image tokens (contiguous)."""
    keys: torch.Tensor
    """1 x N x C: image embedding plus the dense prompt embedding, as tokens (the residual
    of the first layer's image-to-token attention), strided as upstream's."""
    keys_rows: torch.Tensor
    """``keys`` as a contiguous tensor (the same values): the residual added to the first
    image-to-token attention's contiguous output, summed without a strided pass."""
    k_t2i: torch.Tensor
    """1 x H x N x d: keys of the first token-to-image attention, ``k_proj(keys + key_pe)``."""
    v_t2i: torch.Tensor
    """1 x H x N x d: its values, ``v_proj(keys)``."""
    q_i2t: torch.Tensor
    """1 x H x N x d: queries of the first image-to-token attention, ``q_proj(keys + key_pe)``."""


def compute_image_side(
    decoder: Any, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense: torch.Tensor
) -> ImageSide:
    """:class:`ImageSide` of one image: ``image_embeddings`` and ``image_pe`` 1 x C x H x W,
    ``dense`` the dense prompt embedding shared by every prompt (its first row is used)."""
    layer = decoder.transformer.layers[0]
    # upstream adds the dense embedding to its contiguous repeated copy (NCHW): the same
    # layout here, whatever the embedding's strides (a channels-last sum would take other
    # kernels in the projections, and round differently)
    src = (image_embeddings.contiguous() + dense[:1]).contiguous()
    keys = src.flatten(2).permute(0, 2, 1)
    key_pe = image_pe.flatten(2).permute(0, 2, 1).contiguous()
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    x = keys + key_pe
    return ImageSide(
        key_pe=key_pe,
        keys=keys,
        keys_rows=keys.contiguous(),
        k_t2i=separate_heads(t2i.k_proj(x), t2i.num_heads),
        v_t2i=separate_heads(t2i.v_proj(keys), t2i.num_heads),
        q_i2t=separate_heads(i2t.q_proj(x), i2t.num_heads),
    )


class ImageSideCache:
    """The :class:`ImageSide` of the image last decoded, for one decoder.

    An entry is reused while the image embedding, the positional encoding and the dense
    embedding are equal in value to the ones it was computed from (compared with
    ``torch.equal``: well under a millisecond per million values, far less than the three
    projections cost) and the autocast state is the same; otherwise it is computed again. One entry:
    prompts come image by image (crop by crop in AMG)."""

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self._key: tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[Any, ...]] | None = None
        self._side: ImageSide | None = None
        self.computed = 0
        """How many times the terms were computed (for tests and benchmarks)."""

    def get(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense: torch.Tensor
    ) -> ImageSide:
        """The terms for this image (see the class doc)."""
        row = dense[:1]
        state = _autocast_state(image_embeddings.device)
        if (
            self._side is not None
            and self._key is not None
            and self._matches(image_embeddings, image_pe, row, state)
        ):
            return self._side
        self._side = compute_image_side(self.decoder, image_embeddings, image_pe, row)
        self._key = (image_embeddings, image_pe, row, state)
        self.computed += 1
        return self._side

    def _matches(
        self, embed: torch.Tensor, pe: torch.Tensor, row: torch.Tensor, state: tuple[Any, ...]
    ) -> bool:
        assert self._key is not None
        k_embed, k_pe, k_row, k_state = self._key
        return (
            k_state == state
            and all(a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
                    for a, b in ((k_embed, embed), (k_pe, pe), (k_row, row)))
            and all(torch.equal(a, b) for a, b in ((k_embed, embed), (k_pe, pe), (k_row, row)))
        )  # fmt: skip

    def clear(self) -> None:
        """Forget the entry (frees its tensors)."""
        self._key = self._side = None


def _autocast_state(device: torch.device) -> tuple[Any, ...]:
    """What decides the terms' dtype and rounding besides their inputs."""
    kind = device.type
    return (kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind))
