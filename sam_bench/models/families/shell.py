"""A sam2 ``SAM2Base`` "shell" whose prompt path runs a Hugging Face family model.

sam_bench's tasks talk to SAM 2 through sam2's own classes (``SAM2ImagePredictor``,
``SAM2AutomaticMaskGenerator``), which call a ``SAM2Base``'s ``image_encoder``,
``sam_prompt_encoder`` and ``sam_mask_decoder`` and read a few of its settings. The shell is
a ``SAM2Base`` instantiated from a sam2 model YAML (``model.sam2_config``) with those three
components replaced by adapters over the family model
(:mod:`sam_bench.models.runtimes.hf_adapters`) and its image-path settings made the family's:

* ``no_mem_embed``: the family model's ``no_memory_embedding`` (``directly_add_no_mem_embed``
  stays true: HF adds it to the lowest-resolution level as sam2 does);
* ``image_size`` / ``backbone_stride``: the family's input size and patch stride (1024 / 16
  for EdgeTAM, 1008 / 14 for SAM 3), so ``sam_image_embedding_size`` and the predictor's
  resize match; ``use_high_res_features_in_sam`` true and ``num_feature_levels`` 3 (every HF
  family model decodes with two high-resolution levels);
* :attr:`bb_feat_sizes`: the three FPN level sizes (``SAM2ImagePredictor`` hard-codes 1024's:
  see :func:`fit_image_predictor`).

What the shell does not replace (memory encoder, memory attention, object pointers) is the
YAML's random sam2 modules: the shell serves image tasks only.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sam_bench.models.runtimes.hf_adapters import swap_components

#: sam2's ``SAM2Transforms`` normalisation (ImageNet), applied by the official predictor.
SAM2_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM2_PIXEL_STD = (0.229, 0.224, 0.225)


def feature_sizes(hf_model: Any) -> list[tuple[int, int]]:
    """The family's FPN level sizes, high to low resolution (``backbone_feature_sizes``)."""
    sizes = hf_model.config.vision_config.backbone_feature_sizes
    return [(int(h), int(w)) for h, w in sizes]


def build_shell(
    hf_model: Any,
    conf: Any,
    *,
    image_size: int,
    backbone_stride: int,
    pixel_mean: tuple[float, float, float] = SAM2_PIXEL_MEAN,
    pixel_std: tuple[float, float, float] = SAM2_PIXEL_STD,
) -> torch.nn.Module:
    """A ``SAM2Base`` built from the resolved sam2 model config ``conf`` whose prompt path
    runs ``hf_model`` (eval mode). ``pixel_mean`` / ``pixel_std``: the family's input
    normalisation (the adapter turns the predictor's ImageNet-normalised input into it).
    The decoder's dynamic multimask settings are taken from ``conf``
    (``model.apply_postprocessing``), not from the hub config."""
    conf = OmegaConf.create(OmegaConf.to_container(conf, resolve=True))
    OmegaConf.update(conf, "model.image_size", image_size, force_add=True)
    OmegaConf.update(conf, "model.backbone_stride", backbone_stride, force_add=True)
    OmegaConf.update(conf, "model.use_high_res_features_in_sam", True, force_add=True)
    OmegaConf.update(conf, "model.directly_add_no_mem_embed", True, force_add=True)
    shell: Any = instantiate(conf.model, _recursive_=True)
    extra = conf.model.get("sam_mask_decoder_extra_args") or {}
    dec = hf_model.mask_decoder
    dec.dynamic_multimask_via_stability = bool(extra.get("dynamic_multimask_via_stability", False))
    dec.dynamic_multimask_stability_delta = float(
        extra.get("dynamic_multimask_stability_delta", 0.05)
    )
    dec.dynamic_multimask_stability_thresh = float(
        extra.get("dynamic_multimask_stability_thresh", 0.98)
    )
    renorm = None
    if tuple(pixel_mean) != SAM2_PIXEL_MEAN or tuple(pixel_std) != SAM2_PIXEL_STD:
        renorm = (SAM2_PIXEL_MEAN, SAM2_PIXEL_STD, tuple(pixel_mean), tuple(pixel_std))
    swap_components(shell, hf_model, renorm=renorm)
    shell.no_mem_embed = torch.nn.Parameter(hf_model.no_memory_embedding.detach().clone())
    shell.bb_feat_sizes = feature_sizes(hf_model)
    shell.hf_model_class = type(hf_model).__name__
    return shell.eval()
