"""Video: sam_bench's video task vs the official ``SAM2VideoPredictor`` loop of sam2's
``tools/vos_inference.py``, side by side in one run, on the same frames and prompts.

The sequence is DAVIS 2016 ``blackswan`` from ``../shared/data`` when it is there (its first
``--frames`` frames; 854x480, one object), else a synthetic DAVIS-style sequence written to a
temporary folder (a disc moving over noise, ``--frames`` frames). sam2.1 tiny, random weights,
CPU, fp32. Both sides drive the same predictor object (built once by sam_bench; that the build
equals ``build_sam2_video_predictor``'s is tested in ``tests/integration/
test_video_model_build.py``), warmed up once, untimed, by a short propagation:

* ``official loop`` (the baseline): ``vos_inference.py``'s per-video body: ``init_state`` on
  a folder of the JPEG frames, ``add_new_mask`` for each object of the first annotation PNG
  on frame 0, ``propagate_in_video``, ``logits > 0`` per object, the objects painted into one
  map (lower ids on top) and written as palette PNGs;
* ``sam_bench``: the runner's per-sequence path (:func:`sam_bench.loop.run_items` over the
  one sequence, ``warmup=false``): the ground truth loaded, the frames linked and the prompts
  derived, the same predictor calls, the PNGs written (``save_predictions=true``) and the
  sequence scored (J, F; the ``metrics`` stage). What sam_bench adds beyond the loop is inside
  its time.

Each side's time is the median over ``--repeats`` rounds (the sides take turns). Prints the
frames per second of both (all frames of the sequence over the wall time), their ratio, the
same for the loop alone (official: ``init_state`` to the last propagated frame; sam_bench: its
``preprocess`` + ``init`` + ``prompt`` + ``propagation`` stages, so without its scores,
figures and PNGs), the propagation-only rates, and the masks' agreement: the share of pixels
with the same object id over every frame, and the smallest per-frame foreground IoU.

    .venv/bin/python benchmarks/bench_video.py                  # 10 frames, 3 rounds
    .venv/bin/python benchmarks/bench_video.py --frames 50 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import Ratio
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from sam_bench.config import CONF_DIR, register_configs, to_typed
from sam_bench.data.registry import build_dataset
from sam_bench.loop import run_items
from sam_bench.tasks.base import JobContext
from sam_bench.tasks.video import VideoTask
from sam_bench.tasks.video.outputs import PREDICTIONS_DIR, davis_palette
from sam_bench.tasks.video.tracking import sam2_progress

REPO = Path(__file__).resolve().parents[1]
DAVIS = REPO.parent / "shared" / "data" / "davis2016_blackswan" / "DAVIS"
SEQUENCE = "blackswan"
STAGES = ("preprocess", "init", "prompt", "propagation", "metrics")
LOOP = ("preprocess", "init", "prompt", "propagation")
"""sam_bench's stages that do what the official loop does up to its last frame."""


def synthetic_davis(root: Path, frames: int, h: int = 240, w: int = 320) -> Path:
    """A DAVIS-style root with one sequence: a disc (object 1) moving over noise."""
    rng = np.random.default_rng(0)
    jpg = root / "JPEGImages" / "480p" / SEQUENCE
    ann = root / "Annotations" / "480p" / SEQUENCE
    jpg.mkdir(parents=True)
    ann.mkdir(parents=True)
    yy, xx = np.mgrid[:h, :w]
    for t in range(frames):
        cx, cy = 60 + 6 * t, 80 + 3 * t
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 40**2
        img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
        img[disc] = (200, 120, 40)
        Image.fromarray(img).save(jpg / f"{t:05d}.jpg", quality=95)
        lab = Image.fromarray(disc.astype(np.uint8), mode="P")
        lab.putpalette(davis_palette().ravel().tolist())
        lab.save(ann / f"{t:05d}.png")
    return root


def config(root: Path, frames: int, out: Path) -> Any:
    """The video job's typed config (the defaults of ``task=video``)."""
    register_configs()
    GlobalHydra.instance().clear()
    overrides = [
        "task=video", "dataset=davis", f"dataset.root={root}", f"dataset.max_frames={frames}",
        f"dataset.sequences=[{SEQUENCE}]", "model.weights=random", "tracking=none",
        "progress=false", "save_predictions=true", f"hydra.run.dir={out}",
    ]  # fmt: skip
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return to_typed(compose("config", overrides=overrides))
    finally:
        GlobalHydra.instance().clear()


def official(predictor: Any, frames: list[Path], first_png: Path, out: Path) -> dict[str, Any]:
    """``vos_inference.py``'s body for one video (CPU: fp32, no autocast): returns the label
    maps and the propagation's own seconds."""
    video_dir = out / "JPEGImages"
    video_dir.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):  # vos_inference reads a folder of JPEG frames
        link = video_dir / f"{i:05d}.jpg"
        if not link.exists():
            link.symlink_to(f.resolve())
    with torch.inference_mode(), sam2_progress(False):
        start = time.perf_counter()
        state = predictor.init_state(video_path=str(video_dir), async_loading_frames=False)
        height, width = state["video_height"], state["video_width"]
        ids = np.array(Image.open(first_png))  # load_masks_from_dir: ids of a palette PNG
        objects = sorted(int(i) for i in np.unique(ids) if i > 0)
        for obj in objects:
            predictor.add_new_mask(state, frame_idx=0, obj_id=obj, mask=ids == obj)
        segments: dict[int, dict[int, np.ndarray]] = {}
        yielded = []
        for idx, obj_ids, logits in predictor.propagate_in_video(state):
            segments[idx] = {o: (logits[i] > 0.0).cpu().numpy() for i, o in enumerate(obj_ids)}
            yielded.append(time.perf_counter())
        predictor.reset_state(state)
    labels = []
    palette = davis_palette().ravel().tolist()
    for idx in sorted(segments):  # save_masks_to_dir / put_per_obj_mask
        mask = np.zeros((height, width), dtype=np.uint8)
        for obj in sorted(segments[idx])[::-1]:
            mask[segments[idx][obj].reshape(height, width)] = obj
        im = Image.fromarray(mask, mode="P")
        im.putpalette(palette)
        im.save(out / f"{idx:05d}.png")
        labels.append(mask)
    # the frames after the prompted one (what sam_bench's ``fps`` counts): first yield to last
    return {"labels": labels, "objects": objects, "propagated": len(yielded) - 1,
            "propagation_s": yielded[-1] - yielded[0], "loop_s": yielded[-1] - start}  # fmt: skip


def ours(cfg: Any, model: Any, weights: Any, job_dir: Path) -> dict[str, Any]:
    """The runner's per-sequence path; returns the label maps (its PNGs read back) and the
    sequence's record figures."""
    dataset = build_dataset(cfg.dataset, REPO)
    refs = dataset.refs()
    ctx = JobContext(cfg=cfg, device=torch.device("cpu"), model=model, weights=weights,
                     dataset=dataset, refs=refs, job_dir=job_dir)  # fmt: skip
    task = VideoTask([ctx])
    try:
        (result,) = run_items(task, warmup=False, progress=False)
    finally:
        task.close()
    (row,) = result.rows
    if row.get("error"):
        raise SystemExit(f"sam_bench failed on {row['image_id']}: {row['error']}")
    pngs = sorted((job_dir / PREDICTIONS_DIR / refs[0].image_id).glob("*.png"))
    labels = [np.array(Image.open(p)) for p in pngs]
    return {"labels": labels, "row": row, "metrics": result.metrics}


def agreement(
    a: list[np.ndarray], b: list[np.ndarray], ids_a: list[int], ids_b: list[int]
) -> tuple[float, float]:
    """Share of pixels with the same object over all frames, smallest per-frame foreground
    IoU. ``ids_a`` / ``ids_b``: each side's object ids in the same order (a DAVIS 2016 mask's
    object is 255 in its PNG, which vos_inference keeps; sam_bench calls it 1)."""
    if len(a) != len(b) or not a or len(ids_a) != len(ids_b) or not ids_a:
        raise SystemExit(f"compared nothing: {len(a)} vs {len(b)} frames, {ids_a} vs {ids_b}")

    def rank(x: np.ndarray, ids: list[int]) -> np.ndarray:
        lut = np.zeros(max(ids) + 1, dtype=np.int32)
        lut[ids] = np.arange(1, len(ids) + 1)
        return lut[x]

    a = [rank(x, ids_a) for x in a]
    b = [rank(x, ids_b) for x in b]
    same = sum(int((x == y).sum()) for x, y in zip(a, b, strict=True))
    total = sum(x.size for x in a)
    ious = []
    for x, y in zip(a, b, strict=True):
        union = int(((x > 0) | (y > 0)).sum())
        ious.append(1.0 if union == 0 else int(((x > 0) & (y > 0)).sum()) / union)
    return same / total, min(ious)


def run(frames: int = 10, repeats: int = 3, davis: Path | None = None) -> list[Ratio]:
    """Prints the comparison and returns sam_bench's fps against the official loop's."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = davis if davis is not None else DAVIS
        source = f"DAVIS {SEQUENCE}"
        if not (root / "JPEGImages" / "480p" / SEQUENCE).is_dir():
            root, source = synthetic_davis(base / "synthetic", frames), "synthetic disc"
        cfg = config(root, frames, base / "cfg")
        model, weights = VideoTask.build_model(cfg, torch.device("cpu"))
        seq_frames = sorted((root / "JPEGImages" / "480p" / SEQUENCE).glob("*.jpg"))[:frames]
        first_png = sorted((root / "Annotations" / "480p" / SEQUENCE).glob("*.png"))[0]
        print(f"video: {source}, {len(seq_frames)} frames, sam2.1 tiny, random weights, CPU")
        official(model, seq_frames[:3], first_png, base / "warmup")  # untimed warm-up
        times: dict[str, list[float]] = {k: [] for k in ("official", "sam_bench", "off_loop",
                                                          "our_loop")}  # fmt: skip
        last: dict[str, dict[str, Any]] = {}
        for r in range(repeats):
            t0 = time.perf_counter()
            last["official"] = official(model, seq_frames, first_png, base / f"official{r}")
            times["official"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            last["sam_bench"] = ours(cfg, model, weights, base / f"ours{r}")
            times["sam_bench"].append(time.perf_counter() - t0)
            times["off_loop"].append(last["official"]["loop_s"])
            row = last["sam_bench"]["row"]
            times["our_loop"].append(sum(row.get(f"{s}_ms", 0.0) for s in LOOP) / 1000.0)
        off_s, our_s, off_loop, our_loop = (
            statistics.median(times[k]) for k in ("official", "sam_bench", "off_loop", "our_loop")
        )
        dataset = build_dataset(cfg.dataset, REPO)
        truth = dataset.load(dataset.refs()[0]).video
        assert truth is not None
        off = last["official"]
        same, min_iou = agreement(off["labels"], last["sam_bench"]["labels"], off["objects"],
                                  sorted(truth.masks[0]))  # fmt: skip
    n = len(seq_frames)
    row = last["sam_bench"]["row"]
    prop_off = off["propagated"] / off["propagation_s"]
    print(
        f"  official loop      {off_s:7.1f} s  {n / off_s:6.3f} fps  "
        f"(propagation alone {prop_off:.3f} fps)"
    )
    stages = ", ".join(f"{s} {row.get(f'{s}_ms', 0):.0f}" for s in STAGES)
    print(
        f"  sam_bench          {our_s:7.1f} s  {n / our_s:6.3f} fps  "
        f"(propagation alone {last['sam_bench']['metrics'].get('fps', float('nan')):.3f} fps; "
        f"stages ms: {stages})"
    )
    print(f"  fps ratio sam_bench / official = {off_s / our_s:5.2f}x   (target >= 1.0x)")
    print(f"  the loop alone (frames read, prompts, propagation; no PNGs, scores or figures): "
          f"official {n / off_loop:.3f} fps, sam_bench {n / our_loop:.3f} fps, ratio "
          f"{off_loop / our_loop:.2f}x")  # fmt: skip
    print(f"  masks: {same:.6f} of pixels identical, min per-frame IoU {min_iou:.6f}\n")
    return [
        Ratio(f"bench_video: {source}, {n} frames", "sam_bench video task (per sequence)",
              "official vos_inference loop", our_s, off_s, "s",
              f"{same:.6f} pixels identical, min IoU {min_iou:.4f}", ">= 1.0x"),
        Ratio(f"bench_video: {source}, {n} frames", "sam_bench, the loop alone (stages)",
              "official loop, init_state to the last frame", our_loop, off_loop, "s"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10, help="first N frames (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--davis", type=Path, default=None, help=f"DAVIS root (default {DAVIS})")
    args = parser.parse_args()
    run(args.frames, args.repeats, args.davis)


if __name__ == "__main__":
    main()
