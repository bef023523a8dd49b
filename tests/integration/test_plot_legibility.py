"""Every sweep plot kind, drawn from real records, is legible: no two text labels overlap, no
legend covers data or text, and no axis carries an offset label (``+1.102e4``).

The records come from real sweeps (random-weight SAM 2.1 tiny on the CPU): the golden sweep of
each task (``tests/golden/sweeps.py``: amg, prompted with box and iterative clicks, video,
semantic) and one AMG sweep over two models and two NMS thresholds (heatmap and model
comparison need two swept keys and two models). Every figure :func:`make_plots` draws is handed
to :func:`sam_bench.legible.overlaps` before it is saved; the extents come from matplotlib's
renderer (``Text.get_window_extent``, ``Legend.get_window_extent``, artists' extents).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from golden.sweeps import run_sweep
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sam_bench.legible import overlaps
from sam_bench.report.plots import make_plots
from sam_bench.report.summary import collect

pytestmark = pytest.mark.slow

SWEEPS = ("amg", "prompted", "video", "semantic", "models")
#: Plot kinds (file-name prefixes) the sweeps above must produce between them.
KINDS = ("pareto", "heatmap", "marginal_effects", "model_comparison", "series_", "mask_overlays")
CHECKED: dict[str, dict[str, Any]] = {}


def _models_sweep(cwd: Path) -> Path:
    out = cwd / "OUT"
    proc = run_cli(
        [
            "-m", "model=sam2_hiera_tiny,sam2.1_hiera_tiny", "model.weights=random",
            "device=cpu", "warmup=false", "tracking=none", "progress=false",
            "amg.points_per_side=4", "amg.pred_iou_thresh=0", "amg.stability_score_thresh=0",
            "amg.box_nms_thresh=0.7,1.0", "dataset.limit=1", "task.save_masks=1",
            f"hydra.sweep.dir={out}",
        ],
        cwd,
        env={"OMP_NUM_THREADS": "2"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


class Sweeps:
    """The real sweeps, each run the first time a test asks for it (``-k amg`` runs one)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.done: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self.done:
            cwd = self.factory.mktemp(name)
            if name == "models":
                self.done[name] = _models_sweep(cwd)
            else:
                proc, folder = run_sweep(name, cwd)
                assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
                self.done[name] = folder
        return self.done[name]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Sweeps:
    return Sweeps(tmp_path_factory)


def _axis_facts(fig: Figure) -> list[str]:
    """Offset labels and scientific multipliers a reader would have to add in their head, and
    all-zero data drawn on an axis that invents negative values (the old ±0.04)."""
    bad = []
    fig.canvas.draw()
    for n, ax in enumerate(fig.axes):
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            text = axis.get_offset_text().get_text()
            if axis.get_visible() and ax.axison and text:
                bad.append(f"axes {n} {which}: offset label {text!r}")
        ys = [p.get_height() for p in ax.patches if isinstance(p, Rectangle)]
        ys += [float(y) for line in ax.lines for y in line.get_ydata() if math.isfinite(float(y))]
        zero = bool(ys) and all(y == 0 for y in ys)
        if ax.axison and not ax.images and zero and ax.get_ylim()[0] < 0:
            bad.append(f"axes {n}: all-zero data on the axis {ax.get_ylim()}")
    return bad


@pytest.mark.parametrize("name", SWEEPS)
def test_every_plot_is_legible(name: str, sweeps: Sweeps) -> None:
    sweep = sweeps[name]
    rows = collect(sweep)
    problems: dict[str, list[str]] = {}

    def inspect(fig: Figure, path: Path) -> None:
        problems[path.stem] = overlaps(fig) + _axis_facts(fig)
        if path.stem.startswith("series_miou_after"):  # a curve over clicks: whole numbers
            ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t]
            problems[path.stem] += [f"fractional click tick {t}" for t in ticks if t != int(t)]

    written = make_plots(sweep, rows, inspect=inspect)
    assert written, f"{name}: no plot drawn"
    assert sorted(problems) == sorted(p.stem for p in written), "a plot skipped the check"
    CHECKED[name] = problems
    bad = {stem: found for stem, found in problems.items() if found}
    assert not bad, f"{name}: {bad}"


def test_every_plot_kind_was_checked(sweeps: Sweeps) -> None:
    if set(CHECKED) != set(SWEEPS):
        pytest.fail(f"the per-sweep checks did not all run: {sorted(CHECKED)}")
    drawn = {stem for problems in CHECKED.values() for stem in problems}
    missing = [k for k in KINDS if not any(stem.startswith(k) for stem in drawn)]
    assert not missing, f"plot kinds never drawn from the real sweeps: {missing} (drawn: {drawn})"
    curves = [s for s in drawn if s.startswith("series_miou_after")]
    assert curves, f"no mIoU-after-k-clicks curve among {sorted(drawn)}"
