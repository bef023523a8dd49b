"""Where a keep-all image's time goes in the fast AMG engine (and, optionally, the official one).

One embedded image, sam2.1 tiny with random weights, CPU, a 16x16 grid with every candidate
kept (thresholds 0, ``box_nms_thresh=1.0``: ``bench_engines.py keep_all``'s settings). The
fast engine runs under cProfile; its time is split into the encoder, the mask decoder and the
post-processing steps (upsampling of the low-res logits, thresholding and stability scores,
boxes, NMS, RLE encoding, host copies and records), each the cumulative time of the functions
that do it. With ``--reference`` the official ``SAM2AutomaticMaskGenerator`` runs too, the two
taking turns, and the ratio of their medians is printed.

    .venv/bin/python benchmarks/profile_keep_all.py                 # split of the fast engine
    .venv/bin/python benchmarks/profile_keep_all.py --reference --repeats 3
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.fast import FastEngine
from sam_bench.engines.reference import ReferenceEngine
from sam_bench.metrics.cost import StageTimes
from sam_bench.models.build import build_model
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

#: Post-processing steps: (label, (file suffix, function name) of the functions that do it).
#: A step's time is the cumulative time of its functions (none of them calls another's; the
#: sam2 / torchvision entries are what checkouts before the torch-only image side ran; where
#: torchvision's NMS kernel cannot be loaded directly, sam_bench's calls torchvision's).
STEPS: list[tuple[str, list[tuple[str, str]]]] = [
    ("upsample low-res logits", [("sam_bench/engines/image_features.py", "postprocess_masks"),
                                 ("sam2/utils/transforms.py", "postprocess_masks")]),
    ("stability scores", [("sam2/utils/amg.py", "calculate_stability_score"),
                          ("sam_bench/engines/postprocess.py", "stability_and_binary")]),
    ("boxes", [("sam2/utils/amg.py", "batched_mask_to_box"),
               ("sam_bench/engines/postprocess.py", "mask_boxes")]),
    ("near-crop-edge filter", [("sam2/utils/amg.py", "is_box_near_crop_edge")]),
    ("RLE encoding + areas", [("sam_bench/engines/fast.py", "_encode"),
                              ("sam_bench/engines/postprocess.py", "encode_rles")]),
    ("NMS", [("sam_bench/engines/nms.py", "batched_nms"),
             ("torchvision/ops/boxes.py", "batched_nms")]),
    ("records (host copies)", [("sam_bench/engines/fast.py", "_records")]),
]  # fmt: skip


#: The official generator's steps after the decoder (functions of sam2 itself).
REF_STEPS: list[tuple[str, list[tuple[str, str]]]] = [
    ("upsample low-res logits (in decoder)", [("sam2/utils/transforms.py", "postprocess_masks")]),
    ("stability scores", [("sam2/utils/amg.py", "calculate_stability_score")]),
    ("boxes", [("sam2/utils/amg.py", "batched_mask_to_box")]),
    ("RLE encoding (mask_to_rle_pytorch)", [("sam2/utils/amg.py", "mask_to_rle_pytorch")]),
    ("MaskData.cat / filter / to_numpy", [("sam2/utils/amg.py", "cat"),
                                          ("sam2/utils/amg.py", "filter"),
                                          ("sam2/utils/amg.py", "to_numpy")]),
    ("coco_encode_rle + records", [("sam2/utils/amg.py", "coco_encode_rle"),
                                   ("sam2/utils/amg.py", "area_from_rle"),
                                   ("sam2/utils/amg.py", "box_xyxy_to_xywh")]),
    ("NMS", [("torchvision/ops/boxes.py", "batched_nms")]),
]  # fmt: skip


def _cumtime(stats: pstats.Stats, suffix: str, name: str) -> float | None:
    """Cumulative seconds of the functions ``name`` in files ending with ``suffix``; ``None``
    when none ran."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    found = [v[3] for (f, _, fn), v in raw.items() if f.endswith(suffix) and fn == name]
    return sum(found) if found else None


def split(
    image: np.ndarray, engine: FastEngine | ReferenceEngine, steps: list[tuple[str, Any]]
) -> dict[str, float]:
    """Seconds per stage and step of one ``engine.generate(image)`` under cProfile
    (``steps``: :data:`STEPS` or :data:`REF_STEPS`)."""
    times = StageTimes()
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(engine.generate, image, times)
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    out = {"total (under cProfile)": total}
    out.update({k: v for k, v in times.seconds.items() if v})
    post = times.seconds.get("postprocess", 0.0)
    named = 0.0
    for label, funcs in steps:
        found = [t for t in (_cumtime(stats, f, n) for f, n in funcs) if t is not None]
        if not found:  # a renamed function would otherwise read as a free step
            raise SystemExit(f"profile_keep_all: no function of step {label!r} ran: {funcs}")
        out[f"  {label}"] = s = sum(found)
        named += 0.0 if "(in decoder)" in label else s
    out["  other post-processing"] = post - named
    return out


#: aten operators that are matrix work (everything else in the decoder is element-wise,
#: copies or reductions).
MATMUL_OPS = ("addmm", "mm", "bmm", "matmul", "linear", "convolution", "conv", "attention",
              "baddbmm")  # fmt: skip


def op_split(image: np.ndarray, engine: FastEngine, top: int = 15) -> None:
    """torch.profiler over one ``engine.generate(image)``: self CPU time of the aten
    operators, matrix work against the rest, and the largest ones."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine.generate(image, StageTimes())
    rows = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in rows) / 1e6
    mat = sum(e.self_cpu_time_total for e in rows if any(m in e.key for m in MATMUL_OPS)) / 1e6
    print(f"aten self CPU time {total:.2f} s: matrices {mat:.2f} s, the rest {total - mat:.2f} s")
    for e in sorted(rows, key=lambda e: -e.self_cpu_time_total)[:top]:
        print(f"  {e.key:<40} {e.self_cpu_time_total / 1e6:8.3f} s  {e.count:6d} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=16, help="points per side (default 16)")
    parser.add_argument("--reference", action="store_true", help="also time the official AMG")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds")
    parser.add_argument("--ops", action="store_true", help="torch.profiler operator split")
    parser.add_argument("--image", type=int, default=0, help="index of the embedded image")
    args = parser.parse_args()
    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        checkpoint_file="x.pt", url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    model: Any
    model, _ = build_model(cfg, torch.device("cpu"), seed=0, progress=False)
    ds = build_dataset(DatasetConfig(limit=args.image + 1), Path(__file__).resolve().parents[1])
    raw = ds.load(ds.refs()[args.image]).raw
    assert raw is not None
    image = to_model_input(raw, PreprocessConfig())[0]
    amg = AMGConfig(
        points_per_side=args.side, pred_iou_thresh=0.0, stability_score_thresh=0.0,
        box_nms_thresh=1.0,
    )  # fmt: skip
    cpu = torch.device("cpu")
    fast = FastEngine(model, amg, cpu)
    ref = ReferenceEngine(model, amg, cpu)
    print(f"keep-all {args.side}x{args.side}, image {image.shape[1]}x{image.shape[0]}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    splits: list[dict[str, float]] = []
    ref_splits: list[dict[str, float]] = []
    fast_s: list[float] = []
    ref_s: list[float] = []
    n_masks = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n_masks = len(fast.generate(image, StageTimes()))
        fast_s.append(time.perf_counter() - t0)
        splits.append(split(image, fast, STEPS))
        if args.reference:
            t0 = time.perf_counter()
            ref.generate(image, StageTimes())
            ref_s.append(time.perf_counter() - t0)
            ref_splits.append(split(image, ref, REF_STEPS))
    if args.ops:
        op_split(image, fast)
    for name, runs in (("fast engine", splits), ("official generator", ref_splits)):
        if runs:
            print(f"{name} split ({n_masks} masks; median of {args.repeats}, seconds):")
            for key in runs[0]:
                print(f"  {key:<38} {statistics.median(s[key] for s in runs):8.3f}")
    print(f"fast engine, no profiler: {statistics.median(fast_s):.2f} s")
    if ref_s:
        f, r = statistics.median(fast_s), statistics.median(ref_s)
        print(f"official generator:       {r:.2f} s   -> {r / f:.2f}x")


if __name__ == "__main__":
    main()
