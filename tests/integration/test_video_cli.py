"""``task=video`` from the command line, as a user runs it: real ``python -m sam_bench``
subprocesses on the CPU with the random-weight tiny SAM 2.1 video predictor on the shared
DAVIS 2016 sample (linked into temporary DAVIS folders, never copied into the repository).

CI keeps one short run (3 frames, plus two broken sequences that must fail alone) and the
scoring of its PNGs without a model; the issue's 6-frame two-mode sweep, a multi-object
sequence with a late object and a video file are ``slow``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from sam_bench.data.davis import read_annotation
from sam_bench.tasks.video.outputs import write_label_png

SEQ = "blackswan"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def sam_bench(args: list[str], cwd: Path, timeout: int = 1200):
    return run_cli([*args, "tracking=none", "progress=false"], cwd, timeout=timeout)


@pytest.fixture(scope="module")
def davis_src() -> Path:
    from conftest import SHARED_DIR

    src = SHARED_DIR / "data" / "davis2016_blackswan" / "DAVIS"
    if not (src / "JPEGImages" / "480p" / SEQ).is_dir():
        pytest.skip(f"shared DAVIS sample not found at {src}")
    return src


def _root_with_broken_sequences(src: Path, root: Path) -> Path:
    """blackswan (links to the shared folders), ``broken`` (a truncated frame) and ``noann``
    (frames without annotations)."""
    (root / "JPEGImages/480p").mkdir(parents=True)
    (root / "Annotations/480p").mkdir(parents=True)
    os.symlink(src / "JPEGImages/480p" / SEQ, root / "JPEGImages/480p" / SEQ)
    os.symlink(src / "Annotations/480p" / SEQ, root / "Annotations/480p" / SEQ)
    data = (src / f"JPEGImages/480p/{SEQ}/00000.jpg").read_bytes()
    (root / "JPEGImages/480p/broken").mkdir()
    (root / "JPEGImages/480p/broken/00000.jpg").write_bytes(data[: len(data) // 3])
    os.symlink(src / "Annotations/480p" / SEQ, root / "Annotations/480p/broken")
    (root / "JPEGImages/480p/noann").mkdir()
    (root / "JPEGImages/480p/noann/00000.jpg").write_bytes(data)
    return root


@pytest.fixture(scope="module")
def short_run(davis_src: Path, tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("video")
    root = _root_with_broken_sequences(davis_src, cwd / "DAVIS")
    out = cwd / "OUT"
    proc = sam_bench(
        ["-m", "task=video", "model.weights=random", "dataset=davis", f"dataset.root={root}",
         "dataset.max_frames=3", "save_predictions=true", "video.save_overlay=true",
         "video.warmup_frames=2", f"hydra.sweep.dir={out}"],
        cwd,
    )  # fmt: skip
    return proc, cwd, root, out


def test_short_run_scores_the_good_sequence_and_reports_the_broken_ones(short_run) -> None:
    proc, _, _, out = short_run
    # two sequences fail (recorded with their reason): the job is partial, the command says so
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = read_csv(out / "summary.csv")
    assert row["status"] == "partial" and row["task"] == "video" and row["untrained"] == "True"
    for key in ("jf", "j_mean", "f_mean", "fps", "frame_latency_ms_p50", "frame_latency_ms_p90"):
        assert np.isfinite(float(row[key])), key
    job = out / row["job"]
    rec = json.loads((job / "result.json").read_text())
    m = rec["metrics"]
    assert m["n_items_ok"] == 1 and m["n_item_errors"] == 2
    assert m["jf"] == pytest.approx((m["j_mean"] + m["f_mean"]) / 2)
    # 3 frames: frame 0 is the prompt, 1 and 2 are propagated; only frame 1 is scored
    assert m["n_frames_propagated"] == 2 and m["n_frames_scored"] == 1
    for stage in ("preprocess", "init", "prompt", "propagation"):
        assert m[f"{stage}_ms_mean"] > 0, stage
    assert m["sequences_per_s"] > 0 and "peak_rss_mb" in m
    errors = {e["image_id"]: e["error"] for e in rec["item_errors"]}
    assert "cannot read frame 00000.jpg" in errors["broken"]
    assert "annotation folder of this sequence not found" in errors["noann"]
    rows = {r["image_id"]: r for r in read_csv(job / "per_image.csv")}
    assert rows[SEQ]["error"] == "" and rows["broken"]["error"] == errors["broken"]
    info = rec["task_info"]
    assert info["prompt_mode"] == "mask" and info["warmup"]["item"] == SEQ
    # the warm-up says what it ran; nothing was compiled (no vos_optimized), nothing recorded
    assert info["warmup"]["frames"] == 2 and "compile_s" not in info["warmup"]
    assert "timed_compile_s" not in m
    assert info["predictor"] == "SAM2VideoPredictor"
    assert info["predictor_settings"]["non_overlap_masks"] is True
    assert rec["config"]["prompt"]["mode"] is None  # null: the video task's default


def test_short_run_writes_davis_pngs_overlay_tables_and_figures(short_run, davis_src) -> None:
    _, _, _, out = short_run
    job = out / "0"
    pngs = sorted((job / "predictions" / SEQ).glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png"]
    for p in pngs:
        im = Image.open(p)
        assert im.mode == "P" and im.size == (854, 480)
        assert set(np.unique(np.array(im))) <= {0, 1}
    # the prompt frame's output is the prompt mask itself (use_mask_input_as_output_without_sam)
    gt0 = np.array(Image.open(davis_src / f"Annotations/480p/{SEQ}/00000.png")) > 0
    pred0 = np.array(Image.open(pngs[0])) == 1
    assert (gt0 & pred0).sum() / (gt0 | pred0).sum() > 0.9
    source = json.loads((job / "predictions" / "SOURCE.json").read_text())
    assert source["untrained"] is True and source["weights"] == "random"
    cap = cv2.VideoCapture(str(job / "overlays" / f"{SEQ}.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
    seq_rows = read_csv(job / "per_sequence.csv")
    assert [(r["sequence"], r["object"], r["level"]) for r in seq_rows] == [
        (SEQ, "all", "sequence"), (SEQ, "1", "object"),
    ]  # fmt: skip
    frames = read_csv(job / "per_frame.csv")
    assert [(r["frame"], r["scored"]) for r in frames] == [("0", "False"), ("1", "True"),
                                                           ("2", "False")]  # fmt: skip
    assert frames[0]["propagation_ms"] == "" and float(frames[1]["propagation_ms"]) > 0
    rec = json.loads((job / "result.json").read_text())
    assert float(frames[1]["j"]) == pytest.approx(rec["metrics"]["j_mean"])
    assert [f["path"] for f in rec["figures"]] == [
        f"figures/frames/{SEQ}.png", "figures/jf_per_sequence.png", "figures/j_over_frames.png",
    ]  # fmt: skip
    assert "first, middle and last frame" in rec["figures"][0]["caption"]
    assert all("UNTRAINED" in f["caption"] for f in rec["figures"])
    assert all((job / f["path"]).is_file() for f in rec["figures"])


def test_saved_pngs_are_scored_again_without_a_model(short_run) -> None:
    _, cwd, root, out = short_run
    job = out / "0"
    proc = sam_bench(
        ["task=video", "dataset=davis", f"dataset.root={root}", "dataset.max_frames=3",
         f"dataset.sequences=[{SEQ}]", f"predictions={job / 'predictions'}",
         f"hydra.run.dir={cwd / 'SCORED'}"],
        cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = json.loads((job / "result.json").read_text())
    scored = json.loads((cwd / "SCORED" / "result.json").read_text())
    for key in ("jf", "j_mean", "f_mean", "j_recall", "f_decay", "n_frames_scored"):
        assert scored["metrics"][key] == pytest.approx(ran["metrics"][key]), key
    assert "fps" not in scored["metrics"]  # nothing was timed
    assert scored["weights"]["kind"] == "predictions" and scored["untrained"] is True
    assert (cwd / "SCORED" / "per_sequence.csv").is_file()
    assert len(scored["figures"]) == 2


# --------------------------------------------------------------------------------------------
# slow: the command, several objects, a video file


@pytest.mark.slow
def test_done_when_command(davis_src: Path, tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    proc = run_cli(
        ["-m", "task=video", "prompt.mode=mask,click", "model.weights=random", "dataset=davis",
         f"dataset.root={davis_src}", "dataset.max_frames=6", "save_predictions=true",
         "tracking=none", f"hydra.sweep.dir={out}"],
        tmp_path, timeout=2400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_csv(out / "summary.csv")
    assert sorted(r["prompt.mode"] for r in rows) == ["click", "mask"]
    for r in rows:
        assert r["status"] == "ok"
        for key in ("jf", "j_mean", "f_mean", "fps"):
            assert np.isfinite(float(r[key])), key
        pngs = sorted((out / r["job"] / "predictions" / SEQ).glob("*.png"))
        assert len(pngs) == 6
        for p in pngs:
            assert Image.open(p).mode == "P"
            assert set(np.unique(np.array(Image.open(p)))) <= {0, 1}


@pytest.mark.slow
def test_late_object_with_hole_filling_on_the_cpu(davis_src: Path, tmp_path: Path) -> None:
    """Two objects in a palette sequence, the second from frame 3: it is prompted there (its
    mask is the prompt on that frame and absent before); hole filling runs on the CPU."""
    root = tmp_path / "D"
    frames, anns = root / "JPEGImages/480p/multi", root / "Annotations/480p/multi"
    frames.mkdir(parents=True)
    anns.mkdir(parents=True)
    box = np.zeros((480, 854), dtype=bool)
    box[20:120, 650:800] = True
    for t in range(6):
        os.symlink(davis_src / f"JPEGImages/480p/{SEQ}/{t:05d}.jpg", frames / f"{t:05d}.jpg")
        swan = np.array(Image.open(davis_src / f"Annotations/480p/{SEQ}/{t:05d}.png")) > 0
        lab = np.where(swan, 1, 0).astype(np.uint8)
        if t >= 3:
            lab[box & ~swan] = 2
        write_label_png(anns / f"{t:05d}.png", lab)
    out = tmp_path / "OUT"
    proc = sam_bench(
        ["-m", "task=video", "model.weights=random", "dataset=davis", f"dataset.root={root}",
         "save_predictions=true", "video.fill_hole_area=8", "warmup=false",
         f"hydra.sweep.dir={out}"],
        tmp_path, timeout=2400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    job = out / "0"
    rec = json.loads((job / "result.json").read_text())
    assert rec["task_info"]["cc_impl"] == "opencv_cpu"
    assert rec["task_info"]["predictor_settings"]["fill_hole_area"] == 8
    preds = [read_annotation(job / f"predictions/multi/{t:05d}.png")[0] for t in range(6)]
    assert not any((preds[t] == 2).any() for t in range(3))
    gt2 = box & ~(np.array(Image.open(davis_src / f"Annotations/480p/{SEQ}/00003.png")) > 0)
    p2 = preds[3] == 2
    assert (gt2 & p2).sum() / (gt2 | p2).sum() > 0.9
    objects = [r for r in read_csv(job / "per_sequence.csv") if r["level"] == "object"]
    assert [(r["object"], r["prompt_frame"], r["n_frames_scored"]) for r in objects] == [
        ("1", "0", "4"), ("2", "3", "1"),
    ]  # fmt: skip
    frames_rows = read_csv(job / "per_frame.csv")
    # frame 3: object 1 is propagated there (timed), object 2 prompted
    f3 = [r for r in frames_rows if r["frame"] == "3"]
    assert float(f3[0]["propagation_ms"]) > 0 and f3[1]["prompt_frame"] == "True"
    assert rec["metrics"]["n_frames_propagated"] == 5


@pytest.mark.slow
def test_video_file_input(davis_src: Path, tmp_path: Path) -> None:
    clip = tmp_path / "swan.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (854, 480))
    for t in range(4):
        writer.write(cv2.imread(str(davis_src / f"JPEGImages/480p/{SEQ}/{t:05d}.jpg")))
    writer.release()
    masks = tmp_path / "masks"
    masks.mkdir()
    for t in (0, 2):  # frames 0 and 2 annotated
        os.symlink(davis_src / f"Annotations/480p/{SEQ}/{t:05d}.png", masks / f"{t:05d}.png")
    out = tmp_path / "OUT"
    proc = sam_bench(
        ["-m", "task=video", "model.weights=random", "dataset=davis", f"dataset.root={clip}",
         f"dataset.annotations={masks}", "prompt.mode=box", "warmup=false",
         f"hydra.sweep.dir={out}"],
        tmp_path, timeout=2400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = read_csv(out / "0" / "per_image.csv")
    assert row["image_id"] == "swan" and "4 frames extracted from swan.mp4" in row["conversion"]
    # frame 2 is the only annotated frame after the prompt and before the last; 3 propagated
    rec = json.loads((out / "0" / "result.json").read_text())
    assert rec["metrics"]["n_frames_scored"] == 1 and rec["metrics"]["n_frames_propagated"] == 3
    assert np.isfinite(rec["metrics"]["jf"])
    assert rec["task_info"]["prompt_mode"] == "box"


@pytest.mark.gpu
def test_cuda_run_bf16_with_hole_filling_and_offload(davis_src: Path, tmp_path: Path) -> None:
    """On CUDA: bf16 autocast, hole filling (CUDA extension or the CPU step, recorded), the
    state offloaded to the CPU or not; GPU peak memory measured."""
    out = tmp_path / "OUT"
    proc = sam_bench(
        ["-m", "task=video", "model.weights=random", "dataset=davis",
         f"dataset.root={davis_src}", "dataset.max_frames=8", "device=cuda", "dtype=bf16",
         "video.fill_hole_area=8", "video.offload_state_to_cpu=false,true",
         f"hydra.sweep.dir={out}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for row in read_csv(out / "summary.csv"):
        assert row["status"] == "ok" and row["device"].startswith("cuda")
        assert float(row["peak_gpu_mem_mb"]) > 0 and float(row["fps"]) > 0
        rec = json.loads((out / row["job"] / "result.json").read_text())
        assert rec["task_info"]["cc_impl"] in ("cuda_extension", "opencv_cpu")
        assert rec["task_info"]["predictor_settings"]["fill_hole_area"] == 8
