"""Per-job figures of ``task=semantic`` under ``figures/``: the confusion matrix and colour-coded
class maps (image | ground truth | prediction, with the class legend) of the example images kept
while the job ran (:class:`Example`). matplotlib's object API (Agg), no pyplot state."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from sam_bench.data.semantic_folder import ClassList
from sam_bench.tasks.semantic.metrics import UNLABELLED, SemanticEvaluator

FIGURES_DIR = "figures"
CONFUSION_FILE = "confusion.png"
MAPS_FILE = "semantic_maps.png"
MAX_FIGURE_ITEMS = 4
"""Images shown in the predicted-maps figure (the first saved ones)."""
FIGURE_MAX_SIDE = 480
"""Longer side of the images kept for the figure (downsampled, nearest for label maps)."""

UNLABELLED_RGB = (0, 0, 0)
"""Colour of "unlabelled" predictions (black)."""
VOID_RGB = (255, 255, 255)
"""Colour of void ground truth (white)."""


@dataclass
class Example:
    """A downsampled image, ground truth and prediction kept for the maps figure."""

    image_id: str
    image: np.ndarray
    gt: np.ndarray
    pred: np.ndarray

    @classmethod
    def of(cls, image_id: str, image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> Example:
        """The example of full-size arrays (each downsampled)."""
        return cls(
            image_id, downsample(image, nearest=False), downsample(gt, nearest=True),
            downsample(pred, nearest=True),
        )  # fmt: skip


def downsample(a: np.ndarray, nearest: bool) -> np.ndarray:
    """``a`` with its longer side at most :data:`FIGURE_MAX_SIDE` (nearest: label maps)."""
    h, w = a.shape[:2]
    scale = FIGURE_MAX_SIDE / max(h, w)
    if scale >= 1:
        return a.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if nearest:
        ys = (np.arange(size[1]) / scale).astype(int).clip(0, h - 1)
        xs = (np.arange(size[0]) / scale).astype(int).clip(0, w - 1)
        return a[ys][:, xs]
    return np.asarray(Image.fromarray(a).resize(size, Image.Resampling.BILINEAR))


def draw_figures(
    job_dir: Path,
    ev: SemanticEvaluator,
    examples: list[Example],
    classes: ClassList | None,
    note: str,
) -> list[dict[str, str]]:
    """The per-job figures under ``figures/`` (``[{path, caption}]``, relative to
    ``job_dir``): the confusion matrix, and the maps figure of ``examples`` (when any)."""
    if ev.n_images == 0:
        return []
    out = job_dir / FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    figures = [confusion_figure(ev, out / CONFUSION_FILE, note)]
    if examples and classes is not None:
        figures.append(maps_figure(examples, classes, out / MAPS_FILE, note))
    return [{"path": str(p.relative_to(job_dir)), "caption": c} for p, c in figures]


def class_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 distinct colours (tab20, then a golden-ratio hue walk)."""
    base = colormaps["tab20"].colors  # type: ignore[attr-defined]
    out = [tuple(int(255 * c) for c in base[i][:3]) for i in range(min(n, len(base)))]
    for i in range(len(out), n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.65, 0.9)
        out.append((int(255 * r), int(255 * g), int(255 * b)))
    return np.asarray(out, dtype=np.uint8).reshape(n, 3)


def colourise(labels: np.ndarray, class_ids: list[int], void: int | None) -> np.ndarray:
    """HxWx3 uint8: each class its colour, "unlabelled" black, void white, anything else
    grey."""
    colours = class_colours(len(class_ids))
    out = np.full((*labels.shape, 3), 128, dtype=np.uint8)
    for k, c in enumerate(class_ids):
        out[labels == c] = colours[k]
    out[labels == UNLABELLED] = UNLABELLED_RGB
    if void is not None:
        out[labels == void] = VOID_RGB
    return out


def _title(fig: Figure, text: str, note: str) -> None:
    fig.suptitle(text + (f"\n{note}" if note else ""), fontsize=10,
                 color="darkred" if note else "black")  # fmt: skip


def confusion_figure(ev: SemanticEvaluator, path: Path, note: str = "") -> tuple[Path, str]:
    """Row-normalised confusion matrix (rows: ground truth, void ignored; last column:
    "unlabelled"), with each row's pixel count."""
    m = ev.matrix.astype(np.float64)
    k = m.shape[0]
    rows = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    side = max(5.0, 0.45 * k + 2.5)
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    cols = [*ev.class_names, "unlabelled"]
    ax.set_xticks(range(k + 1), cols, rotation=60, ha="right", fontsize=8)
    names = [f"{n} ({int(r)} px)" for n, r in zip(ev.class_names, rows[:, 0], strict=True)]
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if k <= 25:
        for i in range(k):
            for j in range(k + 1):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.6 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the row's pixels")
    images = f"{ev.n_images} image" + ("" if ev.n_images == 1 else "s")
    _title(fig, f"Confusion matrix over {images} (void ignored)", note)
    fig.savefig(path, dpi=100)
    caption = (
        "confusion matrix, rows normalised (ground truth; void pixels ignored), last column "
        "'unlabelled'" + (f" -- {note}" if note else "")
    )
    return path, caption


def maps_figure(
    examples: list[Example], classes: ClassList, path: Path, note: str = ""
) -> tuple[Path, str]:
    """One row per image: the model input, the ground truth and the prediction, coloured by
    class, with the legend (classes, "unlabelled", void)."""
    labelled = list(classes.labelled)
    ids = [c.index for c in labelled]
    void = classes.void_index
    n = len(examples)
    h, w = examples[0].image.shape[:2]
    width = 11.0
    fig = Figure(figsize=(width, n * width / 3 * h / w + 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 3, squeeze=False)
    for r, ex in enumerate(examples):
        panels = [(ex.image, "image"), (colourise(ex.gt, ids, void), "ground truth"),
                  (colourise(ex.pred, ids, void), "prediction")]  # fmt: skip
        for c, (img, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{ex.image_id}: {title}" if c == 0 else title, fontsize=8)
    colours = class_colours(len(ids))
    handles = [Patch(color=colours[k] / 255.0, label=c.name) for k, c in enumerate(labelled)]
    handles.append(Patch(facecolor="black", label="unlabelled"))
    if void is not None:
        handles.append(Patch(facecolor="white", edgecolor="grey",
                             label=f"void ({classes.name_of(void)})"))  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(7, len(handles)),
               fontsize=8, frameon=False)  # fmt: skip
    _title(fig, "Predicted class maps beside the ground truth", note)
    fig.savefig(path, dpi=100)
    caption = "predicted class maps (image | ground truth | prediction)" + (
        f" -- {note}" if note else ""
    )
    return path, caption
