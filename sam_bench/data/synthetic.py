"""Deterministic generator of labelled synthetic scenes (COCO layout), and its CLI.

Four scene kinds:

- ``color``: flat coloured ellipses, rotated rectangles and star polygons on a plain background.
- ``gray_lowcontrast``: 8-bit grayscale (saved as PNG mode ``L``); objects only a few levels
  brighter or darker than a background with a gentle gradient.
- ``dense_small``: many small radially shaded blobs (nuclei-like) on a dark background.
- ``textured``: objects with their own fine texture on a striped, blotchy background.

Later objects occlude earlier ones and each ground-truth mask is the *visible* part of its
object; objects left with fewer than ``min_area`` pixels are dropped from the ground truth.

Determinism: randomness comes from ``numpy.random.RandomState`` (its streams are frozen by
NumPy's compatibility policy) seeded with ``[seed, scene index, image index]``; shapes are
rasterised in pure NumPy (pixel centres at integer coordinates, trigonometry rounded to 6
decimals, integer noise); PNGs are written by :func:`write_png` (fixed filter, ``zlib`` level
9, no metadata). The same arguments give byte-identical files, which keeps results comparable
across versions. Regenerate the embedded set with::

    python -m sam_bench.data.synthetic sam_bench/datasets/synthetic
"""

from __future__ import annotations

import argparse
import json
import math
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

SCENES = ("color", "gray_lowcontrast", "dense_small", "textured")
"""Scene kinds, in the order they are generated (and numbered)."""

FORMAT_VERSION = 1
"""Bumped whenever the generator's output changes for the same arguments."""


@dataclass(frozen=True)
class SceneParams:
    """Difficulty knobs of one scene kind."""

    n_objects: tuple[int, int]
    """Objects drawn per image (inclusive range); some may be dropped after occlusion."""
    object_size: tuple[int, int]
    """Object radius / half-size in pixels (inclusive range)."""
    contrast: float
    """Scales the object-background (and object-object) difference; 1.0 is the default."""
    noise: int
    """Per-pixel integer noise amplitude (uniform in ``[-noise, noise]`` levels)."""


DEFAULT_PARAMS: dict[str, SceneParams] = {
    "color": SceneParams(n_objects=(4, 8), object_size=(16, 48), contrast=1.0, noise=2),
    "gray_lowcontrast": SceneParams(n_objects=(3, 6), object_size=(18, 48), contrast=1.0, noise=3),
    "dense_small": SceneParams(n_objects=(40, 80), object_size=(3, 8), contrast=1.0, noise=2),
    "textured": SceneParams(n_objects=(3, 6), object_size=(18, 48), contrast=1.0, noise=2),
}


@dataclass
class Scene:
    """One generated image and its instance masks."""

    kind: str
    image: np.ndarray
    """HxW (``gray_lowcontrast``) or HxWx3 uint8."""
    masks: list[np.ndarray]
    """Visible part of each kept object (bool HxW), in drawing order."""


# --------------------------------------------------------------------------------------------
# public API


def make_scene(
    kind: str,
    *,
    seed: int | Sequence[int] = 0,
    size: tuple[int, int] = (320, 240),
    n_objects: tuple[int, int] | None = None,
    object_size: tuple[int, int] | None = None,
    contrast: float | None = None,
    noise: int | None = None,
    min_area: int = 10,
) -> Scene:
    """Draw one scene.

    Args:
        kind: One of :data:`SCENES`.
        seed: Seed of the ``RandomState`` (an int or a sequence of ints).
        size: ``(width, height)``.
        n_objects, object_size, contrast, noise: Override the kind's :data:`DEFAULT_PARAMS`.
        min_area: Drop objects whose visible part has fewer pixels than this.
    """
    if kind not in SCENES:
        raise ValueError(f"unknown scene kind {kind!r}; available: {', '.join(SCENES)}")
    d = DEFAULT_PARAMS[kind]
    params = SceneParams(
        n_objects=_pair(n_objects) if n_objects is not None else d.n_objects,
        object_size=_pair(object_size) if object_size is not None else d.object_size,
        contrast=float(contrast) if contrast is not None else d.contrast,
        noise=int(noise) if noise is not None else d.noise,
    )
    w, h = int(size[0]), int(size[1])
    rs = np.random.RandomState(seed)
    drawer = {
        "color": _draw_color,
        "gray_lowcontrast": _draw_gray_lowcontrast,
        "dense_small": _draw_dense_small,
        "textured": _draw_textured,
    }[kind]
    image, labels, n_drawn = drawer(rs, w, h, params)
    if params.noise > 0:
        n = rs.randint(-params.noise, params.noise + 1, size=(h, w)).astype(np.int16)
        if image.ndim == 3:
            n = n[:, :, None]
        image = np.clip(image.astype(np.int16) + n, 0, 255).astype(np.uint8)
    masks = []
    for k in range(1, n_drawn + 1):
        m = labels == k
        if int(m.sum()) >= min_area:
            masks.append(m)
    return Scene(kind=kind, image=image, masks=masks)


def _pair(value: Sequence[int]) -> tuple[int, int]:
    lo, hi = (int(v) for v in value)
    if not 0 <= lo <= hi:
        raise ValueError(f"expected a range (low, high) with 0 <= low <= high, got {value}")
    return lo, hi


def generate_dataset(
    out_dir: Path | str,
    n_per_scene: int = 2,
    size: tuple[int, int] = (320, 240),
    *,
    seed: int = 0,
    scenes: Sequence[str] = SCENES,
    n_objects: tuple[int, int] | None = None,
    object_size: tuple[int, int] | None = None,
    contrast: float | None = None,
    noise: int | None = None,
    min_area: int = 10,
) -> Path:
    """Write ``images/<scene>_<NN>.png`` and ``annotations.json`` (COCO instances) to ``out_dir``.

    Image ids are 1.. in index order, the scene kinds interleaved; each image entry carries
    ``scene`` and ``seed``. Annotations are compressed RLEs (``counts`` as text) with
    ``area``, ``bbox``, ``iscrowd`` 0 and ``category_id`` 1 (one category, ``object``).
    Generator-named PNGs left in ``images/`` by an earlier, larger run are removed.

    Returns:
        The path of ``annotations.json``.
    """
    unknown = [s for s in scenes if s not in SCENES]
    if unknown:
        raise ValueError(f"unknown scene kind(s) {unknown}; available: {', '.join(SCENES)}")
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    w, h = int(size[0]), int(size[1])
    knobs = {
        "n_objects": n_objects,
        "object_size": object_size,
        "contrast": contrast,
        "noise": noise,
    }
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    written: set[str] = set()
    # Ids interleave the scene kinds (color_00, gray_lowcontrast_00, ..., color_01, ...) so that
    # `dataset.limit=N` takes every kind before repeating one.
    for i in range(n_per_scene):
        for s_idx, kind in enumerate(SCENES):
            if kind not in scenes:
                continue
            image_seed = [int(seed), s_idx, i]
            scene = make_scene(
                kind,
                seed=image_seed,
                size=(w, h),
                n_objects=n_objects,
                object_size=object_size,
                contrast=contrast,
                noise=noise,
                min_area=min_area,
            )
            file_name = f"{kind}_{i:02d}.png"
            write_png(img_dir / file_name, scene.image)
            written.add(file_name)
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": w,
                    "height": h,
                    "scene": kind,
                    "seed": image_seed,
                }
            )
            for m in scene.masks:
                annotations.append(_annotation(len(annotations) + 1, image_id, m))
    for stale in img_dir.glob("*.png"):
        if stale.name not in written and re.fullmatch(r"[a-z_]+_\d{2,}\.png", stale.name):
            stale.unlink()

    params = {
        k: asdict(v) | {key: val for key, val in knobs.items() if val is not None}
        for k, v in DEFAULT_PARAMS.items()
        if k in scenes
    }
    data = {
        "info": {
            "description": "sam_bench synthetic labelled scenes",
            "generator": "sam_bench.data.synthetic",
            "format_version": FORMAT_VERSION,
            "seed": int(seed),
            "n_per_scene": int(n_per_scene),
            "size": [w, h],
            "min_area": int(min_area),
            "params": params,
        },
        "licenses": [],
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
        "images": images,
        "annotations": annotations,
    }
    path = out / "annotations.json"
    path.write_bytes((json.dumps(data, indent=1) + "\n").encode("utf-8"))
    return path


def write_png(path: Path | str, image: np.ndarray) -> None:
    """Write an 8-bit gray (HxW) or RGB (HxWx3) image as a deterministic PNG.

    No metadata chunks, PNG filter "none" on every row, ``zlib.compress`` level 9: the bytes
    depend only on the pixels (and on zlib's deflate, unchanged for decades).
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"write_png takes uint8 HxW or HxWx3, got {image.dtype} {image.shape}")
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError(f"write_png takes uint8 HxW or HxWx3, got shape {image.shape}")
    h, w = image.shape[:2]
    colour_type = 0 if image.ndim == 2 else 2
    rows = np.ascontiguousarray(image).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


# --------------------------------------------------------------------------------------------
# annotations


def _annotation(ann_id: int, image_id: int, mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()},
        "area": int(mask.sum()),
        "bbox": [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
        "iscrowd": 0,
    }


# --------------------------------------------------------------------------------------------
# rasterisation (pure NumPy, pixel centres at integer coordinates)


def _trig(angle: float) -> tuple[float, float]:
    """cos, sin rounded to 6 decimals (identical on every libm)."""
    return round(math.cos(angle), 6), round(math.sin(angle), 6)


def _bbox_grid(
    w: int, h: int, x_min: float, x_max: float, y_min: float, y_max: float
) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
    x0, x1 = max(0, math.floor(x_min)), min(w, math.ceil(x_max) + 1)
    y0, y1 = max(0, math.floor(y_min)), min(h, math.ceil(y_max) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    return slice(y0, y1), slice(x0, x1), xs, ys


def _ellipse(w: int, h: int, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    """Bool HxW mask of a rotated ellipse with semi-axes a, b."""
    out = np.zeros((h, w), bool)
    r = max(a, b)
    g = _bbox_grid(w, h, cx - r, cx + r, cy - r, cy + r)
    if g is None:
        return out
    sy, sx, xs, ys = g
    c, s = _trig(angle)
    dx, dy = xs - cx, ys - cy
    u = (dx * c + dy * s) / a
    v = (dy * c - dx * s) / b
    out[sy, sx] = u * u + v * v <= 1.0
    return out


def _polygon(w: int, h: int, pts: list[tuple[float, float]]) -> np.ndarray:
    """Bool HxW mask of a simple polygon (even-odd rule at pixel centres)."""
    out = np.zeros((h, w), bool)
    xs_v = [p[0] for p in pts]
    ys_v = [p[1] for p in pts]
    g = _bbox_grid(w, h, min(xs_v), max(xs_v), min(ys_v), max(ys_v))
    if g is None:
        return out
    sy, sx, xs, ys = g
    inside = np.zeros(xs.shape, bool)
    for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
        if y1 == y2:
            continue
        crosses = (ys < y1) != (ys < y2)
        x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_at)
    out[sy, sx] = inside
    return out


def _random_shape(rs: np.random.RandomState, w: int, h: int, p: SceneParams) -> np.ndarray:
    """An ellipse, rotated rectangle or star polygon with random placement and size."""
    kind = rs.randint(0, 3)
    r = float(rs.randint(p.object_size[0], p.object_size[1] + 1))
    cx = round(rs.uniform(0, w - 1), 2)
    cy = round(rs.uniform(0, h - 1), 2)
    angle = round(rs.uniform(0, math.pi), 4)
    if kind == 0:
        b = round(r * rs.uniform(0.45, 1.0), 2)
        return _ellipse(w, h, cx, cy, r, b, angle)
    if kind == 1:
        hw, hh = r, round(r * rs.uniform(0.4, 1.0), 2)
        c, s = _trig(angle)
        corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        pts = [(round(cx + x * c - y * s, 2), round(cy + x * s + y * c, 2)) for x, y in corners]
        return _polygon(w, h, pts)
    k = rs.randint(5, 10)
    angles = np.sort(rs.uniform(0, 2 * math.pi, size=k))
    radii = rs.uniform(0.55, 1.0, size=k) * r
    pts = []
    for t, rad in zip(angles, radii, strict=True):
        c, s = _trig(float(t))
        pts.append((round(cx + float(rad) * c, 2), round(cy + float(rad) * s, 2)))
    return _polygon(w, h, pts)


def _distinct_colour(
    rs: np.random.RandomState, others: list[np.ndarray], min_l1: float, lo: int = 0, hi: int = 256
) -> np.ndarray:
    """A random RGB colour at L1 distance >= min_l1 from every colour in ``others``."""
    cand = rs.randint(lo, hi, size=3)
    for _ in range(50):
        if all(int(np.abs(cand - o).sum()) >= min_l1 for o in others):
            break
        cand = rs.randint(lo, hi, size=3)
    return cand


# --------------------------------------------------------------------------------------------
# scene kinds: each returns (image without noise, label map 0..n in drawing order, n)


_Drawn = tuple[np.ndarray, np.ndarray, int]


def _draw_color(rs: np.random.RandomState, w: int, h: int, p: SceneParams) -> _Drawn:
    bg = rs.randint(40, 216, size=3)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = bg
    labels = np.zeros((h, w), np.int32)
    colours = [bg]
    n = rs.randint(p.n_objects[0], p.n_objects[1] + 1)
    for k in range(1, n + 1):
        m = _random_shape(rs, w, h, p)
        col = _distinct_colour(rs, colours, 120 * p.contrast)
        colours.append(col)
        image[m] = col
        labels[m] = k
    return image, labels, n


def _draw_gray_lowcontrast(rs: np.random.RandomState, w: int, h: int, p: SceneParams) -> _Drawn:
    bg = rs.randint(90, 166)
    ramp = (np.arange(w, dtype=np.int32) * 16) // max(w - 1, 1) - 8  # gentle gradient, +-8
    base = np.clip(bg + ramp[None, :].repeat(h, axis=0), 0, 255).astype(np.int32)
    image = base.copy()
    labels = np.zeros((h, w), np.int32)
    deltas: list[int] = []
    n = rs.randint(p.n_objects[0], p.n_objects[1] + 1)
    for k in range(1, n + 1):
        m = _random_shape(rs, w, h, p)
        for _ in range(20):
            delta = round(rs.randint(8, 19) * p.contrast) * (1 if rs.randint(0, 2) else -1)
            if all(abs(delta - d) >= 5 for d in deltas):
                break
        deltas.append(delta)
        image[m] = base[m] + delta
        labels[m] = k
    return np.clip(image, 0, 255).astype(np.uint8), labels, n


def _draw_dense_small(rs: np.random.RandomState, w: int, h: int, p: SceneParams) -> _Drawn:
    bg = np.array([12, 14, 22]) + rs.randint(0, 10, size=3)
    image = np.empty((h, w, 3), np.float64)
    image[:] = bg
    labels = np.zeros((h, w), np.int32)
    tints = np.array([[0.35, 0.55, 1.0], [0.45, 1.0, 0.55]])
    tint = tints[rs.randint(0, 2)]
    n = rs.randint(p.n_objects[0], p.n_objects[1] + 1)
    for k in range(1, n + 1):
        r = float(rs.randint(p.object_size[0], p.object_size[1] + 1))
        b = round(r * rs.uniform(0.7, 1.0), 2)
        cx, cy = round(rs.uniform(0, w - 1), 2), round(rs.uniform(0, h - 1), 2)
        angle = round(rs.uniform(0, math.pi), 4)
        peak = 90.0 + rs.randint(60, 166) * p.contrast
        m = _ellipse(w, h, cx, cy, r, b, angle)
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        d2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (r * r)
        shade = peak * (1.0 - 0.45 * np.minimum(d2, 1.0))
        image[ys, xs] = bg + (shade[:, None] - bg) * tint[None, :]
        labels[m] = k
    return np.clip(np.floor(image), 0, 255).astype(np.uint8), labels, n


def _draw_textured(rs: np.random.RandomState, w: int, h: int, p: SceneParams) -> _Drawn:
    yy, xx = np.mgrid[0:h, 0:w]
    directions = [(1, 0), (0, 1), (1, 1), (1, -1), (2, 1), (1, 2)]
    a, b = directions[rs.randint(0, len(directions))]
    period = rs.randint(6, 15)
    stripes = ((xx * a + yy * b) // period) % 2
    cell = 16
    blotch = rs.randint(-18, 19, size=(h // cell + 1, w // cell + 1))
    blotch = np.repeat(np.repeat(blotch, cell, axis=0), cell, axis=1)[:h, :w]
    c0 = rs.randint(60, 196, size=3)
    c1 = np.clip(c0 + rs.randint(-45, 46, size=3), 0, 255)
    image = np.where(stripes[:, :, None] == 1, c1, c0) + blotch[:, :, None]
    labels = np.zeros((h, w), np.int32)
    colours = [c0, c1]
    n = rs.randint(p.n_objects[0], p.n_objects[1] + 1)
    for k in range(1, n + 1):
        m = _random_shape(rs, w, h, p)
        col = _distinct_colour(rs, colours, 110 * p.contrast, 20, 236)
        colours.append(col)
        checker = rs.randint(2, 5)
        amp = rs.randint(6, 15)
        tex = (((xx // checker) + (yy // checker)) % 2) * 2 * amp - amp
        image[m] = col + tex[m][:, None]
        labels[m] = k
    return np.clip(image, 0, 255).astype(np.uint8), labels, n


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sam_bench.data.synthetic OUT_DIR [options]``: (re)generate a dataset."""
    ap = argparse.ArgumentParser(
        prog="python -m sam_bench.data.synthetic",
        description="Generate the deterministic synthetic labelled scenes (COCO layout).",
    )
    ap.add_argument("out_dir", type=Path, help="output folder (images/ + annotations.json)")
    ap.add_argument("--n-per-scene", type=int, default=2, help="images per scene kind")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES))
    ap.add_argument("--contrast", type=float, default=None, help="override every scene's")
    ap.add_argument("--noise", type=int, default=None, help="override every scene's")
    args = ap.parse_args(argv)
    path = generate_dataset(
        args.out_dir,
        n_per_scene=args.n_per_scene,
        size=(args.width, args.height),
        seed=args.seed,
        scenes=args.scenes,
        contrast=args.contrast,
        noise=args.noise,
    )
    data = json.loads(path.read_text())
    print(
        f"wrote {len(data['images'])} images, {len(data['annotations'])} instances to {path.parent}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
