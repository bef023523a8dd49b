"""Per-job figures of ``task=video`` (matplotlib ``Figure`` on Agg, no pyplot state):

* :func:`frames_figure`: the first, middle and last frame of a sequence with the ground-truth
  and the predicted masks (one colour per object, the DAVIS palette, with a legend), drawn
  while the job runs for the first ``task.save_masks`` sequences;
* :func:`jf_per_sequence_figure`: J, F and J&F per sequence;
* :func:`j_over_frames_figure`: J per object over the frames (where tracking is lost), from the
  same per-frame scores as ``per_frame.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.data.base import VideoTruth
from sam_bench.legible import save_legible
from sam_bench.tasks.video.metrics import VideoEvaluator, VideoPrediction, frame_lookup
from sam_bench.tasks.video.outputs import (
    J_FRAMES_FIGURE,
    JF_FIGURE,
    UNTRAINED_NOTE,
    davis_palette,
)

#: An axes legend beside the plot, never over its data.
LEGEND_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0),
                                  "borderaxespad": 0.0}  # fmt: skip
ALPHA = 0.5


def shown_frames(n: int) -> list[int]:
    """The first, middle and last frame of ``n`` (fewer when the sequence is shorter)."""
    return sorted({0, (n - 1) // 2, n - 1}) if n > 0 else []


def _blend(rgb: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Object masks blended over a frame in their palette colours, outlined."""
    out = rgb.astype(np.float32) / 255.0
    if labels is None or labels.shape != rgb.shape[:2]:
        return out
    colours = davis_palette().astype(np.float32) / 255.0
    for obj in np.unique(labels):
        if obj == 0:
            continue
        m = labels == obj
        inner = m.copy()
        inner[1:] &= m[:-1]
        inner[:-1] &= m[1:]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        colour = colours[int(obj) % 256]
        out[m] = (1 - ALPHA) * out[m] + ALPHA * colour
        out[m & ~inner] = colour
    return out


def truth_labels(video: VideoTruth, t: int) -> np.ndarray | None:
    """Frame ``t``'s ground truth as a map of object ids (``None``: not annotated)."""
    objects = video.masks.get(t)
    if objects is None:
        return None
    labels = np.zeros((video.height, video.width), np.int32)
    for obj, rle in sorted(objects.items()):
        labels[mask_utils.decode(rle).astype(bool)] = obj
    return labels


def frames_figure(
    sequence: str, video: VideoTruth, prediction: VideoPrediction, path: Path,
    untrained: bool | None,
) -> Path:  # fmt: skip
    """First, middle and last frame of ``sequence``: ground truth | prediction, one row per
    frame, with a legend of the objects' colours; saved to ``path``."""
    lookup = frame_lookup(prediction, video, sequence)
    rows = shown_frames(len(video.frames))
    w_in = 9.0
    panel_h = w_in / 2 * video.height / max(video.width, 1)
    fig = Figure(figsize=(w_in, 1.3 + panel_h * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    objects: set[int] = set(video.object_ids)
    for r, t in enumerate(rows):
        with Image.open(video.frames[t]) as im:
            rgb = np.asarray(im.convert("RGB"))
        gt = truth_labels(video, t)
        pred = lookup(t)
        if pred is not None:
            objects.update(int(o) for o in np.unique(pred) if o != 0)
        name = video.frame_names[t]
        panels = [
            (gt, f"frame {name}: ground truth" + ("" if gt is not None else " (none)")),
            (pred, f"frame {name}: prediction" + ("" if pred is not None else " (none)")),
        ]
        for c, (labels, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(np.clip(_blend(rgb, labels), 0, 1))
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    colours = davis_palette()
    handles = [Patch(color=colours[o % 256] / 255.0, label=f"object {o}") for o in sorted(objects)]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)),
                   fontsize=8, frameon=False)  # fmt: skip
    _finish(fig, f"{sequence}: first, middle and last frame", untrained, path)
    return path


def _note(untrained: bool | None) -> str:
    return UNTRAINED_NOTE if untrained else ""


def _finish(fig: Figure, title: str, untrained: bool | None, path: Path) -> None:
    note = _note(untrained)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10,
                 color="darkred" if note else "black")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    save_legible(fig, path, dpi=100)


def jf_per_sequence_figure(ev: VideoEvaluator, path: Path, untrained: bool | None) -> bool:
    """Horizontal bars of J, F and J&F per sequence (sorted by J&F); ``False`` when no sequence
    was scored."""
    seqs = [s for s in ev.sequences if not np.isnan(s["jf"])]
    if not seqs:
        return False
    seqs.sort(key=lambda s: s["jf"])
    n = len(seqs)
    fig = Figure(figsize=(7, 1.2 + 0.35 * n * 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(n)
    height = 0.27
    for k, (key, label) in enumerate((("jf", "J&F"), ("j_mean", "J"), ("f_mean", "F"))):
        ax.barh(y + (1 - k) * height, [s[key] for s in seqs], height, label=label)
    ax.set_yticks(y, [s["sequence"] for s in seqs])
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (mean over the sequence's objects)")
    ax.legend(fontsize=8, **LEGEND_OUTSIDE)
    _finish(fig, "J&F per sequence", untrained, path)
    return True


MAX_LINES = 12
"""Lines drawn by the J-over-frames figure (the worst sequences / objects beyond)."""


def j_over_frames_figure(ev: VideoEvaluator, path: Path, untrained: bool | None) -> bool:
    """J on every scored frame, one line per object (per sequence, mean over its objects, when
    there are more than :data:`MAX_LINES` objects; then the :data:`MAX_LINES` lowest): where
    tracking is lost. ``False`` when nothing was scored."""
    series: dict[str, dict[int, list[float]]] = {}
    per_object = len(ev.objects) <= MAX_LINES
    for o in ev.objects:
        key = f"{o.sequence}:{o.object_id}" if per_object else o.sequence
        line = series.setdefault(key, {})
        for t, j in zip(o.frames, o.j, strict=True):
            line.setdefault(t, []).append(j)
    series = {k: v for k, v in series.items() if v}
    if not series:
        return False
    means = {k: float(np.mean([np.mean(v) for v in line.values()])) for k, line in series.items()}
    keys = sorted(series, key=lambda k: means[k])[:MAX_LINES]
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k in keys:
        ts = sorted(series[k])
        ax.plot(ts, [float(np.mean(series[k][t])) for t in ts], marker=".", label=k)
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame index")
    ax.set_ylabel("J (IoU with ground truth)")
    ax.legend(fontsize=7, ncol=2 if len(keys) > 6 else 1, **LEGEND_OUTSIDE)
    what = "per object" if per_object else "per sequence (mean over objects)"
    extra = "" if len(series) <= MAX_LINES else f", the {MAX_LINES} lowest of {len(series)}"
    _finish(fig, f"J over frames, {what}{extra}", untrained, path)
    return True


def draw_figures(job_dir: Path, ev: VideoEvaluator, untrained: bool | None) -> list[dict[str, str]]:
    """The per-job figures (``[{path, caption}]``, paths relative to ``job_dir``)."""
    out = []
    note = f" -- {UNTRAINED_NOTE}" if untrained else ""
    jf = Path(JF_FIGURE)
    if jf_per_sequence_figure(ev, job_dir / jf, untrained):
        out.append({"path": str(jf), "caption": f"J&F per sequence{note}"})
    jt = Path(J_FRAMES_FIGURE)
    if j_over_frames_figure(ev, job_dir / jt, untrained):
        out.append({"path": str(jt), "caption": f"J over frames (where tracking is lost){note}"})
    return out
