"""Prompts derived from ground truth (sam_bench.prompts): click placement and RITM's next-click
rule on hand-made masks with known answers, the distance transform against SciPy's exact EDT,
boxes against pycocotools / torchvision, seeded jitter, detector matching and file errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from scipy import ndimage
from torchvision.ops import box_iou as tv_box_iou

from sam_bench.errors import ConfigError
from sam_bench.prompts.boxes import (
    box_iou,
    instance_rng,
    jitter_box,
    match_detections,
    read_detections,
    tight_box,
)
from sam_bench.prompts.clicks import (
    Click,
    boundary_distance,
    farthest_point,
    first_click,
    next_click,
)


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """HxW bool mask with rows y0..y1-1 and columns x0..x1-1 set."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


# ------------------------------------------------------------------------------ clicks


def test_first_click_is_the_centre_of_a_square() -> None:
    m = rect(11, 11, 2, 7, 3, 8)  # 5x5 square, centre (4, 5)
    assert first_click(m) == Click(x=5, y=4, positive=True)
    assert farthest_point(m) == (4, 5, 3.0)  # 3 pixels to the first background pixel


def test_ties_go_to_the_first_pixel_in_raster_order() -> None:
    # a 2x4 bar: every pixel is 1 from the boundary -> top-left pixel
    m = rect(6, 8, 2, 4, 2, 6)
    assert first_click(m) == Click(x=2, y=2, positive=True)
    # a 4x6 block: the 2x4 core ties at distance 2 -> its top-left pixel (row 2, col 2)
    m = rect(8, 10, 1, 5, 1, 7)
    assert farthest_point(m) == (2, 2, 2.0)


def test_the_image_border_counts_as_boundary() -> None:
    full = np.ones((5, 7), dtype=bool)
    # row 2 is 3 pixels from the padded top and bottom; columns 2..4 tie at 3: first is col 2
    assert farthest_point(full) == (2, 2, 3.0)
    corner = rect(20, 20, 0, 3, 0, 3)  # 3x3 in the corner: centre (1, 1), 2 from the pad
    assert farthest_point(corner) == (1, 1, 2.0)


def test_one_pixel_instance_is_clicked_on_its_pixel() -> None:
    m = np.zeros((9, 9), dtype=bool)
    m[6, 3] = True
    assert first_click(m) == Click(x=3, y=6, positive=True)
    assert first_click(np.zeros((9, 9), dtype=bool)) is None


def test_distance_transform_matches_scipys_exact_edt() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(5, 60, size=2)
        m = ndimage.binary_opening(rng.random((h, w)) < 0.6)
        ref = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        ours = boundary_distance(m)
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-5)
        if m.any():
            y, x, d = farthest_point(m)  # type: ignore[misc]
            flat = int(np.argmax(ref))  # numpy: first maximum in raster order
            assert (y, x) == divmod(flat, w)
            assert d == pytest.approx(ref.max())


def test_next_click_is_positive_in_the_larger_missed_region() -> None:
    gt = rect(30, 30, 5, 20, 5, 20)  # 15x15
    pred = rect(30, 30, 5, 20, 5, 10)  # covers the left third: 15x10 missed
    # missed region: rows 5..19, cols 10..19 (the predicted part is not background of it, the
    # region's own outside is). Distance 5 for rows 9..15 x cols 14..15 (5 to col 9 or col 20,
    # >= 5 to rows 4 and 20): the first in raster order is row 9, col 14
    assert next_click(gt, pred) == Click(x=14, y=9, positive=True)
    # empty prediction: the first click
    assert next_click(gt, np.zeros_like(gt)) == first_click(gt)


def test_next_click_is_negative_in_the_larger_false_region() -> None:
    gt = rect(40, 40, 2, 8, 2, 8)
    pred = gt | rect(40, 40, 20, 35, 20, 35)  # a 15x15 false blob, nothing missed
    assert next_click(gt, pred) == Click(x=27, y=27, positive=False)
    # a small miss (1 pixel wide) against the big false region: still negative
    pred2 = pred & ~rect(40, 40, 2, 8, 2, 3)
    assert next_click(gt, pred2).positive is False  # type: ignore[union-attr]
    # a bigger miss than the false region: positive
    pred3 = rect(40, 40, 30, 32, 30, 32) | rect(40, 40, 2, 8, 2, 3)
    big_gt = rect(40, 40, 2, 20, 2, 20)
    c = next_click(big_gt, pred3)
    assert c is not None and c.positive and big_gt[c.y, c.x] and not pred3[c.y, c.x]


def test_a_tie_between_missed_and_false_regions_is_negative() -> None:
    gt = rect(20, 30, 2, 7, 2, 7)  # 5x5 object
    pred = rect(20, 30, 10, 15, 20, 25)  # a 5x5 false blob elsewhere, the object missed
    c = next_click(gt, pred)
    assert c == Click(x=22, y=12, positive=False)  # both at distance 3: RITM clicks negative


def test_no_error_left_means_no_click() -> None:
    gt = rect(10, 10, 2, 6, 2, 6)
    assert next_click(gt, gt.copy()) is None


def test_clicked_pixels_are_never_clicked_again() -> None:
    gt = rect(11, 11, 2, 7, 3, 8)
    pred = np.zeros_like(gt)
    first = next_click(gt, pred)
    assert first == Click(x=5, y=4, positive=True)
    again = next_click(gt, pred, [first])  # type: ignore[list-item]
    assert again is not None and (again.x, again.y) != (5, 4)
    assert again.positive and boundary_distance(gt)[again.y, again.x] == 2.0
    # a 1-pixel miss that was clicked already: nothing left to click
    one = np.zeros((5, 5), dtype=bool)
    one[2, 2] = True
    assert next_click(one, np.zeros_like(one), [Click(2, 2, True)]) is None


# ------------------------------------------------------------------------------ boxes


def test_tight_box_is_cocos_bbox_of_the_mask() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        m = np.zeros((40, 50), dtype=bool)
        y, x = rng.integers(0, 35), rng.integers(0, 45)
        m[y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = True
        m[rng.integers(0, 40), rng.integers(0, 50)] = True
        bx, by, bw, bh = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
        assert tight_box(m).tolist() == [bx, by, bx + bw, by + bh]  # type: ignore[union-attr]
    one = np.zeros((9, 9), dtype=bool)
    one[4, 7] = True
    assert tight_box(one).tolist() == [7, 4, 8, 5]  # type: ignore[union-attr]
    assert tight_box(np.zeros((3, 3), dtype=bool)) is None


def test_jitter_is_seeded_clipped_and_scaled_to_the_box() -> None:
    box = np.array([10.0, 20.0, 50.0, 40.0])  # 40 wide, 20 high
    a = jitter_box(box, 0.1, instance_rng(0, "img", 3), 100, 100)
    b = jitter_box(box, 0.1, instance_rng(0, "img", 3), 100, 100)
    c = jitter_box(box, 0.1, instance_rng(0, "img", 4), 100, 100)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(jitter_box(box, 0.0, instance_rng(0, "img", 3), 100, 100), box)
    moves = np.array(
        [jitter_box(box, 0.1, instance_rng(s, "img", 0), 1000, 1000) - box for s in range(2000)]
    )
    # standard deviation 0.1 x width on x sides, 0.1 x height on y sides
    np.testing.assert_allclose(moves.std(axis=0), [4.0, 2.0, 4.0, 2.0], rtol=0.1)
    for s in range(200):  # near the corner, huge jitter: inside the image, >= 1 pixel
        j = jitter_box(np.array([0.0, 0.0, 2.0, 2.0]), 5.0, instance_rng(s, "x", 0), 30, 20)
        assert 0 <= j[0] < j[2] <= 30 and 0 <= j[1] < j[3] <= 20
        assert j[2] - j[0] >= 1 - 1e-9 and j[3] - j[1] >= 1 - 1e-9


def test_box_iou_matches_torchvision() -> None:
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 50, size=(12, 2))
    a = np.concatenate([xy[:6], xy[:6] + rng.uniform(1, 30, size=(6, 2))], axis=1)
    b = np.concatenate([xy[6:], xy[6:] + rng.uniform(1, 30, size=(6, 2))], axis=1)
    ref = tv_box_iou(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), ref, atol=1e-12)


def test_detections_match_greedily_by_score() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=float)
    dets = np.array(
        [
            [0, 0, 10, 9],  # IoU 0.9 with gt 0, score 0.5
            [0, 0, 10, 10],  # IoU 1.0 with gt 0, score 0.9: takes gt 0 first
            [21, 21, 31, 31],  # IoU 81/119 = 0.68 with gt 1
            [70, 70, 80, 80],  # matches nothing
        ],
        dtype=float,
    )
    scores = np.array([0.5, 0.9, 0.8, 0.99])
    assert match_detections(dets, scores, gt, 0.5).tolist() == [1, 2, -1]
    assert match_detections(dets, scores, gt, 0.7).tolist() == [1, -1, -1]
    # the lower-scoring duplicate takes gt 0 when the better one is gone
    assert match_detections(dets[[0, 2]], scores[[0, 2]], gt, 0.5).tolist() == [0, 1, -1]
    assert match_detections(dets[:0], scores[:0], gt, 0.5).tolist() == [-1, -1, -1]


def test_read_detections(tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([
        {"image_id": 7, "bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 3},
        {"image_id": 7, "bbox": [0, 0, 1, 1], "score": 0.1},
        {"image_id": "b", "bbox": [5, 5, 5, 5]},
    ]))  # fmt: skip
    dets = read_detections(path)
    assert dets.n_total == 3 and set(dets.by_image) == {"7", "b"}
    (box, score), _ = dets.by_image["7"]
    assert box.tolist() == [1, 2, 4, 6] and score == 0.5
    assert len(dets.for_image("7", 0.2)) == 1 and dets.for_image("none") == []
    assert dets.by_image["b"][0][1] == 1.0  # no score: 1
    assert len(dets.sha256) == 64


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        ("{not json", "is not JSON"),
        ('{"a": 1}', "expected a list"),
        ('[{"bbox": [0, 0, 1, 1]}]', "entry 0 has no image_id"),
        ('[{"image_id": 1, "bbox": [0, 0, 1]}]', "entry 0: bbox must be 4"),
        ('[{"image_id": 1, "bbox": [0, 0, -1, 1]}]', "width and height must be >= 0"),
        ('[{"image_id": 1, "bbox": [0, 0, 1, 1], "score": "high"}]', "score must be"),
    ],
)
def test_bad_detection_files_name_the_key_and_entry(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "dets.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected) as err:
        read_detections(path)
    assert err.value.key == "prompt.boxes"


def _brute_squared_distance(m: np.ndarray) -> np.ndarray:
    """dy**2 + dx**2 to the nearest outside pixel (the image border outside), by brute force."""
    padded = np.pad(m, 1)
    by, bx = np.nonzero(~padded)
    ys, xs = np.indices(m.shape)
    sq = (ys[..., None] + 1 - by) ** 2 + (xs[..., None] + 1 - bx) ** 2
    return np.where(m, sq.min(axis=-1), 0)


def test_ties_are_broken_by_row_then_column_on_exact_squared_distances() -> None:
    """The farthest point is the brute-force maximum of integer squared distances, the
    smallest row then column among equals; the masks include ties between pixels whose
    nearest outside pixel lies at different offsets of the same length (5**2 = 3**2 + 4**2,
    65 = 1 + 8**2 = 4**2 + 7**2), where a float transform may round them apart."""
    rng = np.random.default_rng(1)
    ties = 0
    for _ in range(200):
        h, w = rng.integers(6, 24, size=2)
        m = ndimage.binary_opening(rng.random((h, w)) < 0.7)
        if not m.any():
            continue
        sq = _brute_squared_distance(m)
        best = sq.max()
        y, x, d = farthest_point(m)  # type: ignore[misc]
        first = np.argwhere(sq == best)[0]  # argwhere: row-major, smallest row then column
        assert (y, x) == tuple(first) and d == pytest.approx(np.sqrt(best))
        ties += int((sq == best).sum() > 1)
    assert ties > 20  # the masks did exercise ties


def test_a_tie_between_missed_and_extra_regions_gives_the_negative_click() -> None:
    """Equal squared distances in the false-negative and false-positive regions: negative
    (RITM's rule), at the smallest row then column of the false-positive region."""
    gt = rect(20, 30, 2, 9, 2, 9)  # 7x7 square, nothing predicted there
    pred = rect(20, 30, 2, 9, 15, 22)  # an equal 7x7 square predicted where nothing is
    click = next_click(gt, pred)
    assert click == Click(x=18, y=5, positive=False)
    # moving the extra square one row down keeps the tie and the rule
    assert next_click(gt, rect(20, 30, 3, 10, 15, 22)) == Click(x=18, y=6, positive=False)


def test_the_exact_fallback_gives_the_same_squared_distances(monkeypatch) -> None:
    """Regions whose pixels lie farther than EXACT_FLOAT_DISTANCE from their boundary take
    scipy's exact feature transform: forced here, both give the brute-force integers."""
    from sam_bench.prompts import clicks

    rng = np.random.default_rng(3)
    for _ in range(30):
        h, w = rng.integers(6, 24, size=2)
        m = ndimage.binary_opening(rng.random((h, w)) < 0.7)
        if not m.any():
            continue
        box = (0, h - 1, 0, w - 1)
        fast = clicks._crop_squared_distance(np.pad(m, 0), box)
        monkeypatch.setattr(clicks, "EXACT_FLOAT_DISTANCE", 0.0)
        exact = clicks._crop_squared_distance(m, box)
        monkeypatch.undo()
        np.testing.assert_array_equal(fast, _brute_squared_distance(m))
        np.testing.assert_array_equal(exact, _brute_squared_distance(m))
