"""The sliced decoder's in-place element-wise steps give exactly upstream's bits.

Each helper is compared (``torch.equal``) with sam2's own modules called as
``MaskDecoder.predict_masks`` calls them, on the layouts the decoder hands them (the
transposed convolutions return channels-last tensors), in fp32 and under bf16 autocast
(where a sum promotes to fp32 and must not be written into a bf16 tensor).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sam_bench.engines.decoder import (
    _activation,
    _broadcasts_to,
    _fits,
    _inplace_add,
    _layer_norm_2d,
    _Upscaling,
    _WithPe,
    split,
)


@pytest.fixture(scope="module")
def decoder() -> SimpleNamespace:
    """sam2's ``MaskDecoder`` upscaling modules (random weights), as its constructor builds
    them with high-resolution features."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    torch.manual_seed(0)
    transformer = TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)
    return MaskDecoder(  # type: ignore[no-any-return]
        transformer_dim=256, transformer=transformer, use_high_res_features=True
    ).eval()


def _upstream_upscaling(d, src, feats):
    """The lines of ``MaskDecoder.predict_masks`` that upscale the image tokens."""
    dc1, ln1, act1, dc2, act2 = d.output_upscaling
    feat_s0, feat_s1 = feats
    up = act1(ln1(dc1(src) + feat_s1))
    return act2(dc2(up) + feat_s0)


def _tokens_as_image(k: int) -> torch.Tensor:
    """Image tokens k x 4096 x 256 viewed as k x 256 x 64 x 64, as the decoder does."""
    return torch.randn(k, 4096, 256).transpose(1, 2).view(k, 256, 64, 64)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("k", [2, 3])
def test_upscaling_is_bit_identical(decoder, k, bf16) -> None:
    torch.manual_seed(k)
    feats = [torch.randn(1, 32, 256, 256), torch.randn(1, 64, 128, 128)]
    src = _tokens_as_image(k)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        want = _upstream_upscaling(decoder, src, feats)
        up = _Upscaling(decoder, feats)
        got = up(src)
        again = up(_tokens_as_image(k))  # the features laid out once, reused
    assert got.dtype == want.dtype and got.stride() == want.stride()
    assert torch.equal(got, want)
    assert again.shape == want.shape and not torch.equal(again, want)
    if not bf16:  # the fp32 sums run in place, on features laid out like the convolutions
        assert all(
            f.is_contiguous(memory_format=torch.channels_last) for f in up._laid_out.values()
        )
        assert len(up._laid_out) == 2


@pytest.mark.parametrize("channels_last", [False, True])
def test_layer_norm_2d_in_place_matches_sam2(decoder, channels_last) -> None:
    ln = decoder.output_upscaling[1]
    torch.nn.init.normal_(ln.weight)
    torch.nn.init.normal_(ln.bias)
    x = torch.randn(3, 64, 32, 32)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want = ln(x)
        got = _layer_norm_2d(ln, x.clone())
    assert torch.equal(got, want)
    assert got.stride() == want.stride()


def test_layer_norm_2d_keeps_a_bf16_input_out_of_place(decoder) -> None:
    """A bf16 input times fp32 weights is fp32 upstream: no in-place step may keep bf16."""
    ln = decoder.output_upscaling[1]
    x = torch.randn(2, 64, 16, 16).to(torch.bfloat16)
    with torch.inference_mode():
        got = _layer_norm_2d(ln, x.clone())
        want = ln(x)
    assert got.dtype == want.dtype == torch.float32
    assert torch.equal(got, want)


def test_other_norms_and_activations_are_called_as_is() -> None:
    x = torch.randn(2, 8, 4, 4)
    norm = torch.nn.GroupNorm(2, 8)
    with torch.inference_mode():
        assert torch.equal(_layer_norm_2d(norm, x.clone()), norm(x))
        relu = torch.nn.ReLU()
        assert torch.equal(_activation(relu, x.clone()), relu(x))
        for approximate in ("none", "tanh"):
            gelu = torch.nn.GELU(approximate=approximate)
            y = x.clone()
            out = _activation(gelu, y)
            assert out.data_ptr() == y.data_ptr()  # in place
            assert torch.equal(out, gelu(x))


def test_inplace_add_only_where_the_sum_keeps_shape_and_dtype() -> None:
    a = torch.randn(4, 5)
    assert _fits(a, torch.randn(1, 5))
    assert not _fits(torch.randn(1, 5), a)  # would broadcast the left side
    assert not _fits(a.to(torch.bfloat16), a)  # would promote to fp32
    assert not _fits(a, 2.0)
    b = torch.randn(1, 5)
    left = torch.randn(1, 5)
    s = _inplace_add(left.clone(), a)
    assert s.shape == (4, 5) and torch.equal(s, left + a)
    x = a.clone()
    assert _inplace_add(x, b).data_ptr() == x.data_ptr()
    assert torch.equal(x, a + b)


def test_with_pe_reuses_one_buffer_and_gives_the_sums() -> None:
    pe = torch.randn(1, 64, 16)
    with_pe = _WithPe(pe)
    keys = [torch.randn(4, 64, 16) for _ in range(3)]
    ptrs = set()
    for key in keys:
        s = with_pe(key)
        assert torch.equal(s, key + pe)
        ptrs.add(s.data_ptr())
    assert len(ptrs) == 1
    larger = torch.randn(5, 64, 16)  # a slice holding the remainder
    assert torch.equal(with_pe(larger), larger + pe)
    strided = torch.randn(4, 16, 64).transpose(1, 2)  # out of place, as upstream
    assert torch.equal(with_pe(strided), strided + pe)


def test_split_never_leaves_a_short_last_slice() -> None:
    assert split(4, 2) == [slice(0, 2), slice(2, 4)]
    assert split(5, 2) == [slice(0, 2), slice(2, 5)]
    assert split(3, 2) == [slice(0, 3)]
    assert split(1, 2) == [slice(0, 1)]
    assert split(8, 4) == [slice(0, 4), slice(4, 8)]


@pytest.mark.parametrize(
    ("shape", "target"),
    [((), (2, 3)), ((3,), (2, 3)), ((1, 3), (2, 3)), ((2, 1), (2, 3)), ((2, 3), (2, 3)),
     ((1,), (0,)), ((0,), (0,)), ((4, 2, 3), (2, 3)), ((3, 1), (2, 3)), ((2,), (2, 3)),
     ((1, 1, 3), (5, 2, 3)), ((5, 2, 1), (5, 2, 3)), ((2, 3), (1, 3)), ((2, 0), (2, 1))],
)  # fmt: skip
def test_broadcasts_to_agrees_with_torch(shape: tuple[int, ...], target: tuple[int, ...]) -> None:
    try:
        expected = torch.broadcast_shapes(shape, target) == torch.Size(target)
    except RuntimeError:  # shapes that do not broadcast at all
        expected = False
    assert _broadcasts_to(torch.Size(shape), torch.Size(target)) == expected
