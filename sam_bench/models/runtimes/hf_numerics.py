"""transformers' ``Sam2Model`` computing sam2's bits (``model.runtime=transformers``,
``runtime_options.match_eager``, on by default).

With the same weights, transformers' SAM 2 gives sam2's image embeddings and two-way
transformer outputs bit for bit, but its mask logits differ by ~6e-7 (so, with random
weights whose logits crowd around 0, a pixel or two per prompt can land on the other side of
the mask threshold). Two places were found by comparing every submodule's output on the same
input (``tests/unit/test_runtime_transformers.py``):

* **Channels-first layer norms** (the mask decoder's ``upscale_layer_norm``, the prompt
  encoder's mask-input ``mask_embed.layer_norm1/2``): transformers permutes to channels-last
  and calls ``F.layer_norm``; sam2's ``LayerNorm2d`` computes mean and variance itself over the
  channel axis. :func:`match_sam2_numerics` puts sam2's ``LayerNorm2d`` in their place, holding
  the same ``weight`` / ``bias`` parameters (state-dict keys and values unchanged).
* **Hypernetwork / IoU / object-score MLPs**: sam2 calls them on 2-D ``(prompts, channels)``
  rows, transformers on 3-D ``(batch, point batch, channels)`` slices, which ``F.linear``
  computes as a matmul plus a separate bias add instead of one fused ``addmm``. A forward hook
  (:func:`_as_rows`) runs each such MLP on the 2-D view of its input, as sam2 does.

* **Memory layout of the image embeddings** entering the two-way transformer: sam2 adds the
  dense prompt embeddings to the image embeddings as they come (channels-last strides for one
  unbatched prompt, as ``SAM2ImagePredictor`` holds them), transformers repeats the sum per
  point batch, which makes it channels-first contiguous; the flattened keys then reach the
  attention projections with other strides, and the matmuls round differently. The decoder
  adapter hands its transformer sam2's sum (:attr:`HFMaskDecoder.sam2_layout`), which the hook
  :func:`_sam2_src` puts in place of transformers' after checking that the values are equal.

Nothing else changes: the weights, the modules' names and the other operations are
transformers' own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sam_bench.models.runtimes.hf_adapters import HFMaskDecoder

#: The mask decoder's MLPs that sam2 calls on 2-D rows.
ROW_MLPS = ("output_hypernetworks_mlps", "iou_prediction_head", "pred_obj_score_head")


def _as_rows(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    """Forward hook: ``module`` (a feed-forward block) recomputed on the 2-D
    ``(rows, channels)`` view of its 3-D-or-more input, the form sam2 calls it with (a small
    MLP on a few tokens: the second call costs next to nothing)."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.dim() <= 2:
        return output
    rows = module.forward(x.reshape(-1, x.shape[-1]))
    return rows.reshape(*x.shape[:-1], rows.shape[-1])


def _sam2_src(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Forward pre-hook of the decoder's two-way transformer: ``image_embeddings`` replaced
    by the adapter's ``sam2_src`` (sam2's memory layout) when the two hold equal values."""
    src = module.__dict__.pop("sam2_src", None)
    ours = kwargs.get("image_embeddings")
    if not isinstance(src, torch.Tensor) or not isinstance(ours, torch.Tensor):
        return None
    if src.shape != ours.shape or not torch.equal(src, ours):
        return None
    return args, {**kwargs, "image_embeddings": src}


def _channels_first_norms(model: nn.Module) -> list[tuple[nn.Module, str, nn.LayerNorm]]:
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.LayerNorm) and getattr(child, "data_format", None) == (
                "channels_first"
            ):
                found.append((parent, name, child))
    return found


def match_sam2_numerics(model: nn.Module, hf_model: nn.Module) -> list[str]:
    """Change ``hf_model`` (a transformers ``Sam2Model``, in place) and ``model`` (the sam2
    model whose components are now its adapters, by
    :func:`sam_bench.models.runtimes.hf_adapters.swap_components`) to compute sam2's bits
    (see the module docstring); returns what was changed, for the record."""
    from sam2.modeling.sam2_utils import LayerNorm2d

    changed: list[str] = []
    names = {id(m): n for n, m in hf_model.named_modules()}
    for parent, name, norm in _channels_first_norms(hf_model):
        sam2_norm = LayerNorm2d(int(norm.weight.shape[0]), eps=float(norm.eps))
        sam2_norm.weight, sam2_norm.bias = norm.weight, norm.bias
        setattr(parent, name, sam2_norm)
        prefix = names[id(parent)]
        changed.append(f"{prefix}.{name}: sam2 LayerNorm2d" if prefix else name)
    decoder: Any = getattr(hf_model, "mask_decoder")  # noqa: B009 (transformers module)
    for attr in ROW_MLPS:
        mlps = getattr(decoder, attr, None)
        if mlps is None:
            continue
        for mlp in mlps if isinstance(mlps, nn.ModuleList) else [mlps]:
            mlp.register_forward_hook(_as_rows)
        changed.append(f"mask_decoder.{attr}: called on 2-D rows")
    adapter = getattr(model, "sam_mask_decoder", None)
    if isinstance(adapter, HFMaskDecoder) and adapter.hf is decoder:
        transformer: Any = decoder.transformer
        transformer.register_forward_pre_hook(_sam2_src, with_kwargs=True)
        adapter.sam2_layout = True
        changed.append("mask_decoder.transformer: image embeddings in sam2's memory layout")
    return changed
