"""CUDA checks of the prompted, semantic and video tasks (issue 21, item 7; ``make test-gpu``).

Skipped with the reason where CUDA is unavailable (``tests/conftest.py``); random-weight sam2.1
tiny, so the masks measure the harness, not SAM 2.

* prompted: each job of a group reports the peak it has alone, and an encoder-cache hit keeps
  the encoder's peak (item 3); the record holds ``gpu_reserved_mb`` next to the allocated peak;
* CUDA vs CPU on the same random weights: box-prompted masks agree per instance (IoU >= 0.99)
  and the task's metrics agree, their deltas printed;
* semantic on CUDA: one CLIP per group, the job's peak covers its CLIP stage (item 2);
* video: ``offload_video_to_cpu`` / ``offload_state_to_cpu`` give the masks of a run without;
  ``vos_optimized``: the warm-up compiles, the timed sequence does not (item 4; slow).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.config import (
    DatasetConfig,
    ModelConfig,
    PreprocessConfig,
    TaskConfig,
    root_schema,
    to_typed,
)
from sam_bench.data.registry import build_dataset
from sam_bench.loop import run_items
from sam_bench.metrics.cost import GpuPeak, StageTimes
from sam_bench.models.build import WeightsInfo, build_model, build_video_model
from sam_bench.preprocess import to_model_input
from sam_bench.prompts.boxes import tight_box
from sam_bench.tasks.amg.settings import AMGConfig
from sam_bench.tasks.base import JobContext, TaskResult
from sam_bench.tasks.prompted import PromptedTask
from sam_bench.tasks.prompted.decoder import PromptDecoder
from sam_bench.tasks.prompted.settings import PromptConfig
from sam_bench.tasks.semantic.settings import SemanticConfig
from sam_bench.tasks.semantic.task import SemanticTask
from sam_bench.tasks.video.compile import CompileWatch, warmup_frames
from sam_bench.tasks.video.inputs import Prompt, VideoInput
from sam_bench.tasks.video.tracking import track

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
WEIGHTS = WeightsInfo("random", None, "test-weights", None, "random")
TINY = ModelConfig(
    name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
    sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
    url="http://127.0.0.1:9/x.pt", weights="random",
)  # fmt: skip
#: Side of the big test image: upsampling a prompt batch's masks to it is what makes one
#: configuration's own stage outgrow the encoder (the peak must move for the test to mean
#: anything; each test asserts that it did).
BIG = 2048


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same random weights on the CPU and on CUDA (built once, copied)."""
    cpu, _ = build_model(TINY, CPU, seed=0, progress=False)
    return cpu, copy.deepcopy(cpu).to(CUDA)


def big_instances(root: Path, n: int = 48) -> DatasetConfig:
    """One BIG x BIG image with ``n`` rectangular instances (an instance_folder dataset)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (BIG, BIG, 3), dtype=np.uint8)
    labels = np.zeros((BIG, BIG), np.uint16)
    side = BIG // 8
    for i in range(n):
        y, x = divmod(i, 8)
        labels[y * side + 8 : (y + 1) * side - 8, x * side + 8 : (x + 1) * side - 8] = i + 1
        img[labels == i + 1] = rng.integers(0, 256, 3, dtype=np.uint8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(root / "images" / "big.png")
    Image.fromarray(labels).save(root / "labels" / "big.png")
    return DatasetConfig(name="big", format="instance_folder", images=str(root / "images"),
                         labels=str(root / "labels"))  # fmt: skip


def prompted(
    model: torch.nn.Module, device: torch.device, prompts: list[PromptConfig],
    dcfg: DatasetConfig, root: Path, cache_dir: Path | None = None,
) -> list[TaskResult]:  # fmt: skip
    data = build_dataset(dcfg, Path("."))
    jobs = [
        JobContext(
            cfg=root_schema()(task=TaskConfig(name="prompted", save_masks=0), prompt=p,
                              dataset=dcfg),
            device=device, model=model, weights=WEIGHTS, dataset=data, refs=data.refs(),
            job_dir=root / f"job{j}", cache_dir=cache_dir,
        )
        for j, p in enumerate(prompts)
    ]  # fmt: skip
    task = PromptedTask(jobs)
    try:
        return run_items(task, warmup=True, progress=False)
    finally:
        task.close()


def peak(result: TaskResult) -> float:
    value = result.metrics["peak_gpu_mem_mb"]
    assert math.isfinite(value), result.metrics
    return float(value)


SMALL = PromptConfig(mode="box", batch_size=1)
LARGE = PromptConfig(mode="box", batch_size=48)


def test_prompted_jobs_report_their_own_peak_and_the_reserved_one(models, tmp_path) -> None:
    _, model = models
    dcfg = big_instances(tmp_path / "data")
    (small,) = prompted(model, CUDA, [SMALL], dcfg, tmp_path / "a")
    (large,) = prompted(model, CUDA, [LARGE], dcfg, tmp_path / "b")
    g_small, g_large = prompted(model, CUDA, [SMALL, LARGE], dcfg, tmp_path / "c")
    print(f"alone: {peak(small):.0f} / {peak(large):.0f} MB; grouped: "
          f"{peak(g_small):.0f} / {peak(g_large):.0f} MB")  # fmt: skip
    # the test means something only where the configurations' peaks differ
    assert peak(large) > 1.2 * peak(small), "the image does not move the peak: use a larger one"
    assert peak(g_small) == pytest.approx(peak(small), rel=0.05)
    assert peak(g_large) == pytest.approx(peak(large), rel=0.05)
    for r in (small, large, g_small, g_large):
        reserved = r.metrics["peak_gpu_reserved_mb"]
        assert math.isfinite(reserved) and reserved >= peak(r)
        for row in r.rows:
            assert row["gpu_reserved_mb"] >= row["gpu_peak_mb"] > 0


def test_a_prompted_cache_hit_keeps_the_encoders_peak(models, tmp_path) -> None:
    _, model = models
    dcfg = big_instances(tmp_path / "data")
    cache = tmp_path / "enc"
    (cold,) = prompted(model, CUDA, [SMALL], dcfg, tmp_path / "a", cache_dir=cache)
    (warm,) = prompted(model, CUDA, [SMALL], dcfg, tmp_path / "b", cache_dir=cache)
    assert warm.info["encoder_cache"]["hits"] >= 1, warm.info["encoder_cache"]
    entries = list(cache.rglob("*.pt"))
    assert entries
    stored = torch.load(entries[0], map_location="cpu", weights_only=True)["encoder_peak_mb"]
    assert math.isfinite(stored) and stored > 0  # no NaN entry any more
    # the encoder dominates a one-box batch: a hit that lost it would be far lower
    assert peak(warm) == pytest.approx(peak(cold), rel=0.05)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_cuda_and_cpu_agree_on_the_same_random_weights(models, tmp_path) -> None:
    cpu_model, cuda_model = models
    for a, b in zip(cpu_model.state_dict().values(), cuda_model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b.cpu())
    dcfg = DatasetConfig(limit=1)
    data = build_dataset(dcfg, Path("."))
    sample = data.load(data.refs()[0])
    assert sample.raw is not None and sample.gt is not None
    image, _ = to_model_input(sample.raw, PreprocessConfig())
    found = [tight_box(mask_utils.decode(r).astype(bool)) for r in sample.gt.rles]
    boxes = np.array([b for b in found if b is not None], dtype=np.float32)
    assert len(boxes) >= 2
    masks = {}
    runs = (("cpu", CPU, cpu_model), ("cuda", CUDA, cuda_model))
    for name, device, model in runs:
        dec = PromptDecoder(model, device)
        dec.set_image(image, [StageTimes()])
        masks[name] = dec.decode(box=boxes, multimask_output=False).masks[:, 0]
        dec.close()
    ious = [_iou(c, g) for c, g in zip(masks["cpu"], masks["cuda"], strict=True)]
    print("per-instance IoU CUDA vs CPU:", [f"{x:.4f}" for x in ious])
    assert min(ious) >= 0.99
    results = {
        name: prompted(m, d, [PromptConfig(mode="box")], dcfg, tmp_path / name)[0]
        for name, d, m in runs
    }
    for name in ("miou_prompted", "miou_box"):
        c, g = results["cpu"].metrics[name], results["cuda"].metrics[name]
        print(f"{name}: cpu {c:.4f} cuda {g:.4f} delta {g - c:+.5f}")
        assert abs(g - c) <= 0.01


def test_semantic_on_cuda_shares_one_clip_and_its_peak_covers_clip(models, tmp_path) -> None:
    from clip_fixtures import tiny_open_clip_dir
    from semantic_fixtures import write_street

    _, model = models
    root = tmp_path / "data"
    write_street(root)
    clip_dir = tiny_open_clip_dir(root / "tiny_clip")
    dcfg = DatasetConfig(name="tiny_semantic", format="semantic_folder",
                         images=str(root / "img"), labels=str(root / "sem"),
                         classes=str(root / "classes.txt"), void_index=9)  # fmt: skip
    dataset = build_dataset(dcfg, Path("."))
    keep = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    jobs = []
    for j, overlap in enumerate(("iou", "area")):
        sem = SemanticConfig(clip_model=f"local-dir:{clip_dir}", clip_weights="random",
                             overlap=overlap, batch_size=64)  # fmt: skip
        cfg = root_schema()(task=TaskConfig(name="semantic", save_masks=0),
                            amg=AMGConfig(points_per_side=8, **keep), semantic=sem,
                            dataset=dcfg)  # fmt: skip
        jobs.append(JobContext(cfg=cfg, device=CUDA, model=model, weights=WEIGHTS,
                               dataset=dataset, refs=dataset.refs(),
                               job_dir=tmp_path / f"job{j}"))  # fmt: skip
    task = SemanticTask(jobs)
    assert len(task.clips) == 1  # one CLIP for the jobs that name it
    clip = next(iter(task.clips.values()))
    # the CLIP stage alone, on crops of the same size, with both models resident
    gpu = GpuPeak(CUDA)
    crops = [np.zeros((224, 224, 3), np.uint8) for _ in range(64)]
    clip.encode_images(crops)
    gpu.start_item()
    clip.encode_images(crops)
    clip_peak = gpu.peak_mb()
    try:
        results = run_items(task, warmup=True, progress=False)
    finally:
        task.close()
    for r in results:
        for row in r.rows:
            assert row["error"] is None, row
            print(f"semantic row peak {row['gpu_peak_mb']:.0f} MB, CLIP alone {clip_peak:.0f}")
            assert row["gpu_peak_mb"] >= 0.95 * clip_peak
            assert row["gpu_reserved_mb"] >= row["gpu_peak_mb"]
        assert math.isfinite(r.metrics["semantic_miou"])


# ------------------------------------------------------------------------------ video


def moving_square(folder: Path, n: int, size: int = 96) -> list[Prompt]:
    """``n`` JPEG frames of a square moving over noise; the first frame's mask prompts it."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        img[20 + t % 40 : 50 + t % 40, 20:50] = (230, 200, 40)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=95)
    mask = np.zeros((size, size), bool)
    mask[20:50, 20:50] = True
    return [Prompt(1, 0, "mask", mask=mask)]


def video_cfg(*overrides: str) -> Any:
    return to_typed(compose("config", overrides=[
        "task=video", "dataset=davis", "dataset.root=x", "model.weights=random",
        "progress=false", *overrides,
    ]))  # fmt: skip


def run_video(cfg: Any, inputs: VideoInput) -> list[np.ndarray | None]:
    model, _ = build_video_model(cfg.model, cfg.video, CUDA, cfg.seed, progress=False)
    try:
        return list(track(model, inputs, cfg, CUDA, StageTimes()).labels)
    finally:
        del model
        torch.cuda.empty_cache()


@pytest.mark.parametrize("offload", ["video", "state", "both"])
def test_video_offload_gives_the_masks_of_a_run_without(hydra_conf, tmp_path, offload) -> None:
    n = 8
    inputs = VideoInput(tmp_path / "frames", [], 96, 96, moving_square(tmp_path / "frames", n))
    inputs.frames = sorted((tmp_path / "frames").glob("*.jpg"))
    base = run_video(video_cfg(), inputs)
    flags = {
        "video": ["video.offload_video_to_cpu=true"],
        "state": ["video.offload_state_to_cpu=true"],
        "both": ["video.offload_video_to_cpu=true", "video.offload_state_to_cpu=true"],
    }
    other = run_video(video_cfg(*flags[offload]), inputs)
    assert all(x is not None for x in base[1:])
    ious = [_iou(np.asarray(a) == 1, np.asarray(b) == 1)
            for a, b in zip(base[1:], other[1:], strict=True)]  # fmt: skip
    print(f"offload={offload}: per-frame IoU with the run without", [f"{x:.4f}" for x in ious])
    assert min(ious) >= 0.99


@pytest.mark.slow
def test_vos_optimized_compiles_in_the_warm_up_not_in_the_timed_frames(hydra_conf, tmp_path):
    cfg = video_cfg("video.vos_optimized=true")
    model, _ = build_video_model(cfg.model, cfg.video, CUDA, cfg.seed, progress=False)
    frames = warmup_frames(cfg.video.warmup_frames, True, model)
    n = frames + 8
    prompts = moving_square(tmp_path / "frames", n)
    files = sorted((tmp_path / "frames").glob("*.jpg"))
    warm = VideoInput(tmp_path / "frames", files, 96, 96, prompts)
    watch = CompileWatch()
    short = tmp_path / "short"
    short.mkdir()
    for f in files[:frames]:
        (short / f.name).symlink_to(f)
    track(model, VideoInput(short, files[:frames], 96, 96, prompts), cfg, CUDA, StageTimes(),
          watch=watch)  # fmt: skip
    assert watch.count > 0, "vos_optimized compiled nothing in the warm-up"
    out = track(model, warm, cfg, CUDA, StageTimes(), watch=CompileWatch())
    print(f"warm-up: {watch.count} compilations, {watch.seconds:.1f} s; timed: "
          f"{out.n_compiles} compilations, {out.compile_s:.2f} s")  # fmt: skip
    assert out.n_compiles == 0
    assert out.frame_ms is not None and all(t is not None for t in out.frame_ms[1:])
