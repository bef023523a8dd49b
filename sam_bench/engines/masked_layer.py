"""The first decoder layer's image-side products for prompts with a mask input, factored.

With a mask input (every NoC round after the first feeds the previous low-res logits back),
sam2's prompt encoder turns each prompt's 256 x 256 mask into a dense embedding
``Wc h + bc``: ``h`` the 16-channel 64 x 64 map left by ``mask_downscaling`` before its last
module, a 1 x 1 convolution ``Wc`` (256 x 16, bias ``bc``). The decoder adds it to the image
embedding, so the first layer's image tokens differ per prompt and their projections cannot be
shared the way :mod:`~sam_bench.engines.image_side` shares them without masks. But every
image-side product of the first layer is linear in the tokens:

* token-to-image logits ``qk (X0 + h Wc^T)^T = qk X0^T + (qk Wc) h^T`` with ``X0`` the
  image tokens plus ``bc`` plus the positional encoding, the same for every prompt: one
  product of all the slice's token rows with the one image, plus a 16-column product per
  prompt; its output ``A (K0 + h Wc^T) = A K0 + (A h) Wc^T`` (``K0`` = image tokens + ``bc``);
* image-to-token logits (as ``kq^T X^T``, token rows first, so the softmax over a head's few
  tokens runs along rows of 4096 values) the same way;
* the residual ``K0 + h Wc^T + A^T vo``: ``baddbmm`` from the shared ``K0``.

So no 256-channel dense embedding, no per-prompt copy of the image embedding and no
per-prompt 256-channel projection of the first layer's image tokens. The same function as
sam2's with the sums in another order (checked against the official predictor in
``tests/integration/test_prompted_decoder.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class MaskedImage:
    """One image's first-layer terms and a batch of prompts' 16-channel mask features."""

    residual: torch.Tensor
    """1 x N x C: image tokens plus the projection's bias ``bc`` (``K0``)."""
    x0t: torch.Tensor
    """C x N: ``K0`` plus the positional encoding, transposed (``X0^T``)."""
    h_tok: torch.Tensor
    """B x N x 16: the mask features as tokens."""
    h_t: torch.Tensor
    """B x 16 x N: the same, channels first."""
    wc: torch.Tensor
    """C x 16: the projection's weight."""

    @classmethod
    def build(
        cls,
        image_embeddings: torch.Tensor,
        key_pe: torch.Tensor,
        mask_features: torch.Tensor,
        projection: Any,
    ) -> MaskedImage:
        """``image_embeddings`` 1 x C x h x w, ``key_pe`` 1 x N x C (positional encoding as
        tokens), ``mask_features`` B x 16 x h x w, ``projection`` the 1 x 1 ``Conv2d``."""
        wc = projection.weight.flatten(1)  # C x 16
        residual = image_embeddings.flatten(2).transpose(1, 2) + projection.bias
        x0t = (residual + key_pe)[0].t().contiguous()
        h_t = mask_features.flatten(2)
        return cls(residual, x0t, h_t.transpose(1, 2).contiguous(), h_t, wc)

    def token_to_image(self, qk: torch.Tensor, sl: slice) -> torch.Tensor:
        """``softmax(qk X^T) X_v`` for the prompts ``sl``: ``qk`` B x R x C (each token's
        query through the key weights, scaled; a key bias cancels in the softmax), the
        values taken as the tokens themselves (``K0 + h Wc^T``): b x R x C."""
        b = sl.stop - sl.start
        rows, c = qk.shape[1], qk.shape[2]
        n = self.x0t.shape[1]
        logits = (qk[sl].reshape(-1, c) @ self.x0t).view(b, rows, n)
        logits = torch.baddbmm(logits, qk[sl] @ self.wc, self.h_t[sl])
        a = logits.softmax(-1)
        out = (a.view(-1, n) @ self.residual[0]).view(b, rows, c)
        return torch.baddbmm(out, a @ self.h_tok[sl], self.wc.t().expand(b, -1, -1))

    def image_to_token(
        self, kq: torch.Tensor, kb: torch.Tensor, vo: torch.Tensor, heads: int, sl: slice
    ) -> torch.Tensor:
        """The image tokens plus their attention to the prompt tokens, before the norm:
        ``kq`` B x (H*T) x C (the tokens' keys through the query weights, scaled), ``kb``
        B x (H*T) x 1 (the query bias term), ``vo`` B x (H*T) x C (values through the output
        projection, :meth:`FactoredMaskDecoder._value_out`): b x N x C."""
        b = sl.stop - sl.start
        rows, c = kq.shape[1], kq.shape[2]
        n = self.x0t.shape[1]
        logits = (kq[sl].reshape(-1, c) @ self.x0t).view(b, rows, n)
        logits = torch.baddbmm(logits, kq[sl] @ self.wc, self.h_t[sl]).add_(kb[sl])
        a = logits.view(b, heads, rows // heads, n).softmax(2).view(b, rows, n)
        keys = torch.baddbmm(self.residual, a.transpose(1, 2), vo[sl])
        return keys.baddbmm_(self.h_tok[sl], self.wc.t().expand(b, -1, -1))
