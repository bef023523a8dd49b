"""Official SAM 2 / 2.1 weights -> transformers ``Sam2Model``: key coverage for every size,
and the converted vision encoder computing the official embeddings (random weights)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sam_bench.models.build import sam2_package_dir
from sam_bench.models.runtimes import hf_convert
from tests.hf_fixtures import embedded_image

pytest.importorskip("transformers", minversion="4.56")

YAMLS = [
    f"configs/{family}/{family}_hiera_{size}.yaml"
    for family in ("sam2.1", "sam2")
    for size in ("t", "s", "b+", "l")
]


def _official(path: str) -> tuple[Any, torch.nn.Module]:
    conf = OmegaConf.load(sam2_package_dir() / path)
    torch.manual_seed(0)
    return conf, instantiate(conf.model, _recursive_=True).eval()


@pytest.mark.parametrize("path", YAMLS)
def test_conversion_covers_every_key(path: str) -> None:
    from transformers import Sam2Model

    conf, model = _official(path)
    config = hf_convert.hf_config_from_yaml(conf)
    # the YAML (with Hiera's defaults for unset arguments) and the built model agree
    assert config.to_dict() == hf_convert.hf_config_from_model(model).to_dict()
    with torch.device("meta"):
        hf = Sam2Model(config)
    official = model.state_dict()
    converted = hf_convert.convert_state_dict(official)
    expected = hf.state_dict()
    assert set(converted) == set(expected), (
        sorted(set(expected) - set(converted))[:5],
        sorted(set(converted) - set(expected))[:5],
    )
    for key, value in converted.items():
        assert value.shape == expected[key].shape, key
    # what is left out is the video memory path, and only that
    dropped = [k for k in official if hf_convert.is_video_only(k)]
    assert dropped and all(
        k.startswith(("memory_", "mask_downsample", "obj_ptr", "no_obj", "no_mem_pos", "maskmem"))
        for k in dropped
    )
    # every image-path tensor went somewhere (the point embeddings are stacked into one)
    used = len(official) - len(dropped)
    points = sum(k.startswith("sam_prompt_encoder.point_embeddings.") for k in official)
    assert len(converted) == used - points + 1 + 1  # + stacked points + duplicated PE matrix


def test_unknown_official_key_is_an_error() -> None:
    with pytest.raises(KeyError, match="no transformers name"):
        hf_convert.convert_state_dict({"image_encoder.something_new.weight": torch.zeros(1)})


def test_converted_vision_encoder_equals_official(tiny_model: Any) -> None:
    """tiny: the converted model's FPN levels and positional encodings are the official
    ``image_encoder``'s, bit for bit, on an embedded image."""
    hf = hf_convert.convert_model(tiny_model)
    image = embedded_image().astype(np.float32) / 255.0
    x = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None], size=(1024, 1024), mode="bilinear"
    )
    with torch.no_grad():
        ours = tiny_model.image_encoder(x)
        theirs = hf.vision_encoder(x, return_dict=True)
    assert len(theirs.fpn_hidden_states) == len(ours["backbone_fpn"]) == 3
    for a, b in zip(ours["backbone_fpn"], theirs.fpn_hidden_states, strict=True):
        assert torch.equal(a, b), (a - b).abs().max().item()
    for a, b in zip(ours["vision_pos_enc"], theirs.fpn_position_encoding, strict=True):
        assert torch.equal(a, b), (a - b).abs().max().item()
    assert torch.equal(hf.no_memory_embedding, tiny_model.no_mem_embed)


def test_official_state_dict_inverts_the_conversion() -> None:
    """Weights of model A converted to transformers' names and put back into model B under
    sam2's names: B then holds A's image-path tensors and keeps its own video-only ones."""
    _, a = _official("configs/sam2.1/sam2.1_hiera_t.yaml")
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    hf_sd = hf_convert.convert_state_dict(a.state_dict())
    back = hf_convert.official_state_dict(b.state_dict(), hf_sd)
    assert set(back) == set(b.state_dict())
    for key, value in back.items():
        source = b if hf_convert.is_video_only(key) else a
        assert torch.equal(value, source.state_dict()[key]), key
    hf_sd["shared_image_embedding.positional_embedding"] = (
        hf_sd["shared_image_embedding.positional_embedding"] + 1.0
    )
    with pytest.raises(ValueError, match="positional-encoding"):
        hf_convert.official_state_dict(b.state_dict(), hf_sd)
