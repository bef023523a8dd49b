"""Legible matplotlib figures: axis limits and ticks that say something, tick labels that do not
collide, and a check of what a reader would see as clutter.

Shared by the sweep plots (:mod:`sam_bench.report.plots`) and the tasks' own figures
(``tasks/<task>/figures.py``), so it sits in the foundation layer and imports only matplotlib.

* :func:`tidy_axis`: no offset labels (``+1.102e4``), limits around constant or all-zero data
  that do not invent a ``±0.04`` scale, a visible span around nearly constant data, integer
  ticks for counts (clicks, masks, frames).
* :func:`avoid_tick_overlap`: rotates the x tick labels of an axes whose labels collide, then
  thins them out if rotation is not enough; :func:`save_legible` saves a figure with it,
  drawing it once when nothing collides.
* :func:`overlaps`: every pair of text labels whose drawn extents intersect, and every legend
  that covers data or text, measured with matplotlib's own renderer
  (``Text.get_window_extent``, ``Legend.get_window_extent``, artists' extents).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import Collection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator, ScalarFormatter
from matplotlib.transforms import Bbox

#: Relative span under which nearly constant data get a wider, readable axis.
NARROW = 0.01
#: Pixels two extents must share before they count as overlapping (anti-aliasing slack).
SLACK = 1.0


def tidy_axis(
    ax: Axes,
    which: str,
    values: Iterable[float],
    *,
    integer: bool = False,
    zero_based: bool = False,
) -> None:
    """Make the ``which`` (``"x"`` / ``"y"``) axis of ``ax`` honest about ``values``.

    * plain tick labels, never an offset (``+1.102e4``) or scientific multiplier;
    * all values zero: the axis spans 0..1 (``zero_based`` or not), not ±0.04 around nothing;
    * all values equal (or within :data:`NARROW` of their size): the axis spans ±10% (±2%) of
      the value, so the ticks are distinct round numbers instead of noise digits;
    * ``integer``: ticks on whole numbers only (counts, clicks, frames);
    * ``zero_based``: the axis starts at 0 (bars).
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    set_lim = ax.set_xlim if which == "x" else ax.set_ylim
    get_lim = ax.get_xlim if which == "x" else ax.get_ylim
    formatter = axis.get_major_formatter()
    if isinstance(formatter, ScalarFormatter):
        formatter.set_useOffset(False)
        formatter.set_scientific(False)
    if integer:
        axis.set_major_locator(MaxNLocator(integer=True))
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    size = max(abs(lo), abs(hi))
    log = (ax.get_xscale() if which == "x" else ax.get_yscale()) == "log"
    if size == 0:
        if not log:
            set_lim(0, 1)
        return
    if hi - lo <= NARROW * size and not log:
        centre = (lo + hi) / 2
        half = max(0.1 * abs(centre) if hi == lo else 0.02 * abs(centre), (hi - lo))
        low, high = centre - half, centre + half
        if zero_based or (lo >= 0 and low < 0):
            low = 0.0 if zero_based else max(low, 0.0)
        set_lim(low, high)
        if integer and high - low < 2:
            set_lim(math.floor(low), math.ceil(high) if math.ceil(high) > low else low + 1)
    elif zero_based and not log:
        low, high = get_lim()
        set_lim(0 if lo >= 0 else low, high)


def renderer_of(fig: Figure) -> Any:
    """Lay ``fig`` out as drawing it would (its layout engine, every artist's position; on an
    Agg canvas when it has none that renders) and return the renderer, which measures text
    as the saved figure's; no pixel is drawn (the saved figure draws them once)."""
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    with renderer._draw_disabled():  # what Figure.draw_without_rendering does
        fig.draw(renderer)
    return renderer


_draw = renderer_of


def _drawn_ticklabels(ax: Axes, which: str) -> list[Text]:
    axis = ax.xaxis if which == "x" else ax.yaxis
    # the ticks matplotlib draws (those inside the view limits); a private method, no public one
    ticks = getattr(axis, "_update_ticks")()  # noqa: B009
    out: list[Text] = []
    for tick in ticks:
        for label in (tick.label1, tick.label2):
            if label.get_visible() and label.get_text():
                out.append(label)
    return out


def _boxes_collide(boxes: Sequence[Bbox]) -> bool:
    return any(_intersect(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _intersect(a: Bbox, b: Bbox) -> bool:
    """Whether two extents share more than :data:`SLACK` pixels in both directions."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w > SLACK and h > SLACK


def _has_ticks(fig: Figure) -> bool:
    return any(ax.get_visible() and ax.axison for ax in fig.axes)


def avoid_tick_overlap(fig: Figure, renderer: Any = None) -> bool:
    """Rotate the x tick labels of every axes of ``fig`` whose labels collide (30°, then 90°),
    then show every second, third... label until none collide. A figure without a visible
    axis (image panels) has no tick labels: it is left alone, not drawn. ``renderer``: that
    of a drawing of ``fig`` as it is now (then it is not laid out again to be measured).
    Returns whether anything changed (and ``fig`` was laid out again)."""
    if not _has_ticks(fig):
        return False
    changed = False
    renderer = renderer or _draw(fig)
    for ax in fig.axes:
        for angle in (30, 90):
            labels = _drawn_ticklabels(ax, "x")
            if not _boxes_collide([t.get_window_extent(renderer) for t in labels]):
                break
            changed = True
            for t in ax.get_xticklabels():
                t.set_rotation(angle)
                t.set_horizontalalignment("right" if angle < 90 else "center")
                t.set_rotation_mode("anchor" if angle < 90 else "default")
            renderer = _draw(fig)
        labels = _drawn_ticklabels(ax, "x")
        step = 2
        while _boxes_collide([t.get_window_extent(renderer) for t in labels if t.get_visible()]):
            changed = True
            for i, t in enumerate(labels):
                t.set_visible(i % step == 0)
            step += 1
            if step > len(labels):
                break
            renderer = _draw(fig)
    return changed


def save_legible(
    fig: Figure,
    path: Any,
    inspect: Callable[[Figure], None] | None = None,
    *,
    dpi: float = 100,
    metadata: dict[str, str] | None = None,
) -> None:
    """Save ``fig`` as a PNG at ``dpi`` with :func:`avoid_tick_overlap`, drawn once when its
    tick labels do not collide: laid out and drawn in one pass (``savefig`` lays a figure
    with a layout engine out in a pass of its own first), the labels measured on that drawing,
    and the figure laid out and drawn again only when they had to change (with that layout
    kept). ``inspect(fig)`` runs on the drawn figure before it is written (it may lay the
    figure out to measure it: then it is drawn again). The pixels and the PNG metadata
    (``metadata`` over matplotlib's ``Software``) are ``savefig``'s with the default
    ``savefig.*`` settings; other ``savefig.*`` rc settings do not apply."""
    import matplotlib.image

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    canvas.draw()
    changed = avoid_tick_overlap(fig, canvas.get_renderer())
    if inspect is not None:
        inspect(fig)
        changed = True
    if changed:  # drawn as last laid out (by the first drawing, the check or the inspection)
        fig.set_layout_engine("none")
        canvas.draw()
    matplotlib.image.imsave(
        path, canvas.buffer_rgba(), format="png", origin="upper", dpi=fig.dpi, metadata=metadata
    )


def texts_of(fig: Figure, renderer: Any) -> list[tuple[str, Text]]:
    """Every visible, non-empty text a reader sees (outside legends): the figure's texts and
    title, each axes' titles, axis labels, drawn tick labels, offset texts and annotations."""
    out: list[tuple[str, Text]] = []

    def add(where: str, t: Text | None) -> None:
        if t is not None and t.get_visible() and t.get_text().strip():
            out.append((where, t))

    suptitle = getattr(fig, "_suptitle", None)
    add("suptitle", suptitle)
    for t in fig.texts:
        add("figure text", t)
    for n, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        where = f"axes {n}"
        add(f"{where} title", ax.title)
        add(f"{where} left title", getattr(ax, "_left_title", None))
        add(f"{where} right title", getattr(ax, "_right_title", None))
        if ax.axison:
            add(f"{where} x label", ax.xaxis.label)
            add(f"{where} y label", ax.yaxis.label)
            add(f"{where} x offset", ax.xaxis.get_offset_text())
            add(f"{where} y offset", ax.yaxis.get_offset_text())
            for which in ("x", "y"):
                for t in _drawn_ticklabels(ax, which):
                    add(f"{where} {which} tick {t.get_text()!r}", t)
        for t in ax.texts:
            add(f"{where} text {t.get_text()!r}", t)
    # one entry per object (a title may be reached twice)
    seen: set[int] = set()
    unique = []
    for where, t in out:
        if id(t) not in seen:
            seen.add(id(t))
            unique.append((where, t))
    return unique


def _data_extents(ax: Axes, renderer: Any) -> list[tuple[str, Bbox]]:
    """Extents of the data an axes shows: bars and other patches, markers and lines (their
    points' neighbourhood), images."""
    out: list[tuple[str, Bbox]] = []
    for p in ax.patches:
        if isinstance(p, Patch) and p.get_visible():
            box = p.get_window_extent(renderer)
            if box.width > 0 or box.height > 0:
                out.append((f"bar/patch {p.get_label() or ''}".strip(), box))
    for line in ax.lines:
        if not isinstance(line, Line2D) or not line.get_visible():
            continue
        xy = ax.transData.transform(line.get_xydata())
        for x, y in xy:
            if math.isfinite(x) and math.isfinite(y):
                r = max(3.0, float(line.get_markersize()) / 2)
                out.append(
                    (f"line point {line.get_label()}", Bbox([[x - r, y - r], [x + r, y + r]]))
                )
    for c in ax.collections:
        if isinstance(c, Collection) and c.get_visible():
            offsets = np.asarray(c.get_offsets())
            if offsets.size:
                for x, y in c.get_offset_transform().transform(offsets):
                    if math.isfinite(x) and math.isfinite(y):
                        out.append(("marker", Bbox([[x - 4, y - 4], [x + 4, y + 4]])))
    for im in ax.images:
        if isinstance(im, AxesImage) and im.get_visible():
            out.append(("image", im.get_window_extent(renderer)))
    return out


def overlaps(fig: Figure) -> list[str]:
    """What clutters ``fig``, one line each (empty: nothing): two text labels whose extents
    intersect, a legend over a text label, a legend over data (bars, markers, line points,
    images) of any axes. Draws the figure first (its layout engine included)."""
    renderer = _draw(fig)
    problems: list[str] = []
    texts = [(w, t, t.get_window_extent(renderer)) for w, t in texts_of(fig, renderer)]
    for i, (wa, _, a) in enumerate(texts):
        for wb, _, b in texts[i + 1 :]:
            if _intersect(a, b):
                problems.append(f"text overlap: {wa} and {wb}")
    legends: list[Legend] = [lg for lg in fig.legends if lg.get_visible()]
    legends += [lg for ax in fig.axes if (lg := ax.get_legend()) is not None and lg.get_visible()]
    for lg in legends:
        box = lg.get_window_extent(renderer)
        for where, _, t in texts:
            if _intersect(box, t):
                problems.append(f"legend covers {where}")
        for n, ax in enumerate(fig.axes):
            for what, extent in _data_extents(ax, renderer):
                if _intersect(box, extent):
                    problems.append(f"legend covers data of axes {n}: {what}")
                    break
    return problems
