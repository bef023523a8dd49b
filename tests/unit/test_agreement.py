"""The agreement reductions (sam_bench.models.agreement) against pycocotools and numpy."""

from __future__ import annotations

import math

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.models.agreement import CaseAgreement, aggregate, box_case, grid_case, mask_iou


def test_mask_iou_matches_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.random((23, 31)) > 0.6
        b = rng.random((23, 31)) > 0.4
        ra, rb = (mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (a, b))
        assert mask_iou(a, b) == mask_utils.iou([ra], [rb], [0])[0][0]
    empty = np.zeros((4, 4), dtype=bool)
    assert mask_iou(empty, empty) == 1.0 and mask_iou(empty, ~empty) == 0.0


def test_aggregate_takes_worst_cases_and_mean_over_every_mask() -> None:
    cases = [
        CaseAgreement(0.1, 0.01, 0.5, [1.0, 0.9]),
        CaseAgreement(0.3, 0.002, 0.2, [0.8, 1.0, 1.0, 1.0]),
    ]
    got = aggregate(cases)
    assert got == {
        "agreement_embed_max_abs": 0.3,
        "agreement_embed_rel_l2": 0.01,
        "agreement_logits_max_abs": 0.5,
        "agreement_mask_iou_min": 0.8,
        "agreement_mask_iou_mean": (1.0 + 0.9 + 0.8 + 3.0) / 6,
    }
    assert all(math.isnan(v) for v in aggregate([]).values()), "nothing compared: NaN"


def test_cases_place_prompts_on_the_image() -> None:
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    grid = grid_case(image, 2)
    assert grid.point_coords is not None and grid.point_labels is not None
    np.testing.assert_allclose(grid.point_coords[:, 0], [[20, 10], [60, 10], [20, 30], [60, 30]])
    assert grid.point_labels.shape == (4, 1) and grid.multimask_output
    m = np.zeros((40, 80), dtype=bool)
    m[5:9, 10:20] = True
    box = box_case(image, [m, np.zeros_like(m)])
    assert box is not None and box.boxes is not None
    np.testing.assert_array_equal(box.boxes, [[10, 5, 20, 9]])
    assert box_case(image, []) is None
