"""``model.runtime=onnxruntime`` vs eager PyTorch, side by side in one run (CPU).

sam2.1 tiny with random weights, one embedded image at 1024x1024. The same model twice: eager
and a copy prepared by :class:`sam_bench.models.runtimes.onnx.OnnxRuntime` (the export is
timed apart, then reused from the cache). Two stages, the variants taking turns:

* encoder: ``model.forward_image`` (image encoder + the decoder's two high-res convolutions);
* decoder: a batch of point prompts through the prompt encoder and the mask decoder, as
  ``SAM2ImagePredictor`` calls them (``repeat_image=True``, three masks per prompt).

Torch and ONNX Runtime get the same thread count (``--threads``, default 1). Prints the median
times, the ratios and the outputs' agreement (max abs difference).

    .venv/bin/python benchmarks/bench_runtime_onnx.py
    .venv/bin/python benchmarks/bench_runtime_onnx.py --prompts 16 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import Ratio, interleaved, table

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.models.build import build_model
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.runtimes.base import RuntimeOptions
from sam_bench.models.runtimes.onnx import OnnxRuntime
from sam_bench.preprocess import to_model_input

MODEL = ModelConfig(
    name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
    sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
    url="http://127.0.0.1:9/x.pt", weights="random",
)  # fmt: skip


def _decode(model: Any, features: dict[str, Any], coords: torch.Tensor) -> torch.Tensor:
    labels = torch.ones(coords.shape[:2], dtype=torch.int32)
    sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    low_res, _, _, _ = model.sam_mask_decoder(
        image_embeddings=features["embed"], image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
        repeat_image=True, high_res_features=features["high_res"],
    )  # fmt: skip
    return low_res


def _features(model: Any, image: torch.Tensor) -> dict[str, Any]:
    out = model.forward_image(image)
    _, feats, _, _ = model._prepare_backbone_features(out)
    feats[-1] = feats[-1] + model.no_mem_embed
    maps = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in
            zip(feats, [(256, 256), (128, 128), (64, 64)], strict=True)]  # fmt: skip
    return {"embed": maps[-1], "high_res": maps[:-1], "fpn0": out["backbone_fpn"][0]}


def run(prompts: int = 64, repeats: int = 3, threads: int = 1) -> list[Ratio]:
    torch.set_num_threads(threads)
    eager, _ = build_model(MODEL, torch.device("cpu"), seed=0, progress=False)
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    loaded = ds.load(ds.refs()[0]).raw
    assert loaded is not None
    raw = to_model_input(loaded, PreprocessConfig())[0]
    image = torch.nn.functional.interpolate(
        torch.as_tensor(raw).permute(2, 0, 1)[None].float() / 255, size=(1024, 1024)
    )
    with tempfile.TemporaryDirectory() as cache:
        opts = RuntimeOptions(
            weights_hash=state_dict_hash(eager.state_dict())[:16], cache_dir=Path(cache),
            options={"intra_op_threads": threads},
        )  # fmt: skip
        first = OnnxRuntime().prepare(copy.deepcopy(eager), torch.device("cpu"), opts)
        again = OnnxRuntime().prepare(copy.deepcopy(eager), torch.device("cpu"), opts)
        print(f"export {first.details['export_s']:.1f} s (prepare {first.prepare_s:.1f} s); "
              f"from the cache: prepare {again.prepare_s:.1f} s")  # fmt: skip
        onnx = first.model
        coords = torch.rand(prompts, 1, 2, generator=torch.Generator().manual_seed(0)) * 1024
        with torch.inference_mode():
            enc = interleaved(
                {"eager": lambda: _features(eager, image), "onnx": lambda: _features(onnx, image)},
                repeats,
            )
            fe, fo = enc["eager"][1], enc["onnx"][1]
            dec = interleaved(
                {"eager": lambda: _decode(eager, fe, coords),
                 "onnx": lambda: _decode(onnx, fe, coords)},
                repeats,
            )  # fmt: skip
    emb = float((fe["embed"] - fo["embed"]).abs().max())
    logits = float((dec["eager"][1] - dec["onnx"][1]).abs().max())
    flips = int(((dec["eager"][1] > 0) != (dec["onnx"][1] > 0)).sum())
    name = f"bench_runtime_onnx ({threads} thread(s))"
    return [
        Ratio(f"{name}: encoder", "onnxruntime", "eager", enc["onnx"][0], enc["eager"][0], "s",
              f"embedding max diff {emb:.1e}"),
        Ratio(f"{name}: decoder, {prompts} prompts", "onnxruntime", "eager", dec["onnx"][0],
              dec["eager"][0], "s", f"logits max diff {logits:.1e}, {flips} mask pixels differ"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    print(table(run(args.prompts, args.repeats, args.threads)))


if __name__ == "__main__":
    main()
