"""Plots of a comparison (matplotlib ``Figure``, no pyplot state), written as PNGs to
``regression_plots/`` next to the documents and embedded in ``regression.html``.

* ``cost_ratios.png``: every cost metric judged from per-image figures, current / baseline
  with its bootstrap interval, the tolerance limit marked;
* ``deltas.png``: accuracy, counts with a direction and mask agreement, current - baseline
  with the tolerance band (exact values: no interval).

Colour = verdict. The notable rows (regressions, then worse, then better) come first; at most
:data:`MAX_PLOT_ROWS` rows are drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam_bench.compare.judge import MetricResult

if TYPE_CHECKING:
    from sam_bench.compare.comparison import Comparison

PLOTS_DIR = "regression_plots"
#: Most rows drawn in one plot.
MAX_PLOT_ROWS = 40
COLOURS = {
    "regression": "#c0392b", "worse": "#e67e22", "changed": "#2e86c1", "same": "#7f8c8d",
    "better": "#27ae60", "inconclusive": "#8e44ad", "not judged": "#bdc3c7",
}  # fmt: skip


def plot_rows(comp: Comparison, sampled: bool) -> list[tuple[str, MetricResult]]:
    """``(configuration label, row)`` to draw: rows with an interval (``sampled``), or rows
    judged on an exact value with a direction."""
    rows = []
    for c in comp.configs:
        for r in c.rows:
            if sampled:
                keep = r.interval is not None and r.ratio is not None
            else:
                keep = (
                    r.basis == "value"
                    and r.kind in ("accuracy", "count", "masks")
                    and r.direction != "neither"
                    and r.delta is not None
                )
            if keep:
                rows.append((c.label, r))
    rank = {"regression": 0, "worse": 1, "better": 2}
    rows.sort(key=lambda lr: rank.get(lr[1].verdict, 3))  # stable: display order within
    return rows[:MAX_PLOT_ROWS]


def _figure(n_rows: int) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(9, 1.5 + 0.32 * n_rows), layout="constrained")


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else label[: width - 3] + "..."


def _legend(ax: Any, verdicts: set[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=COLOURS[v], label=v)
        for v in COLOURS
        if v in verdicts
    ]
    if handles:
        ax.legend(handles=handles, loc="best", fontsize="small")


def _yaxis(ax: Any, rows: list[tuple[str, MetricResult]]) -> None:
    ax.set_yticks(range(len(rows)), [f"{r.metric} | {_short(lbl)}" for lbl, r in rows])
    ax.invert_yaxis()


def plot_ratios(comp: Comparison, path: Path) -> Path | None:
    """Cost ratios current / baseline with their bootstrap intervals."""
    rows = plot_rows(comp, sampled=True)
    if not rows:
        return None
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    for i, (_, r) in enumerate(rows):
        assert r.interval is not None and r.ratio is not None
        lo, hi = r.interval
        err = [[max(r.ratio - lo, 0.0)], [max(hi - r.ratio, 0.0)]]
        ax.errorbar(r.ratio, i, xerr=err, fmt="o", color=COLOURS[r.verdict], capsize=3)
        if r.ratio_limit is not None:
            ax.plot([r.ratio_limit], [i], marker="|", markersize=14, color="#555555")
    ax.axvline(1.0, color="#333333", linewidth=1)
    _yaxis(ax, rows)
    ax.set_xlabel("current / baseline; | = tolerance limit")
    ax.set_title("Cost: ratio with its bootstrap interval (colour = verdict)")
    _legend(ax, {r.verdict for _, r in rows})
    fig.savefig(path, dpi=100)
    return path


def plot_deltas(comp: Comparison, path: Path) -> Path | None:
    """Deltas of the metrics judged on their value, with their tolerance band."""
    rows = plot_rows(comp, sampled=False)
    if not rows:
        return None
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    for i, (_, r) in enumerate(rows):
        if r.band:
            ax.plot([-r.band, r.band], [i, i], color="#d5d8dc", linewidth=7, solid_capstyle="butt")
        ax.plot([r.delta], [i], "o", color=COLOURS[r.verdict])
    ax.axvline(0.0, color="#333333", linewidth=1)
    _yaxis(ax, rows)
    ax.set_xlabel("current - baseline (grey: tolerance band; exact values, not sampled)")
    ax.set_title("Accuracy, counts and mask agreement: deltas (colour = verdict)")
    _legend(ax, {r.verdict for _, r in rows})
    fig.savefig(path, dpi=100)
    return path


def make_plots(comp: Comparison, out_dir: Path) -> list[tuple[Path, str]]:
    """The comparison's plots (written to ``out_dir/regression_plots/``) with captions."""
    if not comp.configs:
        return []
    folder = out_dir / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    ratios = plot_ratios(comp, folder / "cost_ratios.png")
    if ratios is not None:
        out.append((ratios, "Cost metrics: current / baseline with the bootstrap interval of "
                            "the ratio (per-image figures, paired by image); the tick marks "
                            "the tolerance limit."))  # fmt: skip
    deltas = plot_deltas(comp, folder / "deltas.png")
    if deltas is not None:
        caption = "Accuracy, counts with a direction and mask agreement: current - baseline, "
        caption += "grey band = tolerance."
        if comp.untrained:
            caption += " UNTRAINED MODEL: accuracy deltas show output changes only."
        out.append((deltas, caption))
    return out
