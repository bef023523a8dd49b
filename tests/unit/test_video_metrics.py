"""J, F and the DAVIS statistics on hand-made masks whose values are counted by hand (the
counts are in the comments), the empty-mask conventions of the official ``davis2017-evaluation``
toolkit, and the video evaluators on a small synthetic sequence.

Boundary conventions (``seg2bmap``): a pixel is on the boundary when it differs from its east,
south or south-east neighbour, so the boundary of a filled s x s square is the ring of the
(s+1) x (s+1) block starting one pixel up and left: 4 * (s + 1) - 4 pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam_bench.data.base import ImageRef, Sample, VideoTruth
from sam_bench.tasks.video.metrics import (
    PropagationCost,
    VideoEvaluator,
    VideoPrediction,
    boundary_f,
    boundary_tolerance,
    davis_statistics,
    region_similarity,
    seg2bmap,
)


def square(h: int, w: int, y: int, x: int, s: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y : y + s, x : x + s] = True
    return m


A = square(100, 100, 40, 40, 20)  # tolerance on 100x100: ceil(0.008 * 141.4) = 2 pixels


def test_tolerance_is_ceil_of_0008_diagonal() -> None:
    assert boundary_tolerance((100, 100)) == 2  # 1.13 -> 2
    assert boundary_tolerance((480, 854)) == 8  # 0.008 * 979.6 = 7.84 -> 8
    assert boundary_tolerance((1080, 1920)) == 18  # 17.62 -> 18
    assert boundary_tolerance((100, 100), bound_th=3) == 3  # >= 1: pixels


def test_seg2bmap_counts() -> None:
    assert seg2bmap(A).sum() == 4 * 21 - 4  # ring of the 21x21 block [39..59]^2
    assert set(zip(*np.nonzero(seg2bmap(A)), strict=True)) >= {(39, 39), (59, 59), (39, 59)}
    one = square(10, 10, 4, 4, 1)
    # the pixel (E neighbour outside) and the three pixels up/left of it
    assert {tuple(p) for p in np.argwhere(seg2bmap(one))} == {(4, 4), (3, 4), (4, 3), (3, 3)}
    line = np.zeros((100, 100), dtype=bool)
    line[50, 20:60] = True  # L = 40: L pixels + (L + 1) above + 1 on the left = 2L + 2
    assert seg2bmap(line).sum() == 82
    # a mask covering the whole frame has no boundary (the last row / column rules)
    assert seg2bmap(np.ones((30, 40), dtype=bool)).sum() == 0


def test_j_known_cases() -> None:
    assert region_similarity(A, A) == 1.0
    empty = np.zeros_like(A)
    assert region_similarity(empty, empty) == 1.0  # empty union: 1 (toolkit convention)
    assert region_similarity(A, empty) == 0.0
    assert region_similarity(empty, A) == 0.0
    # shifted by one column: intersection 20 x 19 = 380, union 400 + 20 = 420
    assert region_similarity(A, np.roll(A, 1, axis=1)) == pytest.approx(380 / 420)


def test_f_identical_and_within_tolerance() -> None:
    assert boundary_f(A, A) == 1.0
    # one pixel off is within the 2-pixel tolerance: every boundary pixel matches
    assert boundary_f(A, np.roll(A, 1, axis=1)) == 1.0
    assert boundary_f(A, np.roll(A, 2, axis=0)) == 1.0


def test_f_shift_beyond_tolerance_counted_by_hand() -> None:
    # Prediction shifted 3 columns right: its ring is rows 39..59, columns 42..62 (80 pixels).
    # Matched (within the radius-2 disk of the ground-truth ring): top and bottom rows,
    # columns 42..61 (20 each; 62 is 3 columns from the ground truth's corner 59); left
    # column x=42, rows 40, 41, 57, 58 (within 2 of the ground truth's top / bottom rows);
    # right column x=62: none. 44 / 80 = 0.55, and recall is the same by symmetry.
    assert boundary_f(A, np.roll(A, 3, axis=1)) == pytest.approx(0.55)


def test_f_extra_or_missing_object() -> None:
    far = square(100, 100, 5, 5, 20)
    # prediction A + far: 160 boundary pixels, 80 match -> P = 0.5, R = 1 -> F = 2/3
    assert boundary_f(A, A | far) == pytest.approx(2 / 3)
    # ground truth A + far, prediction A: P = 1, R = 0.5 -> F = 2/3
    assert boundary_f(A | far, A) == pytest.approx(2 / 3)


def test_f_thin_structures() -> None:
    line = np.zeros((100, 100), dtype=bool)
    line[50, 20:60] = True
    down1 = np.roll(line, 1, axis=0)
    # a one-pixel line one row off: no overlap at all (J = 0) but every boundary pixel is
    # within one pixel of the other's (F = 1): the measure F exists for
    assert region_similarity(line, down1) == 0.0
    assert boundary_f(line, down1) == 1.0
    # five rows off: the boundaries (rows 49-50 and 54-55) are 4 rows apart > 2: F = 0
    assert boundary_f(line, np.roll(line, 5, axis=0)) == 0.0
    dot = square(100, 100, 50, 50, 1)
    assert boundary_f(dot, np.roll(dot, 2, axis=1)) == 1.0  # 2 pixels: within tolerance
    assert boundary_f(dot, np.roll(dot, 4, axis=1)) == 0.0


def test_f_empty_masks_follow_the_toolkit() -> None:
    empty = np.zeros_like(A)
    assert boundary_f(empty, empty) == 1.0  # neither has a boundary: P = R = 1
    assert boundary_f(A, empty) == 0.0  # missed object: P = 1, R = 0
    assert boundary_f(empty, A) == 0.0  # spurious object: P = 0, R = 1
    full = np.ones_like(A)
    half = full.copy()
    half[:50] = False
    # a whole-frame mask has no boundary: against itself F = 1, against a half frame F = 0
    assert boundary_f(full, full) == 1.0
    assert boundary_f(half, full) == 0.0


def test_davis_statistics_by_hand() -> None:
    m, r, d = davis_statistics([1.0, 1.0, 0.0, 0.0])
    # 4 frames: cuts round(linspace(1, 4, 5)) - 1 = [0, 1, 2, 2, 3]; first bin [0:2],
    # last bin [2:4] -> 1 - 0
    assert (m, r, d) == (0.5, 0.5, 1.0)
    m, r, d = davis_statistics([1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    # 8 frames: cuts [0, 2, 4, 5, 7]; first bin [0:3] = 1, last bin [5:8] = 0; recall counts
    # values strictly above 0.5: 3 of 8
    assert (m, r, d) == (0.5, 3 / 8, 1.0)
    m, r, d = davis_statistics([0.8])
    assert (m, r, d) == (0.8, 1.0, 0.0)
    assert all(math.isnan(v) for v in davis_statistics([]))


def _rle(m: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(m, dtype=np.uint8))


def _sequence() -> tuple[Sample, list[np.ndarray]]:
    """6 frames of 100x100: object 1 (square A) on every frame, object 2 (a 10x10 square)
    from frame 3; frame 4 is not annotated."""
    b = square(100, 100, 5, 5, 10)
    gt_maps = []
    masks: dict[int, dict[int, dict]] = {}
    for t in range(6):
        lab = np.zeros((100, 100), dtype=np.uint8)
        lab[A] = 1
        if t >= 3:
            lab[b] = 2
        gt_maps.append(lab)
        if t != 4:
            masks[t] = {o: _rle(lab == o) for o in (1, 2) if (lab == o).any()}
    names = [f"{t:05d}" for t in range(6)]
    video = VideoTruth(
        frames=[Path(f"{n}.jpg") for n in names], frame_names=names, masks=masks, height=100,
        width=100,
    )  # fmt: skip
    return Sample(ref=ImageRef("seq", Path("seq")), raw=None, gt=None, video=video), gt_maps


def test_evaluator_scores_frames_after_each_prompt_and_before_the_last() -> None:
    sample, gt_maps = _sequence()
    pred = [m.copy() for m in gt_maps]
    pred[2] = np.where(np.roll(gt_maps[2] == 1, 1, axis=1), 1, 0).astype(np.uint8)  # J 380/420
    pred[3][gt_maps[3] == 2] = 0  # object 2 missed on frame 3: J = 0, F = 0
    ev = VideoEvaluator()
    row = ev.process(sample, VideoPrediction(labels=pred, frame_ms=None))
    o1, o2 = ev.objects
    # object 1 (prompted on 0): annotated frames 1, 2, 3 (4 has no annotation, 5 is the last)
    assert (o1.prompt_frame, o1.frames) == (0, [1, 2, 3])
    # object 2 first appears on frame 3: scored on annotated frames after it, before 5: none
    # of 4 (not annotated) -> no frame; the object is listed but not in the means
    assert (o2.prompt_frame, o2.frames) == (3, [])
    assert o1.j == pytest.approx([1.0, 380 / 420, 1.0])
    assert o1.f == pytest.approx([1.0, 1.0, 1.0])
    assert row["n_objects"] == 2 and row["n_frames_scored"] == 3
    assert row["prompt_frames"] == "1:0 2:3"
    j1 = (2 + 380 / 420) / 3
    assert row["j_mean"] == pytest.approx(j1) and row["f_mean"] == 1.0
    out = ev.evaluate()
    assert out["j_mean"] == pytest.approx(j1)
    assert out["jf"] == pytest.approx((j1 + 1.0) / 2)
    assert out["n_objects"] == 2 and out["n_frames_scored"] == 3 and out["n_sequences"] == 1
    scored = [r for r in ev.frame_rows if r["scored"]]
    assert [(r["frame"], r["object"]) for r in scored] == [(1, 1), (2, 1), (3, 1)]


def test_evaluator_object_weighted_mean_over_sequences() -> None:
    ev = VideoEvaluator()
    sample, gt_maps = _sequence()
    ev.process(sample, VideoPrediction(labels=gt_maps))
    # a second sequence where object 1 is always missed (J = F = 0)
    sample2, gt2 = _sequence()
    sample2.ref = ImageRef("seq2", Path("seq2"))
    ev.process(sample2, VideoPrediction(labels=[np.zeros_like(m) for m in gt2]))
    out = ev.evaluate()
    assert out["j_mean"] == pytest.approx(0.5) and out["f_mean"] == pytest.approx(0.5)
    assert out["j_recall"] == pytest.approx(0.5)
    rows = ev.object_rows()
    assert [r["name"] for r in rows] == ["seq_1", "seq_2", "seq2_1", "seq2_2"]


def test_evaluator_needs_a_prediction_on_scored_frames() -> None:
    sample, gt_maps = _sequence()
    labels: list[np.ndarray | None] = list(gt_maps)
    labels[2] = None
    with pytest.raises(ValueError, match="no predicted mask for frame 00002"):
        VideoEvaluator().process(sample, VideoPrediction(labels=labels))
    # frames matched by name: a prediction holding only the scored frames is enough
    names = ["00001", "00002", "00003"]
    part = VideoPrediction(labels=[gt_maps[1], gt_maps[2], gt_maps[3]], frame_names=names)
    assert VideoEvaluator().process(sample, part)["j_mean"] == 1.0


def test_propagation_cost_from_frame_times() -> None:
    sample, gt_maps = _sequence()
    cost = PropagationCost()
    row = cost.process(sample, VideoPrediction(labels=gt_maps, frame_ms=[None, 100.0, 300.0]))
    assert row["fps"] == pytest.approx(2 * 1000 / 400)
    assert row["n_frames_propagated"] == 2
    cost.process(sample, VideoPrediction(labels=gt_maps, frame_ms=[None, 200.0]))
    out = cost.evaluate()
    assert out["fps"] == pytest.approx(3 * 1000 / 600)
    assert out["frame_latency_ms_p50"] == 200.0 and out["frame_latency_ms_mean"] == 200.0
    # saved predictions carry no timing: no cost metric at all
    none = PropagationCost()
    assert none.process(sample, VideoPrediction(labels=gt_maps)) == {}
    assert none.evaluate() == {}
