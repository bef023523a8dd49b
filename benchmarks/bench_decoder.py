"""sam2's mask decoder vs the fast engine's sliced decoder, side by side in one run.

One batch of point prompts on one embedded image (sam2.1 tiny, random weights, CPU), decoded
by the upstream ``MaskDecoder`` and by :class:`sam_bench.engines.decoder.SlicedMaskDecoder`
with several slice sizes. Prints each one's median time over ``--repeats`` runs, its speedup
over upstream, and whether its output is bit-identical (it must be). The fastest slice size
is the one to put in ``CPU_SLICE_SIZE``.

It also prints how close the decoder comes to the machine's fp32 matrix throughput: the
decoder's floating-point operations are counted by ``torch.utils.flop_counter`` (matrix
products and convolutions; element-wise work is not counted), divided by its time, and set
against a plain ``torch.mm`` of the decoder's own largest shapes (the image tokens of one
slice through a 256x128 projection), timed in the same run.

    .venv/bin/python benchmarks/bench_decoder.py                  # 64 prompts, slices 2 3 4 8
    .venv/bin/python benchmarks/bench_decoder.py --prompts 32 --sizes 2 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import Ratio
from torch.utils.flop_counter import FlopCounterMode

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.decoder import SlicedMaskDecoder
from sam_bench.models.build import build_model
from sam_bench.preprocess import to_model_input


def matmul_peak(rows: int, repeats: int) -> float:
    """GFLOP/s of a plain fp32 ``torch.mm`` of the decoder's largest shapes (``rows`` image
    tokens through 256 -> 128 and 128 -> 256 projections), best of ``repeats``."""
    best = 0.0
    for k, n in ((256, 128), (128, 256)):
        a, b = torch.randn(rows, k), torch.randn(k, n)
        torch.mm(a, b)
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                torch.mm(a, b)
            best = max(best, 10 * 2 * rows * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def run(prompts: int = 64, sizes: tuple[int, ...] = (2, 3, 4, 8), repeats: int = 3) -> list[Ratio]:
    """Prints the comparison; returns the best slice size against upstream, and the
    decoder's GFLOP/s against the plain matmul's."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        checkpoint_file="x.pt", url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    model: Any
    model, _ = build_model(cfg, torch.device("cpu"), seed=0, progress=False)
    root = Path(__file__).resolve().parents[1]
    ds = build_dataset(DatasetConfig(limit=1), root)
    raw = ds.load(ds.refs()[0]).raw
    assert raw is not None
    image = to_model_input(raw, PreprocessConfig())[0]
    predictor = SAM2ImagePredictor(model)
    h, w = image.shape[:2]
    n = prompts
    side = int(np.ceil(np.sqrt(n)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2)[:n]
    pts = torch.as_tensor((grid + 0.5) / side * [w, h], dtype=torch.float32)
    with torch.inference_mode():
        predictor.set_image(image)
        coords = predictor._transforms.transform_coords(pts, normalize=True, orig_hw=(h, w))
        labels = torch.ones(n, dtype=torch.int)
        sparse, dense = model.sam_prompt_encoder(
            points=(coords[:, None], labels[:, None]), boxes=None, masks=None
        )
        feats = predictor._features
        kwargs = {
            "image_embeddings": feats["image_embed"][-1].unsqueeze(0),
            "image_pe": model.sam_prompt_encoder.get_dense_pe(),
            "sparse_prompt_embeddings": sparse,
            "dense_prompt_embeddings": dense,
            "multimask_output": True,
            "high_res_features": [f[-1].unsqueeze(0) for f in feats["high_res_feats"]],
        }

        def upstream() -> torch.Tensor:
            out: torch.Tensor = model.sam_mask_decoder(repeat_image=True, **kwargs)[0]
            return out

        def sliced(dec: SlicedMaskDecoder) -> Callable[[], torch.Tensor]:
            return lambda: dec(**kwargs)[0]

        runs: dict[str, Callable[[], torch.Tensor]] = {"upstream": upstream}
        for size in sizes:
            runs[f"sliced, {size} prompts per slice"] = sliced(
                SlicedMaskDecoder(model.sam_mask_decoder, size)
            )
        times: dict[str, list[float]] = {k: [] for k in runs}
        outs: dict[str, torch.Tensor] = {}
        for _ in range(repeats):  # interleaved, so load changes hit every variant alike
            for name, fn in runs.items():
                t0 = time.perf_counter()
                outs[name] = fn()
                times[name].append(time.perf_counter() - t0)
        with FlopCounterMode(display=False) as counter:
            upstream()
        flops = counter.get_total_flops()
    base = statistics.median(times["upstream"])
    print(f"mask decoder, {n} prompts, one {w}x{h} image, {torch.get_num_threads()} threads")
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, t in medians.items():
        same = torch.equal(outs[name], outs["upstream"])
        print(f"  {name:<34} {t:7.2f} s   {base / t:5.2f}x   bit-identical: {same}")
    best = min((k for k in medians if k != "upstream"), key=medians.__getitem__)
    best_size = sizes[list(medians).index(best) - 1]
    peak = matmul_peak(best_size * 4096, repeats)
    rate = flops / medians[best] / 1e9
    print(
        f"  {flops / 1e9:.1f} GFLOP counted ({flops / n / 1e9:.2f} per prompt): {best} at "
        f"{rate:.1f} GFLOP/s, upstream at {flops / base / 1e9:.1f}; plain fp32 matmul of the "
        f"same sizes: {peak:.1f} GFLOP/s -> {rate / peak:.0%} of it"
    )
    identical = torch.equal(outs[best], outs["upstream"])
    return [
        Ratio(
            f"bench_decoder: {n} prompts", best, "sam2 MaskDecoder (upstream)", medians[best],
            base, "s", f"bit-identical: {identical}",
        ),
        Ratio(
            f"bench_decoder: {n} prompts", f"{best} (GFLOP/s)", "plain fp32 matmul, same sizes",
            rate, peak, "GFLOP/s", "", ">= 50%",
        ),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64, help="prompts in the batch")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run(args.prompts, tuple(args.sizes), args.repeats)


if __name__ == "__main__":
    main()
