"""Runtimes side by side: each ``model.runtime`` against eager PyTorch, in one process.

For each model size (sam2.1 tiny and small by default, random weights, CPU) the eager model
is built once; each runtime gets a deep copy, prepared by sam_bench's own code
(:func:`sam_bench.models.runtimes.apply.prepare_runtime`; its ``prepare_s`` is printed apart).
Then eager and the runtime take turns (``--repeats`` rounds, median) on the same work, through
sam2's official ``SAM2ImagePredictor`` (the path every task's model interface goes through):
encode one embedded image and decode a 4 x 4 grid of clicks (16 prompts, one batch, 3 masks
each). Agreement is :mod:`sam_bench.models.agreement` on ``--items`` embedded images (the
``agreement_*`` metrics a job records). A runtime whose library is missing is skipped with
the reason (``pip install sam_bench[runtimes]``).

    .venv/bin/python benchmarks/bench_runtimes.py
    .venv/bin/python benchmarks/bench_runtimes.py --runtimes bf16 compile --sizes tiny
"""

from __future__ import annotations

import argparse
import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import Ratio, interleaved

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.errors import SamBenchError
from sam_bench.models.agreement import aggregate, compare_case, grid_case
from sam_bench.models.build import build_model
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.runtimes.apply import prepare_runtime
from sam_bench.preprocess import to_model_input

RUNTIMES = ("compile", "bf16", "onnxruntime", "transformers")
SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}


def model_config(size: str, runtime: str = "eager") -> ModelConfig:
    """sam2.1 ``size`` with random weights on ``runtime``."""
    return ModelConfig(
        name=f"sam2.1_hiera_{size}", family="sam2.1", size=size,
        sam2_config=f"configs/sam2.1/sam2.1_hiera_{SIZES[size]}.yaml",
        checkpoint_file="x.pt", url="http://127.0.0.1:9/x.pt", weights="random", runtime=runtime,
    )  # fmt: skip


def images(n: int) -> list[np.ndarray]:
    """The first ``n`` embedded synthetic images, converted as the tasks convert them."""
    root = Path(__file__).resolve().parents[1]
    ds = build_dataset(DatasetConfig(limit=n), root)
    out = []
    for ref in ds.refs():
        sample = ds.load(ref)
        assert sample.raw is not None
        out.append(to_model_input(sample.raw, PreprocessConfig())[0])
    return out


def _work(model: Any, image: np.ndarray) -> np.ndarray:
    """Encode ``image`` and decode the 4 x 4 click grid (official predictor)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    case = grid_case(image)
    predictor = SAM2ImagePredictor(model)
    with torch.inference_mode():
        predictor.set_image(image)
        masks, _, _ = predictor.predict(
            point_coords=case.point_coords, point_labels=case.point_labels, multimask_output=True
        )
    return np.asarray(masks)


def run(
    runtimes: tuple[str, ...] = RUNTIMES,
    sizes: tuple[str, ...] = ("tiny", "small"),
    repeats: int = 3,
    items: int = 2,
) -> list[Ratio]:
    """Prints and returns each runtime's speed ratio against eager, with its agreement."""
    device = torch.device("cpu")
    pictures = images(max(items, 1))
    rows: list[Ratio] = []
    print(f"{'size':<6} {'runtime':<13} {'prepare s':>9} {'eager s':>8} {'runtime s':>9} "
          f"{'ratio':>6}  agreement")  # fmt: skip
    for size in sizes:
        eager, _ = build_model(model_config(size), device, seed=0, progress=False)
        weights = state_dict_hash(eager.state_dict())
        for name in runtimes:
            try:
                prepared = prepare_runtime(
                    copy.deepcopy(eager), model_config(size, name), device, weights
                )
            except SamBenchError as e:
                print(f"{size:<6} {name:<13} skipped: {e}")
                continue
            subject = prepared.model
            variants: dict[str, Callable[[], Any]] = {
                "eager": functools.partial(_work, eager, pictures[0]),
                name: functools.partial(_work, subject, pictures[0]),
            }
            timed = interleaved(variants, repeats)
            cases = [compare_case(eager, subject, grid_case(p)) for p in pictures[:items]]
            agree = aggregate(cases)
            text = (
                f"mask IoU min {agree['agreement_mask_iou_min']:.4f} mean "
                f"{agree['agreement_mask_iou_mean']:.4f}, embed rel L2 "
                f"{agree['agreement_embed_rel_l2']:.2g}, logits max|d| "
                f"{agree['agreement_logits_max_abs']:.2g}"
            )
            row = Ratio(
                f"bench_runtimes: {size}", f"model.runtime={name}", "eager",
                timed[name][0], timed["eager"][0], "s", text,
                f"prepare {prepared.prepare_s:.1f} s",
            )  # fmt: skip
            rows.append(row)
            print(f"{size:<6} {name:<13} {prepared.prepare_s:>9.1f} {row.baseline_value:>8.2f} "
                  f"{row.subject_value:>9.2f} {row.ratio:>5.2f}x  {text}")  # fmt: skip
            del subject, prepared
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="*", default=list(RUNTIMES))
    parser.add_argument("--sizes", nargs="*", default=["tiny", "small"], choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=2, help="images compared for agreement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(tuple(args.runtimes), tuple(args.sizes), args.repeats, args.items)


if __name__ == "__main__":
    main()
