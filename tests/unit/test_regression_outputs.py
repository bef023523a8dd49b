"""Saved outputs compared by output kind: the ``label_png`` comparer against a direct numpy
computation, and the errors that replace a silent pass (exit 3) on hand-written job folders
(the records and helpers of ``test_regression_compare``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_regression_compare import _box, _labels, _predictions, declare, report, run, write_job

from sam_bench.compare.comparers.label_png import compare_label_maps


def _write_map(folder: Path, stem: str, arr: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / f"{stem}.png")


def _expected(base: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Pixel agreement and mean IoU over the classes in either map, by hand."""
    if base.shape != cur.shape:
        return 0.0, 0.0
    classes = sorted(set(base.ravel().tolist()) | set(cur.ravel().tolist()))
    ious = []
    for k in classes:
        inter = sum(1 for a, b in zip(base.ravel(), cur.ravel(), strict=True) if a == k and b == k)
        union = sum(1 for a, b in zip(base.ravel(), cur.ravel(), strict=True) if a == k or b == k)
        ious.append(inter / union)
    return float((base == cur).mean()), float(np.mean(ious))


def test_label_png_comparer_matches_a_direct_computation(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    b, c = tmp_path / "b", tmp_path / "c"
    same = rng.integers(0, 4, (12, 16)).astype(np.uint8)
    noisy = rng.integers(0, 4, (12, 16)).astype(np.uint8)
    flipped = noisy.copy()
    flipped[rng.random(noisy.shape) < 0.3] = 7  # a class only the current map has
    wide = rng.integers(0, 300, (10, 10)).astype(np.uint16)  # 16-bit class indices
    wide_cur = wide.copy()
    wide_cur[:5] = 299
    pairs = {"same": (same, same), "noisy": (noisy, flipped), "wide": (wide, wide_cur),
             "resized": (same, same[:, :8])}  # fmt: skip
    for stem, (x, y) in pairs.items():
        _write_map(b, stem, x)
        _write_map(c, stem, y)
    _write_map(b, "gone", same)  # only in the baseline
    _write_map(c, "new", same)  # only in the current run
    (c / "SOURCE.json").write_text("{}")  # not a label map
    got = compare_label_maps(b, c)
    expected = {stem: _expected(x, y) for stem, (x, y) in pairs.items()}
    assert got.n_images == 4 and got.identical == 1 and got.changed == 3
    assert got.pixel_agreement == pytest.approx(np.mean([e[0] for e in expected.values()]))
    assert got.class_miou == pytest.approx(np.mean([e[1] for e in expected.values()]))
    assert got.min_class_miou == 0.0  # other sizes agree nowhere
    assert [w[0] for w in got.worst] == sorted(
        (s for s in pairs if s != "same"), key=lambda s: expected[s][1]
    )
    assert got.only_baseline == ["gone"] and got.only_current == ["new"]
    assert got.missing() == (["gone"], ["new"]) and got.agreement == got.class_miou


def _semantic_job(sweep: Path, maps: dict[str, np.ndarray], lat_seed: int) -> Path:
    """A schema-2 semantic job with saved label maps (``predictions/<image>.png``)."""
    from test_regression_compare import edit_record, latencies

    job = write_job(sweep, 0, lat=latencies(lat_seed))
    edit_record(job, task="semantic")
    for stem, arr in maps.items():
        _write_map(job / "predictions", stem, arr)
    return job


def test_semantic_label_maps_are_not_compared_as_video(tmp_path, capsys) -> None:
    """The issue's false pass: label maps in ``predictions/`` were read as video sequences
    (0 frames, J = 1.0, pass). They are label maps: a change is a regression."""
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 5:20] = 2
    changed = m.copy()
    changed[5:15, 5:12] = 1
    _semantic_job(tmp_path / "base", {"x": m, "y": m}, 0)
    _semantic_job(tmp_path / "cur", {"x": m, "y": changed}, 5)
    code, out, _ = run([str(tmp_path / "base"), str(tmp_path / "cur"), "--out", str(tmp_path)],
                       capsys)  # fmt: skip
    assert code == 1 and "compared [" in out and "label_png: 2 images (1 identical)" in out
    conf = report(tmp_path)["configurations"][0]
    assert conf["video"] is None and list(conf["outputs"]) == ["label_png"]


def test_a_prediction_kind_on_one_side_only_is_exit_3(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_job(base, 0)
    write_job(cur, 0)
    _predictions(base / "0", {"1": [_box(0, 0)]})
    code, out, err = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 3
    assert "instance_rle: only the baseline saved predictions.json" in out
    assert "not compared" in err


def test_a_declared_output_missing_from_the_folder_is_exit_3(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    for side in (base, cur):
        write_job(side, 0)
        _predictions(side / "0", {"1": [_box(0, 0)]})
    (cur / "0" / "predictions.json").unlink()
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 3 and "current job 0 declares predictions.json but" in out


def test_an_output_kind_without_comparer_is_exit_3(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    for side in (base, cur):
        write_job(side, 0)
        _predictions(side / "0", {"1": [_box(0, 0)]})
        declare(side / "0", "point_cloud", "cloud.ply")  # a kind of a newer version
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 3 and "declares an output of kind point_cloud" in out
    assert "no comparer" in out


def test_nothing_compared_is_exit_3(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    for side in (base, cur):
        write_job(side, 0)
        _predictions(side / "0", {})  # a predictions file without any mask
        (side / "0" / "predictions" / "bear").mkdir(parents=True)  # a sequence without frames
        declare(side / "0", "palette_png_sequence", "predictions/")
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 3
    assert "instance_rle: 0 images compared" in out and "palette_png_sequence: 0 frames" in out
    rep = report(tmp_path)
    assert rep["exit_code"] == 3 and len(rep["output_problems"]) == 2


def test_frames_on_one_side_only_are_named(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    frame = np.zeros((20, 20), np.uint8)
    frame[0:10, 0:10] = 1
    for side in (base, cur):
        write_job(side, 0)
    _labels(base / "0" / "predictions" / "bear", {"00000": frame, "00001": frame})
    _labels(cur / "0" / "predictions" / "bear", {"00000": frame})
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 3 and "palette_png_sequence: 1 frame only in the baseline: bear/00001" in out
    assert json.loads((tmp_path / "regression.json").read_text())["exit_code"] == 3
