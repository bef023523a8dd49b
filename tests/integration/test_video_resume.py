"""``resume=true`` inside a video job: finished sequences come back from the per-item log.

The video task runs in process through the shared loop with the random-weight tiny SAM 2.1
video predictor on two 3-frame sequences made from the shared DAVIS 2016 sample (frames and
annotations linked into a temporary DAVIS folder, never copied into the repository), with an
item log. Then:

* a full log: a new task whose predictor must not be called reuses both sequences and ends
  with the same metrics (accuracy exactly, timing as logged), tables, figures and PNGs (a PNG
  deleted in between is written again from the logged masks);
* a partial log (a kill after the first sequence): the first sequence is reused with its
  logged timing, the second computed again.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.config import Config, to_typed
from sam_bench.data.registry import build_dataset
from sam_bench.loop import run_items
from sam_bench.models.build import WeightsInfo
from sam_bench.resume import ITEM_LOG, open_item_log
from sam_bench.tasks.base import JobContext, TaskResult
from sam_bench.tasks.video import VideoTask
from sam_bench.tasks.video.outputs import PER_FRAME_FILE, PER_SEQUENCE_FILE, PREDICTIONS_DIR
from sam_bench.tasks.video.writer import decode_labels, encode_labels

SRC_SEQ = "blackswan"
#: Two sequences from the shared sample: (name, first source frame), 3 frames each.
SEQUENCES = (("swan_a", 0), ("swan_b", 20))
N_FRAMES = 3
HEADER = {"test": "video resume"}
ACCURACY = ("jf", "j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay",
            "n_sequences", "n_objects", "n_frames_scored")  # fmt: skip
TIMING = ("fps", "frame_latency_ms_mean", "frame_latency_ms_p50", "frame_latency_ms_p90",
          "n_frames_propagated", "latency_ms_mean", "latency_ms_p50", "latency_ms_p90",
          "sequences_per_s", "propagation_ms_mean", "init_ms_mean", "marginal_ms_mean")  # fmt: skip


class _NoTracking:
    """The predictor where every sequence must come from the log: its settings can be read,
    tracking fails the test."""

    CALLS = ("init_state", "add_new_mask", "add_new_points_or_box", "propagate_in_video")

    def __init__(self, predictor: Any) -> None:
        self._predictor = predictor

    def __getattr__(self, name: str) -> Any:
        if name in self.CALLS:
            raise AssertionError(f"the predictor was called ({name}) for a reused sequence")
        return getattr(self._predictor, name)


def _davis_root(src: Path, root: Path) -> Path:
    """A DAVIS root with two 3-frame sequences linked to frames of the shared sample."""
    for seq, first in SEQUENCES:
        for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            folder = root / kind / "480p" / seq
            folder.mkdir(parents=True)
            for t in range(N_FRAMES):
                os.symlink(src / kind / "480p" / SRC_SEQ / f"{first + t:05d}.{ext}",
                           folder / f"{t:05d}.{ext}")  # fmt: skip
    return root


def _config(root: Path) -> Config:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam_bench.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[
                "task=video", "model.weights=random", "dataset=davis", f"dataset.root={root}",
                f"dataset.max_frames={N_FRAMES}", "save_predictions=true", "warmup=false",
                "tracking=none", "progress=false",
            ])  # fmt: skip
    finally:
        GlobalHydra.instance().clear()
    return to_typed(cfg)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from conftest import SHARED_DIR

    src = SHARED_DIR / "data" / "davis2016_blackswan" / "DAVIS"
    if not (src / "JPEGImages" / "480p" / SRC_SEQ).is_dir():
        pytest.skip(f"shared DAVIS sample not found at {src}")
    tmp = tmp_path_factory.mktemp("video_resume")
    cfg = _config(_davis_root(src, tmp / "DAVIS"))
    device = torch.device("cpu")
    model, weights = VideoTask.build_model(cfg, device)
    return {"cfg": cfg, "model": model, "weights": weights, "tmp": tmp}


def _task(setup: dict[str, Any], job_dir: Path) -> VideoTask:
    cfg = setup["cfg"]
    data = build_dataset(cfg.dataset, Path("."))
    weights: WeightsInfo = setup["weights"]
    ctx = JobContext(cfg=cfg, device=torch.device("cpu"), model=setup["model"], weights=weights,
                     dataset=data, refs=data.refs(), job_dir=job_dir)  # fmt: skip
    return VideoTask([ctx])


def _run(task: VideoTask, job_dir: Path, reuse: bool) -> TaskResult:
    item_log = open_item_log(job_dir, HEADER, reuse=reuse)
    try:
        (result,) = run_items(task, warmup=False, progress=False, logs=[item_log])
    finally:
        item_log.close()
        task.close()
    return result


@pytest.fixture(scope="module")
def first(setup: dict[str, Any]) -> dict[str, Any]:
    """An uninterrupted run (its item log kept, as a kill would leave it)."""
    job = setup["tmp"] / "first"
    result = _run(_task(setup, job), job, reuse=False)
    assert result.item_errors == [] and result.metrics["n_items_ok"] == len(SEQUENCES)
    files = _files(job)
    log_lines = (job / ITEM_LOG).read_text().splitlines()
    assert len(log_lines) == 1 + len(SEQUENCES)
    return {"job": job, "result": result, "files": files, "log": log_lines}


def _files(job: Path) -> dict[str, bytes]:
    """Tables, figures and PNGs of a job directory."""
    paths = [job / PER_SEQUENCE_FILE, job / PER_FRAME_FILE, *sorted(job.glob("figures/*.png")),
             *sorted((job / PREDICTIONS_DIR).rglob("*.png"))]  # fmt: skip
    return {str(p.relative_to(job)): p.read_bytes() for p in paths}


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (rows and metrics hold NaN where nothing applies)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _frames(job: Path) -> list[dict[str, str]]:
    with (job / PER_FRAME_FILE).open(newline="") as f:
        return list(csv.DictReader(f))


def test_label_maps_round_trip_through_the_log_form() -> None:
    labels = np.zeros((7, 9), dtype=np.uint8)
    labels[1:4, 2:6] = 1
    labels[5, :] = 3
    assert len(json.dumps(encode_labels(labels))) < 200  # RLE, not the dense map
    back = decode_labels(json.loads(json.dumps(encode_labels(labels))))
    assert back.dtype == labels.dtype and np.array_equal(back, labels)
    wide = np.zeros((4, 4), dtype=np.int32)
    wide[0, 0] = 300
    back = decode_labels(json.loads(json.dumps(encode_labels(wide))))
    assert back.dtype == np.int32 and np.array_equal(back, wide)
    empty = decode_labels(encode_labels(np.zeros((3, 5), dtype=np.uint8)))
    assert empty.shape == (3, 5) and not empty.any()


def test_full_log_reuses_every_sequence(setup: dict[str, Any], first: dict[str, Any]) -> None:
    job = setup["tmp"] / "full"
    shutil.copytree(first["job"], job)
    deleted = f"{PREDICTIONS_DIR}/swan_b/00001.png"
    (job / deleted).unlink()  # lost: written again from the logged masks
    for name in (PER_SEQUENCE_FILE, PER_FRAME_FILE):
        (job / name).unlink()
    shutil.rmtree(job / "figures")
    task = _task(setup, job)
    task.predictor = _NoTracking(task.predictor)
    again = _run(task, job, reuse=True)
    before = first["result"]
    assert again.info["resume"] == {"reused_images": len(SEQUENCES), "computed_images": 0}
    assert again.item_errors == []
    for key in ACCURACY:
        assert key in before.metrics and again.metrics[key] == before.metrics[key], key
    for key in TIMING:  # the logged timing, not a new measurement
        assert key in before.metrics and again.metrics[key] == before.metrics[key], key
    assert _same(again.metrics, before.metrics)
    assert _same(again.rows, before.rows)
    assert again.figures == before.figures
    assert again.info["prediction_pngs"] == before.info["prediction_pngs"] == 2 * N_FRAMES
    files = _files(job)
    assert (job / deleted).is_file()
    assert files.keys() == first["files"].keys()
    for name, data in first["files"].items():  # tables, figures, every prediction PNG
        assert files[name] == data, name
    assert _frames(job) == _frames(first["job"])


def test_partial_log_reuses_the_first_sequence(
    setup: dict[str, Any], first: dict[str, Any]
) -> None:
    job = setup["tmp"] / "partial"
    job.mkdir()
    # a kill after the first sequence: its line and its PNGs are there, nothing else
    (job / ITEM_LOG).write_text("\n".join(first["log"][:2]) + "\n")
    seq_a, seq_b = (s for s, _ in SEQUENCES)
    shutil.copytree(first["job"] / PREDICTIONS_DIR / seq_a, job / PREDICTIONS_DIR / seq_a)
    again = _run(_task(setup, job), job, reuse=True)
    before = first["result"]
    assert again.info["resume"] == {"reused_images": 1, "computed_images": 1}
    assert again.item_errors == [] and again.metrics["n_items_ok"] == len(SEQUENCES)
    rows = {r["image_id"]: r for r in again.rows}
    old = {r["image_id"]: r for r in before.rows}
    assert _same(rows[seq_a], old[seq_a])  # reused: scores and timing as logged
    assert math.isfinite(rows[seq_b]["latency_ms"]) and rows[seq_b]["fps"] > 0
    assert rows[seq_b]["j_mean"] == pytest.approx(old[seq_b]["j_mean"], abs=1e-6)
    for key in ("jf", "j_mean", "f_mean", "n_frames_scored", "n_frames_propagated"):
        assert again.metrics[key] == pytest.approx(before.metrics[key], abs=1e-6), key
    frames = [r for r in _frames(job) if r["sequence"] == seq_a]
    assert frames == [r for r in _frames(first["job"]) if r["sequence"] == seq_a]
    assert frames[1]["propagation_ms"] != ""  # the logged per-frame time
    assert again.info["prediction_pngs"] == 2 * N_FRAMES
    for seq in (seq_a, seq_b):
        names = sorted(p.name for p in (job / PREDICTIONS_DIR / seq).glob("*.png"))
        assert names == [f"{t:05d}.png" for t in range(N_FRAMES)], seq
    # the item log now holds both sequences (another kill would lose neither)
    lines = (job / ITEM_LOG).read_text().splitlines()
    assert [json.loads(x)["image_id"] for x in lines[1:]] == [seq_a, seq_b]
