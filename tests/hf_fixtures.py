"""Helpers shared by the transformers runtime / family tests: the embedded images, a family's
model config."""

from __future__ import annotations

from typing import Any

import numpy as np

from sam_bench.config import ModelConfig
from sam_bench.data.registry import embedded_synthetic_root


def embedded_image(index: int = 0) -> np.ndarray:
    """One embedded synthetic image, HxWx3 uint8 RGB."""
    from PIL import Image

    path = sorted((embedded_synthetic_root() / "images").glob("*.png"))[index]
    return np.asarray(Image.open(path).convert("RGB"))


def family_cfg(family: str, **kw: Any) -> ModelConfig:
    """``model=<family>``'s config as the presets set it (random weights), with ``kw`` over it."""
    from sam_bench.models.families import edgetam, sam3_tracker

    spec = {"edgetam": edgetam, "sam3_tracker": sam3_tracker}[family]
    size = {"edgetam": "repvit_m1", "sam3_tracker": "vit_l"}[family]
    fields: dict[str, Any] = {
        "name": family, "family": family, "size": size, "weights": "random",
        "sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml", "checkpoint_file": spec.HUB_ID,
        "url": f"https://huggingface.co/{spec.HUB_ID}",
    }  # fmt: skip
    fields.update(kw)
    return ModelConfig(**fields)
