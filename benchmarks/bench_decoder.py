"""sam2's mask decoder vs sam_bench's decoders, side by side in one run, and how close they come
to the machine's fp32 matrix throughput.

One batch of point prompts on one embedded image (sam2.1 tiny, random weights, CPU), decoded
by the upstream ``MaskDecoder`` and by

* :class:`sam_bench.engines.decoder.SlicedMaskDecoder` with several slice sizes, the first
  layer's image-side terms cached as the engines use it (computed by the first call on the
  image, reused by every later batch: :mod:`sam_bench.engines.image_side`), and with the best
  slice size once more with those terms computed in every call (``image side per batch``);
* :class:`sam_bench.engines.factored_decoder.FactoredMaskDecoder` (the prompted task's default),
  best slice size, terms cached.

Prints each one's median time over ``--repeats`` interleaved runs, its speedup over upstream,
and its agreement (the sliced decoder must be bit-identical; the factored one within ~1e-5).

Throughput: each variant's own floating-point operations are counted by
``torch.utils.flop_counter`` (matrix products, attention, convolutions; element-wise work is not
counted) and divided by its time; the "upstream-equivalent" rate divides upstream's count
instead (work avoided counts as done). Both are set against a plain ``torch.mm`` of the
decoder's largest shapes (the image tokens of one slice through a 256x128 projection), timed in
the same run. A ``torch.profiler`` table of the fastest exact variant then shows where its time
goes (``--profile-rows``): the operators, their input shapes and share of the time, which
tells what keeps it from the matmul peak.

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
from sam_bench.engines.factored_decoder import FactoredMaskDecoder
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


def run(
    prompts: int = 64,
    sizes: tuple[int, ...] = (2, 3, 4, 8),
    repeats: int = 3,
    profile_rows: int = 12,
) -> list[Ratio]:
    """Prints the comparison; returns the best sliced decoder and the factored one against
    upstream, and the best one's GFLOP/s against the plain matmul's."""
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

        def call(dec: SlicedMaskDecoder, fresh: bool = False) -> Callable[[], torch.Tensor]:
            def fn() -> torch.Tensor:
                if fresh:  # the image-side terms computed again, as for a new image
                    dec.image_side.clear()
                return dec(**kwargs)[0]

            return fn

        runs: dict[str, Callable[[], torch.Tensor]] = {"upstream": upstream}
        decoders: dict[str, SlicedMaskDecoder] = {}
        for size in sizes:
            name = f"sliced, {size} prompts per slice"
            decoders[name] = SlicedMaskDecoder(model.sam_mask_decoder, size)
            runs[name] = call(decoders[name])
        times = _interleaved(runs, repeats)
        best = min((k for k in times if k != "upstream"), key=lambda k: statistics.median(times[k]))
        best_size = decoders[best].slice_size
        more: dict[str, Callable[[], torch.Tensor]] = {"upstream": upstream, best: runs[best]}
        per_batch = f"sliced, {best_size}, image side per batch"
        more[per_batch] = call(SlicedMaskDecoder(model.sam_mask_decoder, best_size), fresh=True)
        factored = f"factored, {best_size} per slice"
        decoders[factored] = FactoredMaskDecoder(model.sam_mask_decoder, best_size)
        more[factored] = call(decoders[factored])
        for name, ts in _interleaved(more, repeats).items():
            times[name] = times.get(name, []) + ts
        outs = {name: fn() for name, fn in {**runs, **more}.items()}
        flops = {name: _flops(fn) for name, fn in {**runs, **more}.items()}
        profile = _profile(runs[best], profile_rows) if profile_rows else ""
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["upstream"]
    ref = outs["upstream"]
    peak = matmul_peak(best_size * 4096, repeats)
    print(
        f"mask decoder, {n} prompts, one {w}x{h} image, {torch.get_num_threads()} threads; "
        f"plain fp32 matmul of the decoder's largest shapes: {peak:.1f} GFLOP/s"
    )
    print(f"  {'variant':<36} {'seconds':>7} {'vs upstream':>11} {'GFLOP':>6} {'GFLOP/s':>8} "
          f"{'of peak':>7} {'equiv.':>7}   agreement")  # fmt: skip
    for name, t in medians.items():
        diff = (outs[name] - ref).abs().max().item()
        agree = "bit-identical" if torch.equal(outs[name], ref) else f"max |diff| {diff:.1e}"
        rate = flops[name] / t / 1e9
        print(
            f"  {name:<36} {t:7.2f} {base / t:10.2f}x {flops[name] / 1e9:6.1f} {rate:8.1f} "
            f"{rate / peak:7.0%} {flops['upstream'] / t / 1e9 / peak:7.0%}   {agree}"
        )
    if profile:
        print(f"where {best}'s time goes (torch.profiler, self CPU time):")
        print(profile)
    rate = flops[best] / medians[best] / 1e9
    identical = torch.equal(outs[best], ref)
    return [
        Ratio(
            f"bench_decoder: {n} prompts", best, "sam2 MaskDecoder (upstream)", medians[best],
            base, "s", f"bit-identical: {identical}",
        ),
        Ratio(
            f"bench_decoder: {n} prompts", factored, "sam2 MaskDecoder (upstream)",
            medians[factored], base, "s", f"max |diff| {(outs[factored] - ref).abs().max():.1e}",
        ),
        Ratio(
            f"bench_decoder: {n} prompts", f"{best} (own GFLOP/s)", "plain fp32 matmul, same sizes",
            rate, peak, "GFLOP/s", "", ">= 50%",
        ),
    ]  # fmt: skip


def _interleaved(
    runs: dict[str, Callable[[], torch.Tensor]], repeats: int
) -> dict[str, list[float]]:
    """Seconds of each run per round, the runs taking turns (a busy machine slows them alike);
    one untimed warm-up round first (it also fills the image-side caches)."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _flops(fn: Callable[[], torch.Tensor]) -> int:
    """Floating-point operations of one call, counted by ``torch.utils.flop_counter``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _profile(fn: Callable[[], torch.Tensor], rows: int) -> str:
    """The top ``rows`` operators of one call by self CPU time, with their input shapes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    table: str = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=28,
        max_shapes_column_width=70,
    )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64, help="prompts in the batch")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile-rows", type=int, default=12, help="0: no profile")
    args = parser.parse_args()
    run(args.prompts, tuple(args.sizes), args.repeats, args.profile_rows)


if __name__ == "__main__":
    main()
