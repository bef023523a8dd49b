"""A small semantic dataset written by the tests themselves (no licensed data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_street(root: Path) -> None:
    """Two 48x64 images with class maps (sky / road / car, a void corner) and instance maps;
    each class region has its own colour (plus noise), so CLIP's crops differ."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        sem = np.zeros((48, 64), np.uint8)
        sem[20:, :] = 1
        sem[24:40, 8:30] = 2
        sem[:4, :4] = 9
        colours = np.array([(60, 120, 230), (110, 110, 110), (200, 30, 30)] + [(0, 0, 0)] * 7)
        noise = rng.integers(-25, 25, (48, 64, 3))
        img = (colours[sem] + noise).clip(0, 255).astype(np.uint8)
        inst = np.zeros((48, 64), np.uint8)
        inst[24:40, 8:30] = 1
        inst[5:15, 40:60] = 2
        for folder, arr in (("img", img), ("sem", sem), ("inst", inst)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / folder / f"{name}.png")
    (root / "classes.txt").write_text("0 sky\n1 road | street\n2 car\n9 void\n")
