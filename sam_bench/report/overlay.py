"""The mask-overlay grid: image | ground truth | best config | worst config, one row per image.

Reads only what a job saved: the folders its record declares of kind ``instance_examples``
(:func:`sam_bench.layout.declared_outputs`; ``masks/`` for the built-in tasks), holding
``<image>.json`` (COCO RLE predictions and ground truth) and the RGB model input it names as
``image_file``, so a sweep run elsewhere can be drawn later.
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from sam_bench.layout import PER_ITEM_FILE as PER_IMAGE_FILE
from sam_bench.layout import JobLayout
from sam_bench.report.analysis import SkipPlot, job_label, load_record, num, ok_rows
from sam_bench.report.console import varying_keys
from sam_bench.rle import decode_segmentation

MAX_IMAGES = 4
MAX_MASKS = 200
ALPHA = 0.5
_PALETTE = colormaps["tab20"](np.arange(20))[:, :3]


def _edges(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def paint(image: np.ndarray, masks: list[np.ndarray], grey: list[bool] | None = None) -> np.ndarray:
    """``image`` (HxWx3 floats in [0, 1]) with each mask blended in its own colour and outlined;
    large masks first so small ones stay visible. ``grey[i]`` paints mask i grey (crowd)."""
    out = image.copy()
    order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
    for n, i in enumerate(order):
        m = masks[i]
        if m.shape != out.shape[:2]:
            continue
        colour = np.array([0.6, 0.6, 0.6]) if grey and grey[i] else _PALETTE[n % len(_PALETTE)]
        out[m] = (1 - ALPHA) * out[m] + ALPHA * colour
        out[_edges(m)] = colour
    return out


def _load_image(json_path: Path, data: dict[str, Any]) -> np.ndarray:
    h, w = int(data.get("height") or 1), int(data.get("width") or 1)
    png = json_path.parent / str(data.get("image_file") or f"{json_path.stem}.png")
    try:
        with Image.open(png) as im:
            return np.asarray(im.convert("RGB"), dtype=float) / 255.0
    except OSError:
        return np.full((h, w, 3), 0.5)


def _per_image(job_dir: Path, metric: str) -> dict[str, float]:
    try:
        with (job_dir / PER_IMAGE_FILE).open(encoding="utf-8", newline="") as f:
            return {str(r.get("image_id")): num(r.get(metric)) for r in csv.DictReader(f)}
    except OSError:
        return {}


def _saved(row: dict[str, Any]) -> dict[str, Path]:
    """Saved overlay records of a job (in its declared ``instance_examples`` folders): image
    stem -> JSON path."""
    layout = JobLayout(Path(str(row.get("job_dir"))))
    found = layout.find(load_record(row), "instance_examples")
    return {p.stem: p for _, d in found if d.is_dir() for p in d.glob("*.json")}


def _sort_key(stem: str) -> tuple[int, str]:
    return (0, f"{int(stem):012d}") if stem.isdigit() else (1, stem)


def _masks(entries: list[dict[str, Any]], h: int, w: int) -> list[np.ndarray]:
    out = []
    for entry in entries[:MAX_MASKS]:
        try:
            out.append(decode_segmentation(entry["segmentation"], h, w))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def draw_overlays(rows: list[dict[str, Any]], metric: str) -> tuple[Figure, str]:
    """The overlay grid for the best and worst ok job by ``metric`` (higher is better) among
    the jobs that saved masks (``<id>.json`` with ``masks`` and ``ground_truth`` in a declared
    ``instance_examples`` folder).

    Returns the figure and its title; raises :class:`SkipPlot` when no ok job saved masks.
    """
    if not metric:
        raise SkipPlot("the sweep declares no accuracy metric to rank jobs by")
    candidates = [r for r in ok_rows(rows) if not math.isnan(num(r.get(metric))) and _saved(r)]
    if not candidates:
        raise SkipPlot(f"no ok job with a value of {metric} saved masks (task.save_masks)")
    best = max(candidates, key=lambda r: num(r.get(metric)))
    worst = min(candidates, key=lambda r: num(r.get(metric)))
    shown = [best] if num(best.get(metric)) == num(worst.get(metric)) else [best, worst]
    tied = [tied_with(candidates, r, metric) for r in shown]
    saved = [_saved(r) for r in shown]
    common = sorted(set.intersection(*(set(s) for s in saved)), key=_sort_key)
    if not common:
        raise SkipPlot("the best and worst jobs saved masks for no common image")
    stems = [s for s in common if _has_ground_truth(saved[0][s])][:MAX_IMAGES]
    if not stems:
        raise SkipPlot(
            "the saved examples hold no instance ground truth (e.g. task=semantic without "
            "dataset.annotations); the task's own figures show its predictions"
        )
    keys, _ = varying_keys(rows)
    per_image = [_per_image(Path(str(r.get("job_dir"))), metric) for r in shown]
    ncols = 2 + len(shown)
    fig = Figure(figsize=(3.2 * ncols, 0.6 + 2.7 * len(stems)), layout="constrained")
    axes = fig.subplots(len(stems), ncols, squeeze=False)
    for i, stem in enumerate(stems):
        ref = json.loads(saved[0][stem].read_text(encoding="utf-8"))
        image = _load_image(saved[0][stem], ref)
        h, w = image.shape[:2]
        gt = ref.get("ground_truth") or []
        gt_masks = _masks(gt, h, w)
        crowd = [str(g.get("iscrowd")).lower() in ("1", "true") for g in gt[: len(gt_masks)]]
        panels = [
            (image, f"image {ref.get('image_id', stem)}"),
            (paint(image, gt_masks, crowd), f"ground truth ({len(gt_masks)})"),
        ]
        for k in range(len(shown)):
            data = json.loads(saved[k][stem].read_text(encoding="utf-8"))
            preds = _masks(data.get("masks") or [], h, w)
            which = ("all jobs tie" if len(tied[k]) == len(candidates) and len(shown) == 1
                     else "best" if k == 0 else "worst")  # fmt: skip
            value = per_image[k].get(str(data.get("image_id", stem)), math.nan)
            names = ", ".join(f"#{r.get('job')}" for r in tied[k])
            head = textwrap.fill(f"{which} {names}", 40)
            panels.append(
                (paint(image, preds), f"{head}\n{len(preds)} masks, {metric} {value:.3f}")
            )
        for ax, (pixels, title) in zip(axes[i], panels, strict=True):
            ax.imshow(np.clip(pixels, 0, 1))
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    lines = []
    for which, group in zip(("best", "worst"), tied, strict=False):
        tie = f" ({len(group)} jobs tie; masks of #{group[0].get('job')})" if len(group) > 1 else ""
        lines.append(f"{which}{tie}: " + "; ".join(job_label(r, keys) for r in group[:6])
                     + (f"; +{len(group) - 6} more" if len(group) > 6 else ""))  # fmt: skip
    title = f"Mask overlays (best / worst config by {metric})\n" + "\n".join(lines)
    return fig, title


def tied_with(rows: list[dict[str, Any]], row: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """``row`` and every other row with exactly its value of ``metric`` (``row`` first)."""
    value = num(row.get(metric))
    return [row, *(r for r in rows if r is not row and num(r.get(metric)) == value)]


def _has_ground_truth(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("ground_truth"))
    except (OSError, ValueError):
        return False
