"""Pieces of the regression check on their own: tolerance files and ``--tol`` values, the
matching of configurations, and the mask-level comparison against hand-computed IoUs.
(tests/unit/test_report.py checks that the report modules import no model code.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.compare.comparers.common import read_labels
from sam_bench.compare.comparers.instance_rle import compare_predictions, image_agreement
from sam_bench.compare.comparers.palette_png_sequence import compare_label_folders
from sam_bench.compare.jobs import CompareError, Job
from sam_bench.compare.matching import (
    differences,
    match,
    overrides_key,
    resolve_across,
    without,
)
from sam_bench.compare.tolerances import (
    DEFAULT_FILE,
    Tolerance,
    apply_overrides,
    load_settings,
    parse_tolerance,
)

# --------------------------------------------------------------------------------------------
# tolerances


def test_packaged_defaults() -> None:
    s = load_settings()
    assert s.source == str(DEFAULT_FILE) and DEFAULT_FILE.is_file()
    assert s.kinds["accuracy"] == Tolerance(absolute=0.005)
    assert s.kinds["cost"] == Tolerance(relative=0.3)
    assert s.tolerance("miou", "accuracy") == Tolerance(absolute=0.005)
    assert s.tolerance("peak_rss_mb", "cost") == Tolerance(relative=0.2)
    assert not s.tolerance("model_build_s", "cost").judge
    assert not s.tolerance("prepare_s", "cost").judge  # export / compile time: noisy
    assert not s.tolerance("agreement_mask_iou_min", "info").judge  # shown, not judged
    assert not s.tolerance("n_images", "info").judge  # no kind default: not judged
    assert s.timing.min_images == 5 and s.timing.seed == 0 and s.timing.confidence == 0.95
    assert s.masks == Tolerance(absolute=0.02)


@pytest.mark.parametrize(
    ("text", "name", "tol"),
    [
        ("miou=0.01", "miou", Tolerance(absolute=0.01)),
        ("latency_ms_p50=20%", "latency_ms_p50", Tolerance(relative=0.2)),
        ("cost=1e-1", "cost", Tolerance(absolute=0.1)),
        ("model_build_s=off", "model_build_s", Tolerance(judge=False)),
        (" masks = 5% ", "masks", Tolerance(relative=0.05)),
    ],
)
def test_parse_tolerance(text, name, tol) -> None:
    assert parse_tolerance(text) == (name, tol)


def test_overrides_land_where_they_belong() -> None:
    s = apply_overrides(load_settings(), ["accuracy=0.01", "miou=2%", "masks=off", "video=0.1"])
    assert s.kinds["accuracy"] == Tolerance(absolute=0.01)
    assert s.tolerance("msa", "accuracy") == Tolerance(absolute=0.01)
    assert s.tolerance("miou", "accuracy") == Tolerance(relative=0.02)
    assert not s.masks.judge and s.video == Tolerance(absolute=0.1)
    assert s.overrides == ["accuracy=0.01", "miou=2%", "masks=off", "video=0.1"]


@pytest.mark.parametrize("text", ["miou", "=0.1", "miou=", "miou=-1", "miou=fast", "miou=1%%"])
def test_bad_tolerances_are_refused(text) -> None:
    with pytest.raises(CompareError, match="--tol"):
        parse_tolerance(text)


def test_tolerance_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(CompareError, match="tolerance file not found"):
        load_settings(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kinds: [accuracy]\n")
    with pytest.raises(CompareError, match="kinds: expected a mapping"):
        load_settings(bad)
    bad.write_text("kinds:\n  speed: {relative: 0.1}\n")
    with pytest.raises(CompareError, match="unknown kind 'speed'"):
        load_settings(bad)


# --------------------------------------------------------------------------------------------
# matching


def _job(name: str, cid: str | None, identity: dict | None, overrides: list[str]) -> Job:
    return Job({"config_id": cid, "config_identity": identity or {}, "overrides": overrides,
                "status": "ok"}, name)  # fmt: skip


def _identity(thresh: float, engine: str = "fast", data: str = "d") -> dict:
    return {"task": "amg", "model": {"size": "tiny"}, "data": data, "weights": "w",
            "settings": {"dtype": "fp32", "engine": engine},
            "sections": {"amg": {"pred_iou_thresh": thresh, "points_per_batch": 64}}}  # fmt: skip


def test_match_by_config_id_then_settings_then_overrides() -> None:
    base = [
        _job("0", "a", _identity(0.0), ["x=0"]),
        _job("1", "b", _identity(0.5), ["x=1"]),
        _job("2", "c", None, ["x=2", "tracking=none"]),
        _job("3", "d", _identity(0.9), ["x=3"]),
    ]
    cur = [
        _job("7", "b", _identity(0.5), ["x=1"]),  # same config_id, another job number
        _job("8", "z", _identity(0.0, engine="reference"), ["x=0"]),  # another engine
        _job("9", None, None, ["progress=false", "x=2"]),  # failed before its identity
    ]
    m = match(base, cur)
    got = {(p.base.name, p.cur.name, p.matched_by) for p in m.pairs}
    assert got == {("1", "7", "config_id"), ("0", "8", "settings"), ("2", "9", "overrides")}
    engine_pair = next(p for p in m.pairs if p.matched_by == "settings")
    assert engine_pair.differs == ["settings.engine"]
    assert [j.name for j in m.baseline_only] == ["3"] and m.current_only == []
    # job numbers never match anything: a lone config_id on each side stays unmatched
    assert match([_job("0", "a", None, [])], [_job("0", "b", None, [])]).pairs == []


def test_across_drops_identity_parts() -> None:
    docs = [_identity(0.0)]
    assert resolve_across(["dtype", "amg.points_per_batch", "dataset"], docs) == [
        "settings.dtype", "sections.amg.points_per_batch", "data",
    ]  # fmt: skip
    with pytest.raises(CompareError, match="not part of any configuration"):
        resolve_across(["amg.no_such_key"], docs)
    a, b = _identity(0.0), _identity(0.0)
    b["sections"]["amg"]["points_per_batch"] = 16
    assert differences(a, b) == ["sections.amg.points_per_batch"]
    assert differences(without(a, ["sections.amg.points_per_batch"]),
                       without(b, ["sections.amg.points_per_batch"])) == []  # fmt: skip
    base = [_job("0", "a", a, [])]
    cur = [_job("0", "b", b, [])]
    assert match(base, cur).pairs == []
    (pair,) = match(base, cur, ["sections.amg.points_per_batch"]).pairs
    assert pair.matched_by == "config_id"


def test_duplicates_pair_in_job_order_and_say_so() -> None:
    base = [_job("0", "a", None, []), _job("1", "a", None, [])]
    cur = [_job("5", "a", None, [])]
    m = match(base, cur)
    assert [(p.base.name, p.cur.name, p.ambiguous) for p in m.pairs] == [("0", "5", True)]
    assert [j.name for j in m.baseline_only] == ["1"] and "paired in job order" in m.notes[0]


def test_overrides_key_ignores_what_never_changes_results() -> None:
    a = _job("0", None, None, ["tracking=none", "amg.x=1", "hydra.verbose=true", "+seed=3"])
    b = _job("1", None, None, ["seed=3", "amg.x=1", "progress=false", "cache.dir=/tmp"])
    assert overrides_key(a, []) == overrides_key(b, []) == "amg.x=1 seed=3"


# --------------------------------------------------------------------------------------------
# masks


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"]}


def _box(y: int, x: int, h: int, w: int, shape=(30, 40)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y : y + h, x : x + w] = True
    return m


def test_image_agreement_hand_computed() -> None:
    a, b, c = _box(0, 0, 10, 10), _box(15, 15, 10, 20), _box(0, 30, 5, 5)
    same = image_agreement("i", [_rle(a), _rle(b)], [_rle(b), _rle(a)])  # order does not matter
    assert same.identical and same.miou == 1.0
    # b grows by 4 columns: IoU 200/240; a is unchanged; c is new (no partner: 0)
    grown = _box(15, 15, 10, 24)
    r = image_agreement("i", [_rle(a), _rle(b)], [_rle(c), _rle(grown), _rle(a)])
    assert not r.identical and (r.n_baseline, r.n_current) == (2, 3)
    assert r.miou == pytest.approx((1.0 + 200 / 240 + 0.0) / 3)
    assert image_agreement("i", [], []).miou == 1.0
    assert image_agreement("i", [_rle(a)], []).miou == 0.0
    other_size = _rle(_box(0, 0, 10, 10, shape=(31, 40)))
    assert image_agreement("i", [_rle(a)], [other_size]).miou == 0.0


def test_prediction_files(tmp_path: Path) -> None:
    def write(path: Path, entries: list, wrapped: bool) -> Path:
        data = [{"image_id": i, "segmentation": {"size": r["size"],
                 "counts": r["counts"].decode()}, "score": 1.0} for i, r in entries]  # fmt: skip
        path.write_text(json.dumps({"source": {}, "predictions": data} if wrapped else data))
        return path

    a, b = _rle(_box(0, 0, 10, 10)), _rle(_box(5, 5, 10, 10))
    base = write(tmp_path / "b.json", [(1, a), (2, a), (3, b)], wrapped=True)
    cur = write(tmp_path / "c.json", [(1, a), (2, b), (4, a)], wrapped=False)  # plain list
    m = compare_predictions(base, cur)
    # images 1: identical; 2: IoU 25/175; 3: lost its mask; 4: gained one
    assert m.n_images == 4 and m.identical == 1 and m.changed == 3
    assert m.miou == pytest.approx((1 + 25 / 175 + 0 + 0) / 4)
    assert m.miou_same_count == pytest.approx((1 + 25 / 175) / 2)
    assert m.count_changed == [("3", 1, 0), ("4", 0, 1)]
    assert m.worst[0][1] == 0.0 and m.min_miou == 0.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "segmentation": [[0, 0, 1, 1]]}]))
    with pytest.raises(ValueError, match="not an RLE"):
        compare_predictions(base, bad)


def _png(path: Path, arr: np.ndarray, mode: str = "P") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        colours = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0]], np.uint8)
        Image.fromarray(colours[arr]).save(path)
    else:  # a palette image: pixel values are the indices (object ids)
        im = Image.fromarray(arr.astype(np.uint8))
        im.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * (253 * 3))
        assert im.mode == "P"
        im.save(path)


def test_label_folders_hand_computed(tmp_path: Path) -> None:
    f0 = np.zeros((10, 10), np.uint8)
    f0[0:4, 0:4] = 1  # 16 px
    f0[6:10, 6:10] = 2
    f1 = f0.copy()
    f1[0:4, 0:4] = 0
    f1[0:4, 2:6] = 1  # object 1 moved 2 px: IoU 8/24
    for mode, root in (("P", tmp_path / "p"), ("RGB", tmp_path / "rgb")):
        _png(root / "b" / "seq" / "00000.png", f0, mode)
        _png(root / "b" / "seq" / "00001.png", f0, mode)
        _png(root / "b" / "gone" / "00000.png", f0, mode)  # a sequence the current run lost
        _png(root / "c" / "seq" / "00000.png", f0, mode)
        _png(root / "c" / "seq" / "00001.png", f1, mode)
        v = compare_label_folders(root / "b", root / "c")
        j_seq = ((1 + 8 / 24) / 2 + 1.0) / 2  # objects 1 and 2 of "seq"
        assert v.per_sequence[1] == ("seq", 2, pytest.approx(j_seq))
        assert v.per_sequence[0] == ("gone", 1, 0.0)  # both objects missing: J 0
        assert v.j_mean == pytest.approx((j_seq * 2 + 0.0 * 2) / 4)
        assert (v.n_frames, v.identical_frames, v.frames_only_baseline) == (3, 1, 1)
        assert v.sequences_only_baseline == ["gone"]
    assert read_labels(tmp_path / "p" / "b" / "seq" / "00000.png").max() == 2
