"""``task=video model=edgetam`` from the command line, as a user runs it: a real
``python -m sam_bench`` subprocess on the CPU with EdgeTAM's video model at random init
(transformers' ``EdgeTamVideoModel``, the documented offline config) on a two-frame DAVIS-style
sequence made here from an embedded synthetic image (no shared data needed). Small enough
for CI: three EdgeTAM frames, no warm-up."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from sam_bench.tasks.video.outputs import write_label_png
from tests.hf_fixtures import embedded_image

pytest.importorskip("transformers", minversion="5.0")

SEQ = "synth"


def _davis_root(root: Path, n: int = 3) -> Path:
    """``root/JPEGImages/480p/synth`` (the scene moving right) and its palette annotations
    (object 1: a square moving with it)."""
    image = embedded_image(0)
    h, w = image.shape[:2]
    for i in range(n):
        frame = root / "JPEGImages/480p" / SEQ / f"{i:05d}.jpg"
        frame.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.roll(image, 6 * i, axis=1)).save(frame, quality=95)
        labels = np.zeros((h, w), dtype=np.uint8)
        labels[60:120, 80 + 6 * i : 140 + 6 * i] = 1
        write_label_png(root / "Annotations/480p" / SEQ / f"{i:05d}.png", labels)
    return root


def test_edgetam_video_from_the_command_line(tmp_path: Path) -> None:
    root = _davis_root(tmp_path / "DAVIS")
    out = tmp_path / "OUT"
    proc = run_cli(
        ["-m", "task=video", "model=edgetam", "model.weights=random", "dataset=davis",
         f"dataset.root={root}", "warmup=false", "save_predictions=true",
         f"hydra.sweep.dir={out}", "tracking=none", "progress=false"],
        tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (out / "summary.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok" and row["task"] == "video" and row["untrained"] == "True"
    rec = json.loads((out / row["job"] / "result.json").read_text())
    m = rec["metrics"]
    # frame 0 is the prompt, 1 and 2 are propagated; only frame 1 is scored (DAVIS: not the
    # first nor the last frame)
    assert m["n_frames_propagated"] == 2 and m["n_frames_scored"] == 1 and m["n_sequences"] == 1
    assert np.isfinite(m["jf"]) and m["jf"] == pytest.approx((m["j_mean"] + m["f_mean"]) / 2)
    assert m["fps"] > 0
    assert rec["weights"]["kind"] == "random" and rec["weights"]["state_dict_hash"]
    assert rec["untrained"] is True
    info = rec["task_info"]
    assert info["predictor"] == "FamilyVideoPredictor"
    assert info["predictor_settings"]["non_overlap_masks"] is True
    assert info["predictor_settings"]["fill_hole_area"] == 0
    pngs = sorted((out / row["job"] / "predictions" / SEQ).glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(pngs[1]).size == (320, 240)
