"""``avoid_tick_overlap`` draws a figure only when it has tick labels to check;
``save_legible`` saves what ``savefig`` saves, drawing the figure once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from sam_bench.legible import avoid_tick_overlap, save_legible


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


def _labelled(n: int) -> Figure:
    """A constrained-layout figure of two axes with ``n`` bars each (many: labels collide)."""
    fig = Figure(figsize=(4, 3), layout="constrained")
    for ax in fig.subplots(1, 2):
        ax.bar([f"label {i}" for i in range(n)], np.arange(n))
        ax.set_title("bars")
    fig.suptitle("title")
    return fig


def _pixels_and_info(path: Path) -> tuple[bytes, dict[str, str]]:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA")).tobytes(), dict(im.text)  # type: ignore[attr-defined]


@pytest.mark.parametrize("n", [3, 40], ids=["no-collision", "collisions"])
def test_save_legible_saves_what_savefig_saves(tmp_path: Path, n: int) -> None:
    """The PNG equals matplotlib's own: ``savefig`` after the check, with its layout kept
    (pixels and metadata); the figure is drawn once when nothing collides."""
    meta = {"Title": "t", "Software": "sam_bench"}
    ref = _labelled(n)
    FigureCanvasAgg(ref)
    changed = avoid_tick_overlap(ref)
    assert changed == (n == 40)
    ref.set_layout_engine("none")
    ref.savefig(tmp_path / "ref.png", dpi=100, metadata=meta)

    fig = _labelled(n)
    FigureCanvasAgg(fig)
    draws: list[int] = []
    fig.canvas.mpl_connect("draw_event", lambda e: draws.append(1))
    save_legible(fig, tmp_path / "ours.png", dpi=100, metadata=meta)
    assert _pixels_and_info(tmp_path / "ours.png") == _pixels_and_info(tmp_path / "ref.png")
    if n == 3:
        assert len(draws) == 1


def test_save_legible_shows_inspect_the_figure_it_writes(tmp_path: Path) -> None:
    seen: list[Figure] = []
    fig = _labelled(3)
    save_legible(fig, tmp_path / "f.png", seen.append)
    assert seen == [fig] and (tmp_path / "f.png").stat().st_size > 0
