"""The regression check on real semantic sweeps (``task=semantic save_predictions=true``,
random-weight SAM 2 and a tiny untrained open_clip, on the 2-image folder dataset of
``semantic_fixtures``): the label maps ``predictions/<image>.png`` are compared as label maps
(output kind ``label_png``), never as video frames (the old false pass: 0 frames, J = 1.0).

One sweep is run for the module (in CI); the current side is a copy of it, edited by hand.
``slow``: a second, independent run of the same sweep is no regression either.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clip_fixtures import tiny_open_clip_dir
from conftest import run_cli
from PIL import Image
from semantic_fixtures import write_street

from sam_bench.compare.cli import main

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def semantic_sweep(root: Path, out: Path) -> Path:
    """A 1-job semantic sweep with saved label maps into ``out``."""
    data, clip = root / "street", root / "tiny_clip"
    if not data.is_dir():
        write_street(data)
        tiny_open_clip_dir(clip)
    proc = run_cli(
        ["-m", "task=semantic", "model.weights=random", "semantic.clip_weights=random",
         f"semantic.clip_model=local-dir:{clip}", "amg.points_per_side=4",
         "amg.pred_iou_thresh=0", "amg.stability_score_thresh=0", "amg.box_nms_thresh=1.0",
         "dataset=semantic_folder", f"dataset.images={data / 'img'}",
         f"dataset.labels={data / 'sem'}", f"dataset.classes={data / 'classes.txt'}",
         "dataset.void_index=9", "save_predictions=true", "tracking=none", "progress=false",
         f"hydra.sweep.dir={out}"],
        root, env=OFFLINE, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("semantic_regression")
    return semantic_sweep(root, root / "baseline")


@pytest.fixture
def current(baseline: Path, tmp_path: Path) -> Path:
    """A copy of the baseline sweep (the same outputs) to edit."""
    return Path(shutil.copytree(baseline, tmp_path / "current"))


def compare(base: Path, cur: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    code = main([str(base), str(cur), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr()
    return code, printed.out, printed.err, json.loads((out / "regression.json").read_text())


def maps(sweep: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((sweep / "0" / "predictions").glob("*.png"))}


def edit_record(job: Path, fn: Any) -> None:
    rec = json.loads((job / "result.json").read_text())
    fn(rec)
    (job / "result.json").write_text(json.dumps(rec))


def test_identical_sweeps_pass_and_name_the_images_compared(baseline, current, tmp_path, capsys):
    assert sorted(maps(baseline)) == ["a", "b"]
    code, out, err, rep = compare(baseline, current, tmp_path / "o", capsys)
    assert code == 0, out + err
    assert "label_png: 2 images (2 identical)" in out
    conf = rep["configurations"][0]
    assert conf["outputs"]["label_png"]["n_items"] == 2
    assert conf["outputs"]["label_png"]["class_miou"] == 1.0
    assert "palette_png_sequence" not in conf["outputs"] and conf["video"] is None


def test_a_changed_label_map_is_a_regression(baseline, current, tmp_path, capsys):
    path = maps(current)["a"]
    labels = np.array(Image.open(path))
    labels[:12, :16] = (labels[:12, :16] + 1) % 3  # another class in a corner
    Image.fromarray(labels).save(path)
    code, out, _, rep = compare(baseline, current, tmp_path / "o", capsys)
    assert code == 1
    assert "REGRESSION" in out and "label_miou" in out
    conf = rep["configurations"][0]
    row = next(m for m in conf["metrics"] if m["output"] == "label_png")
    assert row["verdict"] == "regression" and row["current"] < 1.0
    got = conf["outputs"]["label_png"]
    assert got["n_images"] == 2 and got["identical"] == 1 and got["worst"][0][0] == "a"
    # the metrics are the same (copied records): only the maps show the change
    assert all(m["verdict"] != "regression" for m in conf["metrics"] if m["output"] is None)


def test_a_label_map_missing_on_one_side_is_its_own_error(baseline, current, tmp_path, capsys):
    maps(current)["b"].unlink()
    code, out, err, rep = compare(baseline, current, tmp_path / "o", capsys)
    assert code == 3
    assert "NOT COMPARED" in out and "label_png: 1 image only in the baseline: b" in out
    assert "saved outputs not compared" in err
    assert rep["exit_code"] == 3 and rep["outcome"] == "outputs not compared"
    assert "b" in rep["output_problems"][0]["problem"]


def test_schema_2_and_schema_3_records_are_both_compared(baseline, current, tmp_path, capsys):
    label_maps = {"name": "label_maps", "kind": "label_png", "path": "predictions/",
                  "description": "", "when": "save_predictions"}  # fmt: skip

    def schema_3(rec: dict[str, Any]) -> None:  # as a task that declares its outputs writes it
        if not any(o["kind"] == "label_png" for o in rec["outputs"]):
            rec["outputs"].append(label_maps)

    def schema_2(rec: dict[str, Any]) -> None:  # written before outputs were declared
        rec.pop("outputs")
        rec["schema_version"] = 2

    base = Path(shutil.copytree(baseline, tmp_path / "baseline"))
    edit_record(base / "0", schema_3)
    edit_record(current / "0", schema_2)
    code, out, err, _ = compare(base, current, tmp_path / "o", capsys)
    assert code == 0, out + err
    assert "label_png: 2 images (2 identical)" in out


@pytest.mark.slow
def test_two_runs_of_the_same_semantic_sweep_are_no_regression(baseline, tmp_path, capsys):
    again = semantic_sweep(baseline.parent, tmp_path / "again")
    code, out, err, _ = compare(baseline, again, tmp_path / "o", capsys)
    assert code == 0, out + err
    assert "label_png: 2 images" in out
