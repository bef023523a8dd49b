"""Per-job figures of the prompted task (matplotlib ``Figure``, Agg; no pyplot).

* :func:`overlay_figure`: for each saved image, ground truth | prediction, each instance in
  its own colour in both panels, with the prompts sent: positive clicks as green plus signs,
  negative clicks as red crosses, boxes dashed (unmatched detector boxes grey). Drawn only
  from the files the job saved (``masks/<id>.json`` + ``.png``).
* :func:`clicks_by_size_figure`: mIoU after k clicks, over all instances and by COCO object
  size, from the job's per-instance rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image

from sam_bench.rle import decode_segmentation
from sam_bench.tasks.prompted.metrics import SIZES

ALPHA = 0.5
MAX_IMAGES = 4
_PALETTE = colormaps["tab20"](np.arange(20))[:, :3]


def _colour(index: int) -> np.ndarray:
    return np.asarray(_PALETTE[index % len(_PALETTE)])


def _edges(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _paint(image: np.ndarray, masks: list[tuple[int, np.ndarray, bool]]) -> np.ndarray:
    """``image`` (floats in [0, 1]) with each ``(instance, mask, grey)`` blended and outlined
    in the instance's colour (grey for crowd regions), largest first."""
    out = image.copy()
    for index, m, grey in sorted(masks, key=lambda t: -int(t[1].sum())):
        if m.shape != out.shape[:2]:
            continue
        colour = np.array([0.6, 0.6, 0.6]) if grey else _colour(index)
        out[m] = (1 - ALPHA) * out[m] + ALPHA * colour
        out[_edges(m)] = colour
    return out


def _image(folder: Path, data: dict[str, Any]) -> np.ndarray:
    h, w = int(data.get("height") or 1), int(data.get("width") or 1)
    try:
        with Image.open(folder / str(data.get("image_file"))) as im:
            return np.asarray(im.convert("RGB"), dtype=float) / 255.0
    except OSError:
        return np.full((h, w, 3), 0.5)


def _box(ax: Any, box: list[float], colour: Any) -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(
        Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle="--", lw=1.2)
    )


def overlay_figure(folder: Path, stems: list[str], path: Path, tag: str = "") -> Path:
    """Draw the saved images ``stems`` of ``folder`` (see the module docstring) to ``path``."""
    stems = stems[:MAX_IMAGES]
    fig = Figure(figsize=(8.0, 0.8 + 3.2 * len(stems)), layout="constrained")
    axes = fig.subplots(len(stems), 2, squeeze=False)
    for row, stem in enumerate(stems):
        data = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
        image = _image(folder, data)
        h, w = image.shape[:2]
        gt = data.get("ground_truth") or []
        gt_masks = [
            (i, decode_segmentation(g["segmentation"], h, w), bool(g.get("iscrowd")))
            for i, g in enumerate(gt)
        ]
        preds = data.get("masks") or []
        pred_masks = [
            (int(p["instance"]), decode_segmentation(p["segmentation"], h, w), False) for p in preds
        ]
        ious = [float(p["iou"]) for p in preds if p.get("iou") is not None]
        left, right = axes[row]
        left.imshow(np.clip(_paint(image, gt_masks), 0, 1))
        left.set_title(f"{data.get('image_id')}: ground truth ({len(gt)})", fontsize=8)
        right.imshow(np.clip(_paint(image, pred_masks), 0, 1))
        miou = f", mIoU {np.mean(ious):.3f}" if ious else ""
        right.set_title(f"prediction ({data.get('mode')}{miou})", fontsize=8)
        for p in preds:
            colour = _colour(int(p["instance"]))
            if p.get("box"):
                _box(right, p["box"], colour)
            for n, (x, y, label) in enumerate(p.get("clicks") or []):
                right.scatter(
                    [x], [y], marker="P" if label else "X", s=46 if n == 0 else 30,
                    c="limegreen" if label else "red", edgecolors="white", linewidths=0.6,
                    zorder=3,
                )  # fmt: skip
        used = {tuple(p["box"]) for p in preds if p.get("box")}
        for box in data.get("detector_boxes") or []:
            if tuple(box) not in used:
                _box(right, box, "0.6")
        for ax in (left, right):
            ax.set_axis_off()
    handles = [
        Line2D([], [], marker="P", ls="", color="limegreen", label="positive click"),
        Line2D([], [], marker="X", ls="", color="red", label="negative click"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(f"Prompts and masks{tag}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def clicks_by_size_figure(
    rows: list[dict[str, Any]], max_clicks: int, path: Path, tag: str = ""
) -> Path:
    """mIoU after k = 1..``max_clicks`` clicks over the scored instances of ``rows``
    (``per_instance.csv`` rows), all and by object size, to ``path``."""
    scored = [r for r in rows if r.get("status") in ("ok", "missed")]
    ks = list(range(1, max_clicks + 1))
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    groups = [("all", scored), *((s, [r for r in scored if r.get("size") == s]) for s in SIZES)]
    for n, (name, members) in enumerate(groups):
        if not members:
            continue
        ys = [float(np.nanmean([_num(r.get(f"iou_{k}")) for r in members])) for k in ks]
        ax.plot(ks, ys, marker="o", color=f"C{n}", lw=2.0 if name == "all" else 1.2,
                label=f"{name} ({len(members)})")  # fmt: skip
    ax.set_xlabel("clicks")
    ax.set_ylabel("mIoU (higher is better)")
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_title(f"mIoU after k clicks by object size{tag}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
