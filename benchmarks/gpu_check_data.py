"""Tiny self-contained inputs for ``benchmarks/gpu_check.sh``'s video and semantic steps, drawn
from the embedded synthetic generator (no download, no shared data):

* ``DIR/video``: a DAVIS-style folder (``JPEGImages/480p/synth/``, ``Annotations/480p/synth/``
  palette PNGs of object ids) of one sequence whose objects move a few pixels per frame;
* ``DIR/semantic``: ``images/``, ``labels/`` (class-index PNGs: 0 background, 1 object) and
  ``classes.txt``, for ``dataset=semantic_folder``.

Random-weight runs on these inputs measure latency and memory; their accuracy means nothing.

    python benchmarks/gpu_check_data.py DIR [--frames N] [--images N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from sam_bench.data.synthetic import make_scene

SEQUENCE = "synth"
SIZE = (320, 240)


def palette_png(ids: np.ndarray, path: Path) -> None:
    """An object-id map as a DAVIS 2017 palette PNG (index k: object k, 0: background)."""
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    rng = np.random.default_rng(0)
    colours = [0, 0, 0, *rng.integers(40, 256, size=255 * 3).tolist()]
    im.putpalette(colours)
    im.save(path)


def write_video(root: Path, frames: int, seed: int = 0) -> Path:
    """One sequence of ``frames`` frames: a colour scene shifted 4 px right per frame."""
    scene = make_scene("color", seed=seed, size=SIZE)
    ids = np.zeros(scene.masks[0].shape, np.int32)
    for k, m in enumerate(scene.masks[:8], start=1):
        ids[m] = k
    jpeg = root / "JPEGImages" / "480p" / SEQUENCE
    ann = root / "Annotations" / "480p" / SEQUENCE
    jpeg.mkdir(parents=True, exist_ok=True)
    ann.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        Image.fromarray(np.roll(scene.image, 4 * t, axis=1)).save(jpeg / f"{t:05d}.jpg", quality=95)
        palette_png(np.roll(ids, 4 * t, axis=1), ann / f"{t:05d}.png")
    return root


def write_semantic(root: Path, images: int) -> Path:
    """``images`` colour scenes, each object labelled class 1 on background 0."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        scene = make_scene("color", seed=100 + i, size=SIZE)
        label = np.zeros(scene.image.shape[:2], np.uint8)
        for m in scene.masks:
            label[m] = 1
        Image.fromarray(scene.image).save(root / "images" / f"scene{i}.png")
        Image.fromarray(label, mode="L").save(root / "labels" / f"scene{i}.png")
    (root / "classes.txt").write_text("0 background\n1 object | shape\n")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--images", type=int, default=2)
    args = parser.parse_args(argv)
    write_video(args.dir / "video", args.frames)
    write_semantic(args.dir / "semantic", args.images)
    print(f"gpu_check data: {args.dir / 'video'} (DAVIS, {args.frames} frames), "
          f"{args.dir / 'semantic'} (semantic folder, {args.images} images)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
