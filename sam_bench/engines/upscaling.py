"""SAM 2's mask upscaling and hypernetwork product as per-pixel matrix products, channels last.

sam2's ``MaskDecoder.predict_masks`` (high-resolution features on, as in every sam2.1 model)
turns each prompt's 64 x 64 x 256 image tokens into 256 x 256 masks with
``act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)`` and the hypernetwork product
``hyper_in @ up``: two ``ConvTranspose2d(kernel 2, stride 2)``, a ``LayerNorm2d`` written as
eight element-wise passes over 64 x 128 x 128 values, two GELUs and two broadcast additions, all
in NCHW. A transposed convolution with kernel = stride = 2 maps each input pixel to its own
2 x 2 block of output pixels, so it is one matrix product per pixel:

* ``dc1``: the tokens (N x 256, as the transformer leaves them) times ``W1`` (256 x 2*2*64), the
  output columns ordered (dy, dx, channel): every row of the result viewed as 4 x 64 is one
  128 x 128 pixel, channels last. The bias and ``feat_s1`` (rearranged once per batch into
  the same pixel order) enter as the product's added input (one ``baddbmm``);
* ``ln1`` is then ``F.layer_norm`` over the last dimension (one pass; the same function as
  ``LayerNorm2d``: mean and biased variance over channels, same epsilon), ``act1`` the GELU;
* ``dc2`` the same with 64 -> 2*2*32 and ``feat_s0``; ``act2`` the GELU;
* the hypernetwork product reads the channels-last result once per mask token used (only
  the tokens whose masks are returned), and one permutation puts the pixels back in raster
  order (b x M x 256 x 256: small next to the 32-channel tensors).

No pixel shuffle of the 32- or 64-channel tensors, no NCHW copy of the tokens. The same
function as sam2's modules with the sums in another order: checked against the official
predictor in ``tests/integration/test_prompted_decoder.py`` (IoU >= 0.999, logits ~1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sam_bench.engines.decoder import _activation


@dataclass(frozen=True)
class PixelUpscaler:
    """The weights of one decoder's ``output_upscaling``, rearranged as matrices, with one
    image's high-resolution features in the products' pixel order (see the module doc)."""

    w1: torch.Tensor
    """C x (2*2*C1): ``dc1``'s weight, columns (dy, dx, out channel)."""
    add1: torch.Tensor
    """N x (2*2*C1): ``dc1``'s bias plus ``feat_s1`` in the same order."""
    w2: torch.Tensor
    """C1 x (2*2*C2): ``dc2``'s weight."""
    add2: torch.Tensor
    """(N*4) x (2*2*C2): ``dc2``'s bias plus ``feat_s0``."""
    ln: Any
    """``ln1`` (a ``LayerNorm2d``: weight, bias, eps)."""
    act1: Any
    act2: Any
    hw: tuple[int, int]
    """(h, w) of the image tokens (64, 64)."""

    @classmethod
    def build(
        cls, decoder: Any, feat_s0: torch.Tensor, feat_s1: torch.Tensor, hw: tuple[int, int]
    ) -> PixelUpscaler:
        """From ``decoder.output_upscaling`` and one image's projected high-resolution
        features (``feat_s0`` 1 x C2 x 4h x 4w, ``feat_s1`` 1 x C1 x 2h x 2w)."""
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        h, w = hw
        w1 = _kernel_matrix(dc1.weight)
        w2 = _kernel_matrix(dc2.weight)
        c1, c2 = dc1.weight.shape[1], dc2.weight.shape[1]
        # feat_s1[c, 2i+dy, 2j+dx] -> row (i, j), column (dy, dx, c)
        f1 = feat_s1.reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(h * w, 4 * c1)
        # feat_s0[c, 4i+2dy+ey, 4j+2dx+ex] -> row (i, j, dy, dx), column (ey, ex, c)
        f0 = feat_s0.reshape(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0)
        f0 = f0.reshape(h * w * 4, 4 * c2)
        add1 = f1 + dc1.bias.repeat(4)
        add2 = f0 + dc2.bias.repeat(4)
        return cls(w1, add1, w2, add2, ln1, act1, act2, hw)

    def masks(
        self,
        keys: torch.Tensor,
        hyper_in: torch.Tensor,
        scratch: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``hyper_in @ upscaling(keys)``: ``keys`` b x N x C image tokens, ``hyper_in``
        b x M x C2 (the hypernetwork outputs of the M tokens wanted); b x M x 4h x 4w.
        ``scratch``: two flat tensors of at least b * N * 4*C1 and b * 4N * 4*C2 values for
        the outputs of the two products (reused across calls, they save mapping fresh memory:
        the page faults cost more than the GELU on these tensors)."""
        b, n, _ = keys.shape
        c1 = self.w1.shape[1] // 4
        c2 = self.w2.shape[1] // 4
        out1 = out2 = None
        if scratch is not None:
            out1 = scratch[0][: b * n * 4 * c1].view(b, n, 4 * c1)
            out2 = scratch[1][: b * n * 16 * c2].view(b, n * 4, 4 * c2)
        up = torch.baddbmm(self.add1, keys, self.w1.expand(b, -1, -1), out=out1)  # b x N x 4*C1
        up = F.layer_norm(up.view(b, n * 4, c1), (c1,), self.ln.weight, self.ln.bias, self.ln.eps)
        up = _activation(self.act1, up)  # in place on the fresh temporary
        up = torch.baddbmm(self.add2, up, self.w2.expand(b, -1, -1), out=out2)  # b x 4N x 4*C2
        up = _activation(self.act2, up).view(b, n * 16, c2)
        m = hyper_in.shape[1]
        out = up @ hyper_in.transpose(1, 2)  # b x 16N x M, pixels (i, j, dy, dx, ey, ex)
        h, w = self.hw
        out = out.view(b, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return out.reshape(b, m, 4 * h, 4 * w)


def _kernel_matrix(weight: torch.Tensor) -> torch.Tensor:
    """A ``ConvTranspose2d`` weight (C_in x C_out x 2 x 2) as C_in x (2*2*C_out), columns
    ordered (dy, dx, out channel)."""
    c_in = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(c_in, -1).contiguous()
