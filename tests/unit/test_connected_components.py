"""The CPU connected-components step against scipy, and through sam2's official code path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from sam_bench.models import connected_components as cc


def test_matches_scipy_8_connectivity_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((6, 1, 40, 50)) > 0.55
    labels, counts = cc.connected_components_cpu(torch.from_numpy(masks))
    assert labels.dtype == torch.int32 and counts.shape == masks.shape
    for i in range(masks.shape[0]):
        ref, n = ndimage.label(masks[i, 0], structure=np.ones((3, 3)))
        sizes = np.bincount(ref.ravel())
        sizes[0] = 0
        np.testing.assert_array_equal(counts[i, 0].numpy(), sizes[ref])
        ours = labels[i, 0].numpy()
        assert ((ours > 0) == masks[i, 0]).all()
        # same partition: each scipy component is exactly one of ours
        for k in range(1, n + 1):
            assert len(np.unique(ours[ref == k])) == 1
        assert len(np.unique(ours[ours > 0])) == n


def test_diagonal_pixels_are_one_component() -> None:
    m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    m[0, 0, 0, 0] = m[0, 0, 1, 1] = m[0, 0, 2, 2] = True
    _, counts = cc.connected_components_cpu(m)
    assert counts.max().item() == 3


def test_official_postprocess_masks_fills_holes_and_removes_islands_on_cpu() -> None:
    """sam2's own ``SAM2Transforms.postprocess_masks`` honours max_hole/sprinkle area on CPU."""
    from sam2.utils.transforms import SAM2Transforms

    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[0, 0, 4:20, 4:20] = 5.0  # object
    logits[0, 0, 10:12, 10:12] = -5.0  # 4-pixel hole
    logits[0, 0, 28:30, 28:30] = 5.0  # 4-pixel island
    tf = SAM2Transforms(resolution=1024, mask_threshold=0.0, max_hole_area=10, max_sprinkle_area=10)
    cc.install()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the upstream "skipping post-processing" warning
        out = tf.postprocess_masks(logits, (32, 32))
    binary = out[0, 0] > 0
    assert binary[10:12, 10:12].all(), "hole filled"
    assert not binary[28:30, 28:30].any(), "island removed"
    assert binary[4:20, 4:20].all()


def test_implementation_names() -> None:
    assert cc.implementation(torch.device("cpu")) == "opencv_cpu"


def test_rejects_bad_shape() -> None:
    with pytest.raises(ValueError):
        cc.connected_components_cpu(torch.zeros(3, 3))
