"""Official SAM 2 / 2.1 weights -> Hugging Face ``transformers`` ``Sam2Model`` (image path).

transformers' wheel does not ship its SAM 2 conversion script, so the key mapping lives here.
:func:`hf_config_from_yaml` builds the ``Sam2Config`` matching one of sam2's model YAMLs
(``configs/sam2.1/sam2.1_hiera_t.yaml``...; the trunk's unset arguments take ``Hiera``'s own
defaults), :func:`hf_config_from_model` the same from a built ``SAM2Base``, and
:func:`convert_state_dict` renames (and, for the point embeddings, stacks) the official tensors.
Every key of ``Sam2Model`` is produced (0 missing, 0 unexpected); the official keys that
``Sam2Model`` has no place for are the video memory parts (:data:`VIDEO_ONLY_PREFIXES`), which
a runtime leaves eager.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch

#: Official keys with no counterpart in ``Sam2Model`` (memory encoder / attention, object
#: pointers: the video path, which stays eager).
VIDEO_ONLY_PREFIXES: tuple[str, ...] = (
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "mask_downsample.",
    "memory_attention.",
    "memory_encoder.",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
)

#: Number of layers of the ``MLP`` modules whose ``layers.i`` become ``proj_in`` /
#: ``layers.(i-1)`` / ``proj_out`` in transformers' ``Sam2FeedForward``.
_MLP_DEPTH: dict[str, int] = {
    "output_hypernetworks_mlps": 3,
    "iou_prediction_head": 3,
    "pred_obj_score_head": 3,
}

# (pattern, replacement) applied in order to the official name (after the prefix rename).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"patch_embed\.proj\.", "patch_embed.projection."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"\.out_proj\.", ".o_proj."),
    # two-layer MLPs (Hiera blocks, two-way transformer blocks)
    (r"\.mlp\.layers\.0\.", ".mlp.proj_in."),
    (r"\.mlp\.layers\.1\.", ".mlp.proj_out."),
    (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
)

_PE = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_POINT = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")
_MLP = re.compile(r"^(.*\.(" + "|".join(_MLP_DEPTH) + r")(?:\.\d+)?)\.layers\.(\d+)\.(.*)$")


def is_video_only(key: str) -> bool:
    """Whether an official key belongs to the video memory path (no ``Sam2Model`` place)."""
    return key.startswith(VIDEO_ONLY_PREFIXES)


def _rename(key: str) -> str:
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    m = _MLP.match(key)
    if m:
        head, kind, idx, rest = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        depth = _MLP_DEPTH[kind]
        layer = "proj_in" if idx == 0 else "proj_out" if idx == depth - 1 else f"layers.{idx - 1}"
        key = f"{head}.{layer}.{rest}"
    return key


def convert_state_dict(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``Sam2Model`` state dict holding the official image-path tensors (values shared,
    not copied, except the stacked point embeddings); video-only keys are dropped. Raises
    ``KeyError`` for an official key this mapping does not know."""
    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    for key, value in official.items():
        if is_video_only(key):
            continue
        if key == _PE:
            out["prompt_encoder.shared_embedding.positional_embedding"] = value
            # a copy: transformers keeps the two apart (save_pretrained refuses shared tensors)
            out["shared_image_embedding.positional_embedding"] = value.clone()
            continue
        m = _POINT.match(key)
        if m:
            points[int(m.group(1))] = value
            continue
        new = _rename(key)
        if new == key:
            raise KeyError(f"no transformers name for official key {key!r}")
        out[new] = value
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.cat(
            [points[i] for i in sorted(points)], dim=0
        )
    return out


def official_state_dict(
    official: dict[str, torch.Tensor], hf: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`convert_state_dict`: ``official`` (a ``SAM2Base`` state dict)
    with every image-path tensor taken from ``hf`` (a ``Sam2Model`` state dict) under its
    official name; the video-only keys keep ``official``'s values. Raises ``KeyError`` for a
    tensor ``hf`` lacks and ``ValueError`` when ``hf`` holds weights sam2 cannot (its two
    copies of the random positional-encoding matrix differ: sam2 has one)."""
    pe_prompt = hf["prompt_encoder.shared_embedding.positional_embedding"]
    pe_image = hf["shared_image_embedding.positional_embedding"]
    if not torch.equal(pe_prompt, pe_image):
        raise ValueError(
            "the transformers model's two positional-encoding matrices differ "
            "(sam2 has one: sam_prompt_encoder.pe_layer)"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        if is_video_only(key):
            out[key] = value
        elif key == _PE:
            out[key] = pe_prompt
        elif m := _POINT.match(key):
            i = int(m.group(1))
            out[key] = hf["prompt_encoder.point_embed.weight"][i : i + 1]
        else:
            out[key] = hf[_rename(key)]
    return out


def _trunk_settings(trunk: dict[str, Any]) -> dict[str, Any]:
    """The ``Hiera`` arguments of a model YAML's trunk node, unset ones at ``Hiera``'s
    defaults (read from its signature, so they follow the installed sam2)."""
    from sam2.modeling.backbones.hieradet import Hiera

    params = inspect.signature(Hiera.__init__).parameters
    settings = {k: p.default for k, p in params.items() if k != "self"}
    settings.update({k: v for k, v in trunk.items() if k != "_target_"})
    return settings


def _build_config(
    *,
    embed_dim: int,
    num_heads: int,
    stages: list[int],
    dims: list[int],
    heads: list[int],
    window_spec: list[int],
    global_att_blocks: list[int],
    bkg_size: list[int],
    q_pool: int,
    q_stride: list[int],
    channel_list: list[int],
    fpn_top_down_levels: list[int],
    d_model: int,
    image_size: int,
    decoder: dict[str, Any],
) -> Any:
    from transformers import Sam2Config

    return Sam2Config(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": embed_dim,
                "num_attention_heads": num_heads,
                "image_size": [image_size, image_size],
                "blocks_per_stage": list(stages),
                "embed_dim_per_stage": list(dims),
                "num_attention_heads_per_stage": list(heads),
                "window_size_per_stage": list(window_spec),
                "global_attention_blocks": list(global_att_blocks),
                "window_positional_embedding_background_size": list(bkg_size),
                "num_query_pool_stages": int(q_pool),
                "query_stride": list(q_stride),
            },
            "backbone_channel_list": list(channel_list),
            "backbone_feature_sizes": [[image_size // s, image_size // s] for s in (4, 8, 16)],
            "fpn_hidden_size": d_model,
            "fpn_top_down_levels": list(fpn_top_down_levels),
            "num_feature_levels": 3,
        },
        prompt_encoder_config={"hidden_size": d_model, "image_size": image_size, "patch_size": 16},
        mask_decoder_config={"hidden_size": d_model, **decoder},
    )


def _decoder_settings(extra: dict[str, Any]) -> dict[str, Any]:
    """``sam_mask_decoder_extra_args`` -> ``Sam2MaskDecoderConfig`` (sam2's defaults: no
    dynamic multimask)."""
    return {
        "dynamic_multimask_via_stability": bool(
            extra.get("dynamic_multimask_via_stability", False)
        ),
        "dynamic_multimask_stability_delta": float(
            extra.get("dynamic_multimask_stability_delta", 0.05)
        ),
        "dynamic_multimask_stability_thresh": float(
            extra.get("dynamic_multimask_stability_thresh", 0.98)
        ),
    }


def hf_config_from_yaml(conf: Any) -> Any:
    """The ``Sam2Config`` of a sam2 model config (OmegaConf of ``configs/sam2*/...yaml``,
    possibly with ``build_sam2``'s post-processing overrides applied)."""
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(conf.model, resolve=True)
    assert isinstance(model, dict)
    trunk = _trunk_settings(model["image_encoder"]["trunk"])
    neck = model["image_encoder"]["neck"]
    if int(model["image_encoder"].get("scalp", 0)) != 1:
        raise ValueError("transformers' Sam2Model assumes image_encoder.scalp=1")
    stages = list(trunk["stages"])
    dims = [int(trunk["embed_dim"] * trunk["dim_mul"] ** i) for i in range(len(stages))]
    heads = [int(trunk["num_heads"] * trunk["head_mul"] ** i) for i in range(len(stages))]
    return _build_config(
        embed_dim=int(trunk["embed_dim"]),
        num_heads=int(trunk["num_heads"]),
        stages=stages,
        dims=dims,
        heads=heads,
        window_spec=list(trunk["window_spec"]),
        global_att_blocks=list(trunk["global_att_blocks"]),
        bkg_size=list(trunk["window_pos_embed_bkg_spatial_size"]),
        q_pool=int(trunk["q_pool"]),
        q_stride=list(trunk["q_stride"]),
        channel_list=list(neck["backbone_channel_list"]),
        fpn_top_down_levels=list(neck["fpn_top_down_levels"]),
        d_model=int(neck["d_model"]),
        image_size=int(model.get("image_size", 1024)),
        decoder=_decoder_settings(model.get("sam_mask_decoder_extra_args") or {}),
    )


def hf_config_from_model(model: torch.nn.Module) -> Any:
    """The ``Sam2Config`` of a built sam2 ``SAM2Base`` (read from its modules)."""
    encoder: Any = model.image_encoder
    trunk: Any = encoder.trunk
    neck: Any = encoder.neck
    dec: Any = model.sam_mask_decoder
    if int(encoder.scalp) != 1:
        raise ValueError("transformers' Sam2Model assumes image_encoder.scalp=1")
    ends = list(trunk.stage_ends)
    stages = [e - s for s, e in zip([-1, *ends[:-1]], ends, strict=True)]
    blocks = trunk.blocks
    return _build_config(
        embed_dim=int(blocks[0].dim),
        num_heads=int(blocks[0].attn.num_heads),
        stages=stages,
        dims=[int(blocks[e].dim_out) for e in ends],
        heads=[int(blocks[e].attn.num_heads) for e in ends],
        window_spec=list(trunk.window_spec),
        global_att_blocks=list(trunk.global_att_blocks),
        bkg_size=list(trunk.window_pos_embed_bkg_spatial_size),
        q_pool=len(trunk.q_pool_blocks),
        q_stride=list(trunk.q_stride),
        channel_list=list(neck.backbone_channel_list),
        fpn_top_down_levels=list(neck.fpn_top_down_levels),
        d_model=int(neck.d_model),
        image_size=int(model.image_size),  # type: ignore[arg-type]
        decoder={
            "dynamic_multimask_via_stability": bool(dec.dynamic_multimask_via_stability),
            "dynamic_multimask_stability_delta": float(dec.dynamic_multimask_stability_delta),
            "dynamic_multimask_stability_thresh": float(dec.dynamic_multimask_stability_thresh),
        },
    )


def convert_model(model: torch.nn.Module) -> Any:
    """A ``transformers.Sam2Model`` (eval mode, on ``model``'s device) holding ``model``'s
    image-path weights. Raises ``ValueError`` when the conversion leaves a key missing or
    unexpected."""
    from transformers import Sam2Model

    config = hf_config_from_model(model)
    with torch.device("meta"):
        hf = Sam2Model(config)
    sd = convert_state_dict(model.state_dict())
    missing, unexpected = hf.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"SAM 2 -> transformers conversion: {len(missing)} missing keys "
            f"(e.g. {list(missing)[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {list(unexpected)[:3]})"
        )
    return hf.eval()
