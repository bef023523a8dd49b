"""The fast engine's post-processing gives sam2's own numbers, bit for bit.

Each function of ``sam_bench.engines.postprocess`` is compared with the sam2 function the
official generator calls (``calculate_stability_score``, ``batched_mask_to_box``,
``uncrop_masks`` + ``mask_to_rle_pytorch`` + ``coco_encode_rle``, ``area_from_rle``) on
upsampled random logits, as the generator sees them, and on edge cases (empty, full, single
pixels at the borders, logits exactly at a threshold).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sam2.utils.amg import (
    area_from_rle,
    batched_mask_to_box,
    calculate_stability_score,
    coco_encode_rle,
    mask_to_rle_pytorch,
    uncrop_masks,
)

from sam_bench.engines.postprocess import encode_rles, mask_boxes, stability_and_binary


def _logits(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """N x h x w float32 logits upsampled bilinearly from 64x64, like the generator's."""
    g = torch.Generator().manual_seed(seed)
    shift = torch.linspace(-20, 20, n)[:, None, None, None]  # from mostly off to mostly on
    low = torch.randn(n, 1, 64, 64, generator=g) * 6 + shift
    return F.interpolate(low, (h, w), mode="bilinear", align_corners=False)[:, 0]


def _edge_masks(h: int, w: int) -> torch.Tensor:
    """Empty, full, one pixel in each corner, one row, one column, a diagonal."""
    masks = torch.zeros(9, h, w, dtype=torch.bool)
    masks[1] = True
    masks[2, 0, 0] = masks[3, 0, w - 1] = masks[4, h - 1, 0] = masks[5, h - 1, w - 1] = True
    masks[6, h // 2, :] = True
    masks[7, :, w // 3] = True
    masks[8] = torch.eye(h, w, dtype=torch.bool)
    return masks


@pytest.mark.parametrize(("threshold", "offset"), [(0.0, 1.0), (-0.5, 0.5), (0.3, 0.0), (0.0, 2.7)])
def test_stability_and_binary_equal_sam2(threshold: float, offset: float) -> None:
    masks = _logits(24, 37, 53)
    # logits exactly at each threshold (float32), where > and >= differ
    masks[0, :5, :5] = torch.tensor(threshold + offset, dtype=torch.float32)
    masks[1, :5, :5] = torch.tensor(threshold - offset, dtype=torch.float32)
    masks[2, :5, :5] = torch.tensor(threshold, dtype=torch.float32)
    stability, binary = stability_and_binary(masks, threshold, offset)
    expected = calculate_stability_score(masks, threshold, offset)
    assert stability.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(stability, expected, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(binary, masks > threshold)
    # with an offset, the case covers scores strictly between 0 and 1 (without, every
    # non-empty mask scores 1)
    scored = stability[~stability.isnan()]
    inside = (scored > 0) & (scored < 1)
    assert int(inside.sum()) >= 5 if offset > 0 else len(scored) >= 5 and bool((scored == 1).all())


def test_stability_of_an_empty_union_is_nan_as_in_sam2() -> None:
    masks = torch.full((2, 8, 8), -30.0)
    stability, binary = stability_and_binary(masks, 0.0, 1.0)
    assert torch.isnan(stability).all()
    assert torch.isnan(calculate_stability_score(masks, 0, 1)).all()
    assert not binary.any()


@pytest.mark.parametrize(("h", "w"), [(37, 53), (1, 9), (240, 320)])
def test_mask_boxes_equal_sam2(h: int, w: int) -> None:
    cases = [_logits(16, h, w, seed=1) > 0]
    if h > 1:
        cases.append(_edge_masks(h, w))
    for binary in cases:
        boxes = mask_boxes(binary)
        expected = batched_mask_to_box(binary)
        assert boxes.dtype == expected.dtype == torch.int64
        assert torch.equal(boxes, expected)
    none = torch.zeros(0, h, w, dtype=torch.bool)
    assert mask_boxes(none).shape == batched_mask_to_box(none).shape == (0, 4)
    assert mask_boxes(none).dtype == batched_mask_to_box(none).dtype


@pytest.mark.parametrize(
    "crop_box", [[0, 0, 53, 37], [10, 5, 41, 30], [0, 7, 53, 37]], ids=["full", "inner", "rows"]
)
def test_encode_rles_equal_sam2(crop_box: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    import sam_bench.engines.postprocess as pp

    monkeypatch.setattr(pp, "RLE_CHUNK", 5)  # several chunks, the last one short
    h, w = 37, 53
    x0, y0, x1, y1 = crop_box
    crop = torch.cat([_logits(12, y1 - y0, x1 - x0, seed=2) > 0, _edge_masks(y1 - y0, x1 - x0)])
    rles, areas = encode_rles(crop, crop_box, (h, w))
    official = mask_to_rle_pytorch(uncrop_masks(crop, crop_box, h, w))
    assert len(rles) == len(official) == crop.shape[0]
    for rle, ref, area in zip(rles, official, areas, strict=True):
        expected = coco_encode_rle(ref)
        assert rle["size"] == expected["size"]
        assert rle["counts"].decode("ascii") == expected["counts"]
        assert area == area_from_rle(ref)
