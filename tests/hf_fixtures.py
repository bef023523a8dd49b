"""Helpers shared by the transformers runtime / family tests: the embedded images."""

from __future__ import annotations

import numpy as np

from sam_bench.data.registry import embedded_synthetic_root


def embedded_image(index: int = 0) -> np.ndarray:
    """One embedded synthetic image, HxWx3 uint8 RGB."""
    from PIL import Image

    path = sorted((embedded_synthetic_root() / "images").glob("*.png"))[index]
    return np.asarray(Image.open(path).convert("RGB"))
