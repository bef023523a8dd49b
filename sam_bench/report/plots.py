"""Sweep plots (matplotlib, Agg, no pyplot state) written as PNGs to ``SWEEP/plots/``.

Which metrics a plot shows comes from the records (:class:`~sam_bench.report.view.MetricView`):
each task's Pareto axes (its accuracy metric against its cost metric), its headline metrics,
and the series the catalogue declares (``group``: a categorical series such as AR by object
size is drawn as grouped bars, a numeric one such as mIoU after k clicks as one line per job).

Every figure's title carries the sweep's caveats (untrained weights, shared-machine latency),
and is also stored in the PNG's ``Title`` text chunk so it can be read back. A plot that does
not apply is skipped; the reasons go to ``plots/skipped.json`` for the report.
"""

from __future__ import annotations

import contextvars
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

from sam_bench.layout import PLOTS_DIR, SKIPPED_FILE
from sam_bench.legible import renderer_of, save_legible, tidy_axis
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
from sam_bench.report.forked import run_forked
from sam_bench.report.overlay import draw_overlays
from sam_bench.report.view import MetricView

MAX_HEATMAPS = 15
MAX_JOB_BARS = 24
MAX_CURVES = 12
MARKERS = "osD^vPX*<>ph"
SIZE_ORDER = ("tiny", "small", "base", "large")

#: An axes legend beside the plot, never over its data (the constrained layout makes room).
LEGEND_OUTSIDE: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0),
                                  "borderaxespad": 0.0}  # fmt: skip

Inspect = Callable[[Figure, Path], None]
#: Called with every figure :func:`make_plots` draws, just before it is saved (tests check
#: the figures' legibility with it; then every figure is drawn in this process); ``None``:
#: nothing is called, and the figures are drawn by two processes
#: (:mod:`sam_bench.report.forked`).
_INSPECT: contextvars.ContextVar[Inspect | None] = contextvars.ContextVar(
    "sam_bench_plot_inspect", default=None
)


def integer_metric(view: MetricView, name: str) -> bool:
    """Whether ``name`` counts whole things (its ticks are whole numbers): clicks, or a
    metric shown without decimals."""
    m = view.get(name)
    return m is not None and (m.unit == "clicks" or m.fmt == "{:.0f}")


def tidy(ax: Any, which: str, values: list[float], view: MetricView, metric: str,
         zero_based: bool = False) -> None:  # fmt: skip
    """:func:`sam_bench.legible.tidy_axis` for the axis showing ``metric``."""
    tidy_axis(ax, which, values, integer=integer_metric(view, metric), zero_based=zero_based)


def caption(stem: str, view: MetricView) -> str:
    """The report's caption of the plot file ``stem``."""
    y, x = view.main_accuracy() or "?", view.main_cost() or "?"
    if stem.startswith("pareto"):
        task = stem.partition("_")[2]
        axes = {t: (tx, ty) for t, tx, ty in view.pareto_axes()}
        x, y = axes.get(task, (x, y))
        return (
            f"{view.label(y)} against {view.label(x)}; the Pareto set (no other job is both "
            "cheaper and more accurate) is ringed in red."
        )
    if stem.startswith("heatmap"):
        return (
            f"Mean {view.label(y)} for each pair of values of two swept parameters (averaged "
            "over the other parameters; grey = no ok job)."
        )
    if stem == "marginal_effects":
        return (
            "Marginal effect of each swept parameter: dots are jobs, the line joins the means "
            "over the other parameters."
        )
    if stem == "model_comparison":
        return "Model comparison: mean over each model's jobs, whiskers min to max."
    if stem.startswith("series_"):
        for group, members in view.groups().items():
            if stem == f"series_{_slug(group).lower()}":
                text = "; ".join(f"{m.group_x}: {m.description}" for m in members[:4])
                return f"{group} ({text}{'; ...' if len(members) > 4 else ''})."
        return stem
    if stem == "mask_overlays":
        return (
            "Mask overlays for the saved images: input, ground truth, and the best and worst "
            f"ok configuration by {view.label(y)} (one colour per mask)."
        )
    return stem


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
    inspect = _INSPECT.get()
    save_legible(
        fig,
        path,
        None if inspect is None else partial(_inspect_at, inspect, path),
        dpi=100,
        metadata={"Title": titles, "Software": "sam_bench"},
    )
    return path


def _inspect_at(inspect: Inspect, path: Path, fig: Figure) -> None:
    inspect(fig, path)


def plot_pareto(rows: list[dict[str, Any]], facts: SweepFacts, path: Path, x: str, y: str) -> Path:
    """``y`` (accuracy) vs ``x`` (cost), one marker per model, the Pareto set ringed and
    joined."""
    view = facts.view
    pts = [r for r in ok_rows(rows) if _finite([r], y) and _finite([r], x)]
    if len(pts) < 2:
        raise SkipPlot(f"needs at least two ok jobs with both {y} and {x}")
    front = pareto_front(rows, x, y)
    in_front = {id(r) for r in front}
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    models = sorted({str(r.get("model")) for r in pts}, key=_model_key)
    handles: list[Artist] = []
    for i, model in enumerate(models):
        mine = [r for r in pts if str(r.get("model")) == model]
        ax.scatter(
            [num(r[x]) for r in mine],
            [num(r[y]) for r in mine],
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
    xs = [num(r[x]) for r in front]
    ys = [num(r[y]) for r in front]
    ax.step(xs, ys, where="post", color="red", ls="--", lw=1, zorder=2)
    ring = Line2D([], [], color="red", ls="--", lw=1, marker="o", ms=11, mfc="none", mec="red")
    ring.set_markeredgewidth(2)
    ring.set_label("Pareto set")
    handles.append(ring)
    lat = _finite(pts, x)
    if min(lat) > 0 and max(lat) / min(lat) > 20:
        ax.set_xscale("log")
    shared = " (shared machine)" if facts.concurrent_jobs and x.startswith("latency") else ""
    ax.set_xlabel(view.axis_label(x) + shared)
    ax.set_ylabel(view.axis_label(y))
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    tidy(ax, "x", lat, view, x)
    tidy(ax, "y", _finite(pts, y), view, y)
    ax.legend(handles=handles, fontsize=8, **LEGEND_OUTSIDE)
    label_points(fig, ax, [(num(r[x]), num(r[y]), f"#{r.get('job')}") for r in pts])
    title = f"{view.label(y)} vs {view.label(x)} (Pareto front)"
    return save_figure(fig, title, path, facts)


def label_points(fig: Figure, ax: Any, points: list[tuple[float, float, str]]) -> None:
    """Name each point beside it: points at the same place share one label (``#0, #2``), and a
    label that would cover another moves up until it does not."""
    merged: dict[tuple[float, float], list[str]] = {}
    for px, py, text in points:
        merged.setdefault((px, py), []).append(text)
    renderer = renderer_of(fig)
    placed: list[Any] = []
    for (px, py), names in merged.items():
        label = ", ".join(names)
        for step in range(12):
            dy = 5 + 10 * step if step % 2 == 0 else -(5 + 10 * step)
            t = ax.annotate(label, (px, py), xytext=(5, dy), textcoords="offset points",
                            fontsize=8)  # fmt: skip
            box = t.get_window_extent(renderer)
            if not any(_collide(box, b) for b in placed):
                placed.append(box)
                break
            t.remove()
        else:
            placed.append(
                ax.annotate(
                    label, (px, py), xytext=(5, 5), textcoords="offset points", fontsize=8
                ).get_window_extent(renderer)
            )


def _collide(a: Any, b: Any) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0


def mean_grid(
    rows: list[dict[str, Any]], a: str, b: str, metric: str
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


def plot_heatmap(
    rows: list[dict[str, Any]], facts: SweepFacts, path: Path, a: str, b: str, metric: str
) -> Path:
    """Mean ``metric`` over the other parameters for each (a, b) pair of values, annotated."""
    label = facts.view.label(metric)
    va, vb, grid = mean_grid(rows, a, b, metric)
    if np.isnan(grid).all():
        raise SkipPlot(f"no ok job with {metric} for {a} x {b}")
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
    fig.colorbar(image, ax=ax, label=f"mean {label}")
    return save_figure(fig, f"mean {label} by {a} and {b}", path, facts)


def marginal_metrics(view: MetricView) -> list[str]:
    """The accuracy metric, the first headline count metric and the cost metric."""
    count = next(
        (n for n in view.headline() if (m := view.get(n)) is not None and m.kind == "count"), None
    )
    names = [view.main_accuracy(), count, view.main_cost()]
    return [n for n in dict.fromkeys(names) if n]


def plot_marginal(rows: list[dict[str, Any]], facts: SweepFacts, path: Path) -> Path:
    """For each swept key and each of :func:`marginal_metrics`: jobs as dots, means joined."""
    keys = facts.varying
    metrics = marginal_metrics(facts.view)
    if not keys:
        raise SkipPlot("no parameter varies across jobs")
    good = ok_rows(rows)
    if not metrics or not any(_finite(good, m) for m in metrics):
        raise SkipPlot(f"no ok job has any of {', '.join(metrics) or 'the main metrics'}")
    fig = Figure(figsize=(4 * len(metrics), 1.2 + 2.8 * len(keys)), layout="constrained")
    axes = fig.subplots(len(keys), len(metrics), squeeze=False)
    for (k, key), (m, metric) in itertools.product(enumerate(keys), enumerate(metrics)):
        ax = axes[k][m]
        values = values_of(rows, key)
        means = []
        for x, value in enumerate(values):
            ys = _finite([r for r in good if override_value(r, key) == value], metric)
            ax.scatter([x] * len(ys), ys, color="grey", alpha=0.6, s=18)
            means.append(float(np.mean(ys)) if ys else np.nan)
        ax.plot(range(len(values)), means, "o-", color=f"C{m}", lw=2)
        ax.set_xticks(range(len(values)), values, fontsize=8)
        tidy(ax, "y", _finite(good, metric), facts.view, metric)
        ax.set_xlabel(key, fontsize=9)
        shared = metric.startswith("latency") and facts.concurrent_jobs
        label = facts.view.label(metric)
        ax.set_title(f"{label} (shared machine)" if shared else label, fontsize=9)
        ax.grid(alpha=0.3)
    return save_figure(fig, "Marginal effect of each swept parameter", path, facts)


def plot_models(rows: list[dict[str, Any]], facts: SweepFacts, path: Path) -> Path:
    """One bar per model for each main metric: mean over its ok jobs, whiskers min to max."""
    good = ok_rows(rows)
    models = sorted({str(r.get("model")) for r in good}, key=_model_key)
    if len(models) < 2:
        raise SkipPlot("fewer than two models with ok jobs")
    metrics = [m for m in facts.view.headline() if _finite(good, m)][:6]
    if not metrics:
        raise SkipPlot("no headline metric has a value")
    ncols = min(3, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig = Figure(figsize=(4 * ncols, 3.5 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    for ax, metric in zip(axes, metrics, strict=False):
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
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_title(facts.view.axis_label(metric), fontsize=10)
        tidy(ax, "y", [v for s in stats for v in s], facts.view, metric, zero_based=True)
    return save_figure(fig, "Model comparison", path, facts)


def plot_series(rows: list[dict[str, Any]], facts: SweepFacts, path: Path, group: str) -> Path:
    """A catalogue series: grouped bars per job (or per model for big sweeps) for a
    categorical one, one line per job for a numeric one (e.g. a curve over clicks)."""
    members = facts.view.groups().get(group, [])
    names = [m.name for m in members]
    good = ok_rows(rows)
    if not any(_finite(good, n) for n in names):
        raise SkipPlot(f"no ok job has a value of {group}")
    numeric = all(isinstance(m.group_x, int | float) for m in members)
    y_label = group
    higher = facts.view.direction(names[0])
    goal = "" if higher is None else (" (higher is better)" if higher else " (lower is better)")
    if numeric:
        return _curves(good, facts, path, group, members, goal)
    if len(good) <= MAX_JOB_BARS:
        groups = [(f"#{r.get('job')}", [r]) for r in good]
    else:
        models = sorted({str(r.get("model")) for r in good}, key=_model_key)
        groups = [(m, [r for r in good if str(r.get("model")) == m]) for m in models]
    width = 0.8 / max(len(names), 1)
    fig = Figure(figsize=(max(6.0, 0.8 * len(groups) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    for s, name in enumerate(names):
        for g, (_, rows_g) in enumerate(groups):
            vals = _finite(rows_g, name)
            x = g + (s - (len(names) - 1) / 2) * width
            value = float(np.mean(vals)) if vals else 0.0
            ax.bar(x, value, width, color=_series_colour(s, len(names)))
            text = f"{value:.2f}" if vals else "n/a"
            ax.text(x, value, text, ha="center", va="bottom", fontsize=7, rotation=90)
    handles = [
        Patch(color=_series_colour(s, len(names)), label=str(m.group_x))
        for s, m in enumerate(members)
    ]
    ax.set_xticks(range(len(groups)), [name for name, _ in groups], fontsize=8)
    ax.set_ylabel(y_label + goal)
    values = [v for n in names for v in _finite(good, n)]
    tidy(ax, "y", values, facts.view, names[0], zero_based=True)
    ax.legend(handles=handles, fontsize=8, **LEGEND_OUTSIDE)
    return save_figure(fig, group, path, facts)


def _series_colour(i: int, n: int) -> Any:
    """Distinct colours for up to 20 members (matplotlib's cycle repeats after 10)."""
    return f"C{i}" if n <= 10 else colormaps["tab20"](i % 20)


def _curves(
    good: list[dict[str, Any]],
    facts: SweepFacts,
    path: Path,
    group: str,
    members: list[Any],
    goal: str,
) -> Path:
    xs = [float(m.group_x) for m in members]
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(good[:MAX_CURVES]):
        ys = [num(r.get(m.name)) for m in members]
        if all(math.isnan(v) for v in ys):
            continue
        label = job_label_short(r, facts)
        ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], color=f"C{i % 10}", label=label)
    ax.set_xlabel(_series_axis(group))
    ax.set_ylabel(facts.view.label(members[0].name).split(" @")[0] + goal)
    ax.grid(alpha=0.3)
    tidy_axis(ax, "x", xs, integer=all(float(v).is_integer() for v in xs))
    values = [num(r.get(m.name)) for r in good[:MAX_CURVES] for m in members]
    tidy(ax, "y", values, facts.view, members[0].name)
    ax.legend(fontsize=7, **LEGEND_OUTSIDE)
    more = f" (first {MAX_CURVES} of {len(good)} jobs)" if len(good) > MAX_CURVES else ""
    return save_figure(fig, group + more, path, facts)


def _series_axis(group: str) -> str:
    """The x-axis label of a numeric series: the words after its last "after"/"by"/"per"."""
    for word in (" after ", " by ", " per ", " over "):
        if word in group:
            return group.rsplit(word, 1)[1]
    return group


def job_label_short(row: dict[str, Any], facts: SweepFacts) -> str:
    """``#3 key=value`` with the swept values of a job (for legends)."""
    from sam_bench.report.analysis import job_label

    return job_label(row, facts.varying)


def _heatmap(rows: list[dict[str, Any]], facts: SweepFacts, a: str, b: str, path: Path) -> Path:
    metric = facts.view.main_accuracy()
    if metric is None:
        raise SkipPlot("the sweep declares no accuracy metric")
    return plot_heatmap(rows, facts, path, a, b, metric)


def _pareto(rows: list[dict[str, Any]], facts: SweepFacts, x: str, y: str, path: Path) -> Path:
    return plot_pareto(rows, facts, path, x, y)


def _no_pareto(path: Path) -> Path:
    raise SkipPlot("no task in this sweep declares Pareto axes")


def _series(rows: list[dict[str, Any]], facts: SweepFacts, group: str, path: Path) -> Path:
    return plot_series(rows, facts, path, group)


def make_plots(
    sweep_dir: Path, rows: list[dict[str, Any]], inspect: Inspect | None = None
) -> list[Path]:
    """Draw every plot that applies into ``SWEEP/plots/`` (old PNGs there are removed first);
    returns the PNGs written. Why any plot was skipped goes to ``plots/skipped.json``.
    ``inspect(figure, path)`` is called with every figure before it is saved."""
    token = _INSPECT.set(inspect)
    try:
        return _make_plots(sweep_dir, rows)
    finally:
        _INSPECT.reset(token)


def _make_plots(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[Path]:
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
    axes = facts.view.pareto_axes()
    paretos: list[tuple[str, Callable[[Path], Path]]] = [
        (
            "pareto" if len(axes) == 1 else f"pareto_{_slug(task)}",
            partial(
                _pareto, [r for r in rows if len(axes) == 1 or r.get("task") == task], facts, x, y
            ),
        )
        for task, x, y in axes
    ]
    if not axes:
        paretos = [("pareto", _no_pareto)]
    series: list[tuple[str, Callable[[Path], Path]]] = [
        (f"series_{_slug(group).lower()}", partial(_series, rows, facts, group))
        for group in facts.view.groups()
    ]
    accuracy = facts.view.main_accuracy() or ""
    jobs: list[tuple[str, Callable[[Path], Path]]] = [
        *paretos,
        *heatmaps,
        ("marginal_effects", lambda p: plot_marginal(rows, facts, p)),
        ("model_comparison", lambda p: plot_models(rows, facts, p)),
        *series,
        ("mask_overlays", lambda p: save_figure(*draw_overlays(rows, accuracy), p, facts)),
    ]
    skipped: dict[str, str] = {}
    if len(facts.varying) < 2:
        skipped["heatmap"] = "needs at least two swept parameters"
    elif len(pairs) > MAX_HEATMAPS:
        skipped["heatmap"] = f"only the first {MAX_HEATMAPS} of {len(pairs)} pairs are drawn"
    tasks = [partial(_draw_one, draw, out / f"{name}.png") for name, draw in jobs]
    # two processes draw them (the sweep is done: its second core is free); one where a test
    # inspects each figure (its hook runs in this process)
    drawn = [t() for t in tasks] if _INSPECT.get() is not None else run_forked(tasks)
    written = []
    for (name, _), (path, why) in zip(jobs, drawn, strict=True):
        if path is not None:
            written.append(Path(path))
        else:
            skipped[name] = why
    (out / SKIPPED_FILE).write_text(json.dumps(skipped, indent=2) + "\n", encoding="utf-8")
    return written


def _draw_one(draw: Callable[[Path], Path], path: Path) -> tuple[str | None, str]:
    """``(path written, "")`` or ``(None, why it was skipped)``: JSON values (a figure drawn
    in the forked process comes back as JSON)."""
    try:
        return str(draw(path)), ""
    except SkipPlot as e:
        return None, str(e)
    except Exception as e:  # one broken plot must not cost the report
        return None, f"failed: {type(e).__name__}: {e}"
