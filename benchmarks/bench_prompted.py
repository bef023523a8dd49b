"""Prompts per second: the prompted task's batched path vs the official predictor called
instance by instance, side by side in one run.

One embedded image with many objects (``dense_small_00``: 76 instances; sam2.1 tiny, random
weights, CPU), encoded once. For the first ``--instances`` instances, every variant decodes the
same prompts against that embedding -- first clicks (3 masks each) and tight boxes (1 mask):

* ``official, one by one``: ``SAM2ImagePredictor.predict`` once per instance (a plain loop);
* ``sam_bench, batches of B``: :class:`sam_bench.tasks.prompted.decoder.PromptDecoder` in batches of
  ``--batch-size`` (``prompt.batch_size``), as the prompted task runs it;
* ``sam_bench exact``: the same batches through the bit-identical sliced decoder
  (``prompt.decoder=exact``); ``sam_bench factored``: the default ``prompt.decoder=factored``;
* ``official, one batch``: every instance in one ``predict`` call.

Cases: first clicks (3 masks each), tight boxes (1 mask), and a second NoC round (the first
click plus a negative click, the first round's best low-res logits fed back as ``mask_input``,
1 mask).

Each variant's time is the median over ``--repeats`` rounds of the whole set of calls (prompt
preparation, prompt encoder, mask decoder, upsampling and thresholding: what ``predict``
does); the variants take turns within a round. Prints prompts per second, ratios, and the
smallest mask IoU between sam_bench's masks and the one-by-one masks (>= 0.999: a prompt alone
and in a batch differ by ~4e-7).

    .venv/bin/python benchmarks/bench_prompted.py                      # 32 instances
    .venv/bin/python benchmarks/bench_prompted.py --instances 64 --batch-size 32
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import Ratio, interleaved
from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.models.build import build_model
from sam_bench.models.image_predictor import image_predictor
from sam_bench.preprocess import to_model_input
from sam_bench.prompts.boxes import tight_box
from sam_bench.prompts.clicks import first_click
from sam_bench.tasks.prompted.decoder import PromptDecoder
from sam_bench.tasks.prompted.metrics import mask_iou

#: The baseline: what a user of the official predictor writes for many instances.
BASELINE = "official, one by one"


def run(instances: int = 32, batch_size: int = 16, repeats: int = 3) -> list[Ratio]:
    """Prints the comparison and returns sam_bench's batched path against the one-by-one
    loop, for clicks and boxes."""

    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        checkpoint_file="x.pt", url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    model: Any
    model, _ = build_model(cfg, torch.device("cpu"), seed=0, progress=False)
    root = Path(__file__).resolve().parents[1]
    ds = build_dataset(DatasetConfig(scenes=["dense_small"], limit=1), root)
    sample = ds.load(ds.refs()[0])
    assert sample.raw is not None and sample.gt is not None
    image = to_model_input(sample.raw, PreprocessConfig())[0]
    masks = [np.asarray(mask_utils.decode(r), dtype=bool) for r in sample.gt.rles]
    masks = masks[:instances]
    n = len(masks)
    clicks = [first_click(m) for m in masks]
    coords = np.array([[[c.x, c.y]] for c in clicks], dtype=np.float64)  # type: ignore[union-attr]
    labels = np.ones((n, 1), dtype=np.int64)
    boxes = np.stack([tight_box(m) for m in masks])  # type: ignore[misc]

    decoder = PromptDecoder(model, torch.device("cpu"))
    decoder.set_image(image, [])
    predictor = image_predictor(model)  # the official predictor, the same (bit-identical)
    predictor.set_image(image)  # embedding as the decoder's ImageFeatures
    bs = batch_size
    print(
        f"{n} instances of {sample.ref.path.name}, sam2.1 tiny (random weights), CPU, "
        f"{torch.get_num_threads()} threads, median of {repeats} runs"
    )
    rows: list[Ratio] = []
    print(f"{'prompts':<8} {'variant':<36} {'seconds':>8} {'prompts/s':>10} {'vs one by one':>14}")
    # A second NoC round: the first click plus a negative click (the box's top-left corner,
    # outside most masks), with the first round's best low-res logits fed back as mask_input.
    with torch.inference_mode():
        first = [predictor.predict(coords[i], labels[i], multimask_output=True) for i in range(n)]
    logits = np.stack([lr[int(np.argmax(iou))][None] for _, iou, lr in first])  # n x 1 x 256 x 256
    corner = boxes[:, None, :2].astype(np.float64)
    coords2 = np.concatenate([coords, corner], axis=1)
    labels2 = np.concatenate([labels, np.zeros((n, 1), dtype=np.int64)], axis=1)
    round2 = {"point_coords": coords2, "point_labels": labels2, "mask_input": logits}
    for name, prompts, multimask in (
        ("click", {"point_coords": coords, "point_labels": labels}, True),
        ("box", {"box": boxes}, False),
        ("NoC round 2", round2, False),
    ):

        def one_by_one(p: dict[str, np.ndarray] = prompts, mm: bool = multimask) -> list[Any]:
            return [
                predictor.predict(multimask_output=mm, **{k: v[i : i + 1] for k, v in p.items()})[0]
                for i in range(n)
            ]

        def one_batch(p: dict[str, np.ndarray] = prompts, mm: bool = multimask) -> Any:
            return predictor.predict(multimask_output=mm, **p)[0]

        def ours(
            p: dict[str, np.ndarray] = prompts,
            mm: bool = multimask,
            size: int = bs,
            factored: bool = False,
        ) -> list[np.ndarray]:
            out: list[np.ndarray] = []
            for s in range(0, n, size):
                batch = {k: v[s : s + size] for k, v in p.items()}
                out.extend(decoder.decode(multimask_output=mm, factored=factored, **batch).masks)
            return out

        mine = f"sam_bench factored, batches of {bs}"
        exact = f"sam_bench exact, batches of {bs}"
        with torch.inference_mode():
            one_by_one()  # warm-up of every shape
            ours()
            ours(factored=True)
            results = interleaved(
                {
                    BASELINE: one_by_one,
                    mine: lambda: ours(factored=True),
                    exact: ours,
                    "official, one batch": one_batch,
                },
                repeats,
            )
        base = results[BASELINE][0]
        for label, (secs, _) in results.items():
            print(f"{name:<8} {label:<36} {secs:8.2f} {n / secs:10.2f} {base / secs:13.2f}x")
        singles = results[BASELINE][1]
        for variant in (mine, exact):
            batched = results[variant][1]
            worst = min(
                mask_iou(batched[i][c], singles[i][c] > 0)
                for i in range(n)
                for c in range(batched[i].shape[0])
            )
            print(f"{name:<8} smallest mask IoU, {variant} vs one by one: {worst:.6f}")
            rows.append(
                Ratio(
                    f"bench_prompted: {name}, {n} instances", variant,
                    "official predict(), one prompt at a time", results[variant][0], base, "s",
                    f"min mask IoU {worst:.6f}", ">= 2x",
                )
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=32, help="instances prompted")
    parser.add_argument("--batch-size", type=int, default=16, help="sam_bench's prompt.batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args.instances, args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
