"""Sweep plots (matplotlib, Agg, no pyplot state) written as PNGs to ``SWEEP/plots/``.

Every figure's title carries the sweep's caveats (untrained weights, shared-machine latency),
and is also stored in the PNG's ``Title`` text chunk so it can be read back. A plot that does
not apply is skipped; the reasons go to ``plots/skipped.json`` for the report.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from sam_bench.report.analysis import (
    SkipPlot,
    SweepFacts,
    num,
    ok_rows,
    override_value,
    pareto_front,
    sweep_facts,
    values_of,
)
from sam_bench.report.overlay import draw_overlays

PLOTS_DIR = "plots"
SKIPPED_FILE = "skipped.json"
MAX_HEATMAPS = 15
MAX_JOB_BARS = 24
MARKERS = "osD^vPX*<>ph"
MARGINAL_METRICS = ("miou", "mask_count_mean", "latency_ms_p50")
SIZE_ORDER = ("tiny", "small", "base", "large")

#: File stem (or prefix) -> caption used by the report.
CAPTIONS = {
    "pareto": "Accuracy vs latency: mIoU against median per-image latency; the Pareto set "
    "(no other job is both faster and more accurate) is ringed in red.",
    "heatmap": "Mean mIoU for each pair of values of two swept parameters "
    "(averaged over the other parameters; grey = no ok job).",
    "marginal_effects": "Marginal effect of each swept parameter: dots are jobs, the line "
    "joins the means over the other parameters.",
    "model_comparison": "Model comparison: mean over each model's jobs, whiskers min to max.",
    "recall_by_size": "Recall (COCO AR@1000) by ground-truth object size: small < 32² px, "
    "medium < 96² px, large otherwise.",
    "mask_overlays": "Mask overlays for the saved images: input, ground truth, and the "
    "best and worst ok configuration by mIoU (one colour per mask).",
}


def _finite(rows: list[dict[str, Any]], metric: str) -> list[float]:
    return [v for v in (num(r.get(metric)) for r in rows) if not math.isnan(v)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _model_key(name: str) -> tuple[int, str]:
    return next((i for i, s in enumerate(SIZE_ORDER) if s in name), len(SIZE_ORDER)), name


def save_figure(fig: Figure, title: str, path: Path, facts: SweepFacts) -> Path:
    """Title the figure with its caveats, save it, and store the title in the PNG metadata."""
    text = "\n".join([title, *facts.caveats()])
    fig.suptitle(text, fontsize=11, color="darkred" if facts.caveats() else "black")
    titles = "\n".join([text, *(ax.get_title() for ax in fig.axes if ax.get_title())])
    fig.savefig(path, dpi=100, metadata={"Title": titles, "Software": "sam_bench"})
    return path


def plot_pareto(rows: list[dict[str, Any]], facts: SweepFacts, path: Path) -> Path:
    """mIoU vs median latency, one marker per model, the Pareto set ringed and joined."""
    pts = [r for r in ok_rows(rows) if _finite([r], "miou") and _finite([r], "latency_ms_p50")]
    if len(pts) < 2:
        raise SkipPlot("needs at least two ok jobs with both mIoU and latency")
    front = pareto_front(rows)
    in_front = {id(r) for r in front}
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    models = sorted({str(r.get("model")) for r in pts}, key=_model_key)
    handles: list[Artist] = []
    for i, model in enumerate(models):
        mine = [r for r in pts if str(r.get("model")) == model]
        ax.scatter(
            [num(r["latency_ms_p50"]) for r in mine],
            [num(r["miou"]) for r in mine],
            marker=MARKERS[i % len(MARKERS)],
            s=[140 if id(r) in in_front else 50 for r in mine],
            color=f"C{i}",
            edgecolors=["red" if id(r) in in_front else "none" for r in mine],
            linewidths=2,
            zorder=3,
        )
        handles.append(
            Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color=f"C{i}", label=model)
        )
    xs = [num(r["latency_ms_p50"]) for r in front]
    ys = [num(r["miou"]) for r in front]
    ax.step(xs, ys, where="post", color="red", ls="--", lw=1, zorder=2)
    ring = Line2D([], [], color="red", ls="--", lw=1, marker="o", ms=11, mfc="none", mec="red")
    ring.set_markeredgewidth(2)
    ring.set_label("Pareto set")
    handles.append(ring)
    for r in pts:
        ax.annotate(
            f"#{r.get('job')}",
            (num(r["latency_ms_p50"]), num(r["miou"])),
            xytext=(5, 5),
            textcoords="offset points",
            fontsize=8,
        )
    lat = _finite(pts, "latency_ms_p50")
    if min(lat) > 0 and max(lat) / min(lat) > 20:
        ax.set_xscale("log")
    shared = " (shared machine)" if facts.concurrent_jobs else ""
    ax.set_xlabel(f"latency p50 per image, ms{shared}  (lower is better)")
    ax.set_ylabel("mIoU (higher is better)")
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    ax.legend(handles=handles, fontsize=8)
    return save_figure(fig, "Accuracy vs latency (Pareto front)", path, facts)


def mean_grid(
    rows: list[dict[str, Any]], a: str, b: str, metric: str = "miou"
) -> tuple[list[str], list[str], np.ndarray]:
    """Values of ``a`` and ``b`` and the mean ``metric`` of the ok jobs for each pair of them
    (NaN where no ok job has one): the heatmap's cells."""
    va, vb = values_of(rows, a), values_of(rows, b)
    grid = np.full((len(va), len(vb)), np.nan)
    for i, j in itertools.product(range(len(va)), range(len(vb))):
        cell = [
            r
            for r in ok_rows(rows)
            if override_value(r, a) == va[i] and override_value(r, b) == vb[j]
        ]
        vals = _finite(cell, metric)
        grid[i, j] = float(np.mean(vals)) if vals else np.nan
    return va, vb, grid


def plot_heatmap(rows: list[dict[str, Any]], facts: SweepFacts, path: Path, a: str, b: str) -> Path:
    """Mean mIoU over the other parameters for each (a, b) pair of values, annotated."""
    va, vb, grid = mean_grid(rows, a, b)
    if np.isnan(grid).all():
        raise SkipPlot(f"no ok job with an mIoU for {a} x {b}")
    size = (max(6.5, 2.5 + 1.1 * len(vb)), 2.6 + 0.6 * len(va))
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto")
    mid = np.nanmean(grid)
    for i, j in itertools.product(range(len(va)), range(len(vb))):
        v = grid[i, j]
        text, colour = ("–", "black") if np.isnan(v) else (f"{v:.3f}", "white" if v < mid else "k")
        ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(vb)), vb)
    ax.set_yticks(range(len(va)), va)
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    fig.colorbar(image, ax=ax, label="mean mIoU")
    return save_figure(fig, f"mean mIoU by {a} and {b}", path, facts)


def plot_marginal(rows: list[dict[str, Any]], facts: SweepFacts, path: Path) -> Path:
    """For each swept key and each of MARGINAL_METRICS: jobs as dots, means joined."""
    keys = facts.varying
    if not keys:
        raise SkipPlot("no parameter varies across jobs")
    good = ok_rows(rows)
    if not any(_finite(good, m) for m in MARGINAL_METRICS):
        raise SkipPlot("no ok job has mIoU, mask count or latency")
    fig = Figure(figsize=(12, 1.2 + 2.8 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), len(MARGINAL_METRICS), squeeze=False)
    for (k, key), (m, metric) in itertools.product(enumerate(keys), enumerate(MARGINAL_METRICS)):
        ax = axes[k][m]
        values = values_of(rows, key)
        means = []
        for x, value in enumerate(values):
            ys = _finite([r for r in good if override_value(r, key) == value], metric)
            ax.scatter([x] * len(ys), ys, color="grey", alpha=0.6, s=18)
            means.append(float(np.mean(ys)) if ys else np.nan)
        ax.plot(range(len(values)), means, "o-", color=f"C{m}", lw=2)
        ax.set_xticks(range(len(values)), values, fontsize=8)
        ax.set_xlabel(key, fontsize=9)
        shared = metric.startswith("latency") and facts.concurrent_jobs
        ax.set_title(f"{metric} (shared machine)" if shared else metric, fontsize=9)
        ax.grid(alpha=0.3)
    return save_figure(fig, "Marginal effect of each swept parameter", path, facts)


def plot_models(rows: list[dict[str, Any]], facts: SweepFacts, path: Path) -> Path:
    """One bar per model for each main metric: mean over its ok jobs, whiskers min to max."""
    good = ok_rows(rows)
    models = sorted({str(r.get("model")) for r in good}, key=_model_key)
    if len(models) < 2:
        raise SkipPlot("fewer than two models with ok jobs")
    mem = "peak_gpu_mem_mb" if _finite(good, "peak_gpu_mem_mb") else "peak_rss_mb"
    metrics = ("miou", "msa", "ar1000", "mask_count_mean", "latency_ms_p50", mem)
    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, metric in zip(axes, metrics, strict=True):
        stats = [_finite([r for r in good if str(r.get("model")) == m], metric) for m in models]
        mean = [float(np.mean(v)) if v else 0.0 for v in stats]
        lo = [mean[i] - min(v) if v else 0.0 for i, v in enumerate(stats)]
        hi = [max(v) - mean[i] if v else 0.0 for i, v in enumerate(stats)]
        ax.bar(range(len(models)), mean, yerr=[lo, hi], color=[f"C{i}" for i in range(len(models))])
        for i, v in enumerate(stats):
            ax.text(
                i,
                0,
                (f"{mean[i]:.3g}" if mean[i] < 1000 else f"{mean[i]:.0f}") if v else "n/a",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
        ax.set_title(metric, fontsize=10)
    return save_figure(fig, "Model comparison", path, facts)


def plot_recall_by_size(rows: list[dict[str, Any]], facts: SweepFacts, path: Path) -> Path:
    """AR@1000 for small, medium and large objects: per job, or per model for big sweeps."""
    good = ok_rows(rows)
    sizes = ("ar1000_small", "ar1000_medium", "ar1000_large")
    if not any(_finite(good, s) for s in sizes):
        raise SkipPlot("no ok job has a recall by object size")
    if len(good) <= MAX_JOB_BARS:
        groups = [(f"#{r.get('job')}", [r]) for r in good]
    else:
        models = sorted({str(r.get("model")) for r in good}, key=_model_key)
        groups = [(m, [r for r in good if str(r.get("model")) == m]) for m in models]
    fig = Figure(figsize=(max(6.0, 0.8 * len(groups) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    for s, size in enumerate(sizes):
        for g, (_, members) in enumerate(groups):
            vals = _finite(members, size)
            x = g + (s - 1) * 0.27
            value = float(np.mean(vals)) if vals else 0.0
            ax.bar(x, value, 0.27, color=f"C{s}")
            text = f"{value:.2f}" if vals else "n/a"
            ax.text(x, value + 0.01, text, ha="center", va="bottom", fontsize=7, rotation=90)
    handles = [
        Patch(color=f"C{s}", label=size.removeprefix("ar1000_")) for s, size in enumerate(sizes)
    ]
    ax.set_xticks(range(len(groups)), [name for name, _ in groups], fontsize=8)
    ax.set_ylabel("AR@1000 (higher is better)")
    ax.set_ylim(0, 1.05)
    ax.legend(handles=handles, title="object size", fontsize=8)
    return save_figure(fig, "Recall by object size", path, facts)


def _heatmap(rows: list[dict[str, Any]], facts: SweepFacts, a: str, b: str, path: Path) -> Path:
    return plot_heatmap(rows, facts, path, a, b)


def make_plots(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """Draw every plot that applies into ``SWEEP/plots/`` (old PNGs there are removed first);
    returns the PNGs written. Why any plot was skipped goes to ``plots/skipped.json``."""
    out = Path(sweep_dir) / PLOTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    facts = sweep_facts(rows)
    pairs = list(itertools.combinations(facts.varying, 2))
    heatmaps: list[tuple[str, Callable[[Path], Path]]] = [
        (f"heatmap_{_slug(a)}__{_slug(b)}", partial(_heatmap, rows, facts, a, b))
        for a, b in pairs[:MAX_HEATMAPS]
    ]
    jobs: list[tuple[str, Callable[[Path], Path]]] = [
        ("pareto", lambda p: plot_pareto(rows, facts, p)),
        *heatmaps,
        ("marginal_effects", lambda p: plot_marginal(rows, facts, p)),
        ("model_comparison", lambda p: plot_models(rows, facts, p)),
        ("recall_by_size", lambda p: plot_recall_by_size(rows, facts, p)),
        ("mask_overlays", lambda p: save_figure(*draw_overlays(rows), p, facts)),
    ]
    skipped: dict[str, str] = {}
    if len(facts.varying) < 2:
        skipped["heatmap"] = "needs at least two swept parameters"
    elif len(pairs) > MAX_HEATMAPS:
        skipped["heatmap"] = f"only the first {MAX_HEATMAPS} of {len(pairs)} pairs are drawn"
    written = []
    for name, draw in jobs:
        try:
            written.append(draw(out / f"{name}.png"))
        except SkipPlot as e:
            skipped[name] = str(e)
        except Exception as e:  # one broken plot must not cost the report
            skipped[name] = f"failed: {type(e).__name__}: {e}"
    (out / SKIPPED_FILE).write_text(json.dumps(skipped, indent=2) + "\n", encoding="utf-8")
    return written
