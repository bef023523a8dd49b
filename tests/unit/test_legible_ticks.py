"""``avoid_tick_overlap`` draws a figure only when it has tick labels to check."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sam_bench.legible import avoid_tick_overlap


def _figure(axis_on: bool) -> tuple[Figure, list[int]]:
    fig = Figure(figsize=(3, 2))
    FigureCanvasAgg(fig)
    draws: list[int] = []
    fig.canvas.mpl_connect("draw_event", lambda e: draws.append(1))
    ax = fig.add_subplot()
    if axis_on:  # 40 long labels on a 3-inch axis: they collide
        ax.bar([f"a long label {i}" for i in range(40)], np.arange(40))
    else:
        ax.imshow(np.zeros((8, 8)))
        ax.set_axis_off()
    return fig, draws


def test_image_panels_are_not_drawn() -> None:
    fig, draws = _figure(axis_on=False)
    avoid_tick_overlap(fig)
    assert draws == []


def test_colliding_tick_labels_are_still_fixed() -> None:
    fig, draws = _figure(axis_on=True)
    avoid_tick_overlap(fig)
    assert draws  # measured by drawing
    labels = fig.axes[0].get_xticklabels()
    assert labels[0].get_rotation() != 0 or not all(t.get_visible() for t in labels)
