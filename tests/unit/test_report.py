"""The sweep report (plots, report.md/html, ``python -m sam_bench.report``) on fake sweeps:
job directories with hand-written ``result.json`` records and saved overlay masks."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import amg_record_fields
from PIL import Image
from pycocotools import mask as mask_utils

import sam_bench.metrics.instance  # noqa: F401  (declares the AMG metrics in the catalogue)
from sam_bench.report.analysis import SkipPlot, best_configuration, pareto_front, sweep_facts
from sam_bench.report.document import build_report, write_report
from sam_bench.report.overlay import decode_segmentation, paint
from sam_bench.report.plots import make_plots, mean_grid
from sam_bench.report.summary import collect

REPO = Path(__file__).resolve().parents[2]
ALL_KINDS = {
    "pareto",
    "heatmap",
    "marginal_effects",
    "model_comparison",
    "series_ar_1000_by_object_size",
    "mask_overlays",
}


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _save_masks(job_dir: Path, shift: int) -> None:
    """Two 40x60 images, each with two ground-truth boxes and predictions shifted by ``shift``."""
    masks = job_dir / "masks"
    masks.mkdir()
    for image_id in ("1", "2"):
        Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(masks / f"{image_id}.png")
        gt, pred = [], []
        for y, x in ((5, 5), (20, 30)):
            m = np.zeros((40, 60), bool)
            m[y : y + 10, x : x + 15] = True
            gt.append({"segmentation": _rle(m), "iscrowd": False})
            pred.append({"segmentation": _rle(np.roll(m, shift, axis=1)), "predicted_iou": 0.9})
        record = {
            "image_id": image_id,
            "image_file": f"{image_id}.png",
            "height": 40,
            "width": 60,
            "masks": pred,
            "ground_truth": gt,
        }
        (masks / f"{image_id}.json").write_text(json.dumps(record))


def write_job(
    sweep: Path,
    num: int,
    overrides: dict[str, Any],
    metrics: dict[str, Any],
    status: str = "ok",
    error: str | None = None,
    untrained: bool = True,
    model: str = "sam2.1_hiera_tiny",
    concurrent: int = 1,
    masks_shift: int | None = None,
) -> Path:
    """One fake job directory with a ``result.json`` in the documented layout."""
    job_dir = sweep / str(num)
    job_dir.mkdir(parents=True)
    record = {
        **amg_record_fields(metrics),
        "status": status,
        "error": error,
        "job": {"num": num, "dir": str(job_dir)},
        "overrides": [f"{k}={v}" for k, v in overrides.items()],
        "config": {"model": {"name": model}, "dtype": "fp32"},
        "environment": {
            "device": "cpu",
            "device_name": "cpu: Fake CPU",
            "torch": "9.9",
            "python": "3.11.7",
            "dtype": "fp32",
            "concurrent_jobs": concurrent,
        },
        "weights": {"label": "random" if untrained else "ab" * 32},
        "untrained": untrained,
        "dataset": {"name": "synthetic", "n_images": 2},
        "metrics": metrics,
        "item_errors": [],
    }
    (job_dir / "result.json").write_text(json.dumps(record))
    if masks_shift is not None:
        _save_masks(job_dir, masks_shift)
    return job_dir


def _metrics(miou: float | None, latency: float | None, **extra: Any) -> dict[str, Any]:
    base = {
        "miou": miou,
        "latency_ms_p50": latency,
        "mask_count_mean": 10.0,
        "msa": 0.1,
        "ar1000": 0.2,
        "ar1000_small": 0.1,
        "ar1000_medium": 0.3,
        "ar1000_large": None,
        "peak_rss_mb": 1000.0,
    }
    return {**base, **extra}


@pytest.fixture
def grid_sweep(tmp_path: Path) -> Path:
    """2 models x 2 points_per_side x 2 pred_iou_thresh, masks saved, one failed job."""
    sweep = tmp_path / "sweep"
    combos = itertools.product(("sam2.1_hiera_tiny", "sam2.1_hiera_small"), (4, 8), (0.0, 0.5))
    for n, (model, pps, thr) in enumerate(combos):
        miou = 0.3 + 0.05 * n
        write_job(
            sweep,
            n,
            {"model": model, "amg.points_per_side": pps, "amg.pred_iou_thresh": thr},
            _metrics(miou, 100.0 * pps * (2 if "small" in model else 1)),
            model=model,
            masks_shift=n,
        )
    write_job(
        sweep,
        8,
        {"model": "sam2.1_hiera_tiny", "amg.points_per_side": 16, "amg.pred_iou_thresh": 0.0},
        {},
        status="failed",
        error="RuntimeError: <boom> & 'quotes' | pipe",
    )
    return sweep


def _titles(paths: list[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        with Image.open(p) as im:
            out[p.stem] = im.text["Title"]
    return out


def _kind(stem: str) -> str:
    return "heatmap" if stem.startswith("heatmap") else stem


# --- analysis -----------------------------------------------------------------------------


def _sweep_line_front(rows: list[dict[str, Any]]) -> set[str]:
    """Pareto set by a different algorithm than the library's: sort, keep running maximum."""
    pts = [
        (float(r["latency_ms_p50"]), -float(r["miou"]), r["job"])
        for r in rows
        if r["status"] == "ok" and r["miou"] is not None and r["latency_ms_p50"] is not None
    ]
    keep: set[str] = set()
    best, last = -math.inf, None
    for lat, neg, job in sorted(pts):
        if -neg > best or (lat, neg) == last:
            keep.add(job)
            best, last = max(best, -neg), (lat, neg)
    return keep


@pytest.mark.parametrize("seed", range(20))
def test_pareto_front_matches_an_independent_computation(seed: int) -> None:
    rng = random.Random(seed)
    rows = []
    for n in range(rng.randint(1, 40)):
        miou = rng.choice([None, *(i / 10 for i in range(10))])
        lat = rng.choice([None, *range(1, 12)])
        status = rng.choice(["ok"] * 5 + ["failed", "partial"])
        rows.append({"job": str(n), "miou": miou, "latency_ms_p50": lat, "status": status})
    front = pareto_front(rows, "latency_ms_p50", "miou")
    assert {r["job"] for r in front} == _sweep_line_front(rows)
    lats = [r["latency_ms_p50"] for r in front]
    assert lats == sorted(lats)


def test_best_configuration_per_metric() -> None:
    rows = [
        {"job": "0", "status": "ok", "miou": "0.5", "latency_ms_p50": 30.0},
        {"job": "1", "status": "failed", "miou": 0.99, "latency_ms_p50": 1.0},
        {"job": "2", "status": "ok", "miou": 0.7, "latency_ms_p50": None},
        {"job": "3", "status": "ok", "miou": float("nan"), "latency_ms_p50": 20.0},
        {"job": "4", "status": "ok", "miou": 0.7, "latency_ms_p50": 20.0},
    ]
    assert best_configuration(rows, "miou")["job"] == "2"  # tie with 4: first wins
    assert best_configuration(rows, "latency_ms_p50")["job"] == "3"
    assert best_configuration(rows, "miou", maximize=False)["job"] == "0"
    assert best_configuration(rows, "msa") is None
    with pytest.raises(KeyError):
        best_configuration(rows, "no_such_metric")


def test_heatmap_cells_are_means_over_the_other_parameters(grid_sweep: Path) -> None:
    rows = collect(grid_sweep)
    va, vb, grid = mean_grid(rows, "amg.points_per_side", "amg.pred_iou_thresh", "miou")
    assert va == ["4", "8", "16"] and vb == ["0.0", "0.5"]
    # jobs n = 4*model + 2*pps_index + thr_index have miou 0.3 + 0.05 n
    for i, j in itertools.product(range(2), range(2)):
        expected = np.mean([0.3 + 0.05 * (4 * m + 2 * i + j) for m in range(2)])
        assert grid[i, j] == pytest.approx(expected)
    assert np.isnan(grid[2]).all()  # only the failed job has points_per_side=16


# --- plots --------------------------------------------------------------------------------


def test_every_plot_is_drawn_and_titled_untrained(grid_sweep: Path) -> None:
    rows = collect(grid_sweep)
    paths = make_plots(grid_sweep, rows)
    assert {_kind(p.stem) for p in paths} == ALL_KINDS
    assert all(p.parent == grid_sweep / "plots" and p.stat().st_size > 1000 for p in paths)
    titles = _titles(paths)
    for stem, title in titles.items():
        assert "UNTRAINED" in title, stem
        assert "sharing the machine" not in title, stem
    # best / worst by mIoU among ok jobs: 7 (0.65) and 0 (0.30); the failed job 8 is ignored
    assert "best: #7 " in titles["mask_overlays"] and "worst: #0 " in titles["mask_overlays"]
    assert json.loads((grid_sweep / "plots" / "skipped.json").read_text()) == {}


def test_trained_sweep_on_a_shared_machine(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for n, pps in enumerate((4, 8, 16)):
        write_job(
            sweep,
            n,
            {"amg.points_per_side": pps},
            _metrics(0.1 * n, 10.0 * n + 1),
            untrained=False,
            concurrent=2 if n == 1 else 1,
        )
    rows = collect(sweep)
    paths = make_plots(sweep, rows)
    for stem, title in _titles(paths).items():
        assert "UNTRAINED" not in title, stem
        assert "2 jobs sharing the machine" in title, stem
    md, html = write_report(sweep, rows, paths)
    for text in (md.read_text(), html.read_text()):
        assert "SHARED MACHINE" in text and "up to 2 jobs" in text
        assert "UNTRAINED" not in text


def test_plots_skip_gracefully(tmp_path: Path) -> None:
    one = tmp_path / "one"
    write_job(
        one,
        0,
        {"amg.points_per_side": 4},
        _metrics(None, None, ar1000_small=None, ar1000_medium=None),
    )
    assert make_plots(one, collect(one)) == []
    skipped = json.loads((one / "plots" / "skipped.json").read_text())
    assert set(skipped) == ALL_KINDS
    md, html = write_report(one, collect(one), [])
    assert "Plots not drawn" in html.read_text() and "no parameter varies" in md.read_text()

    failed = tmp_path / "failed"
    for n in range(3):
        write_job(
            failed,
            n,
            {"amg.points_per_side": 4 * (n + 1)},
            {},
            status="failed",
            error=f"OOM in job {n}",
        )
    files = build_report(failed)
    assert not [p for p in files if p.suffix == ".png"]
    text = (failed / "report.md").read_text()
    assert all(f"OOM in job {n}" in text for n in range(3))
    assert "No ok job has both mIoU and p50 ms" in text


def test_stale_plots_are_removed(grid_sweep: Path) -> None:
    first = make_plots(grid_sweep, collect(grid_sweep))
    assert any(p.stem.startswith("heatmap") for p in first)
    for d in list(grid_sweep.iterdir()):
        if d.name.isdigit() and d.name != "0":
            (d / "result.json").unlink()
    second = make_plots(grid_sweep, collect(grid_sweep))
    assert set((grid_sweep / "plots").glob("*.png")) == set(second)
    assert {p.stem for p in second} == {"series_ar_1000_by_object_size", "mask_overlays"}


def test_plots_drawn_in_two_processes_equal_those_drawn_in_one(
    grid_sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forked drawing (two processes) writes what drawing in this process writes: the same
    files in the same order, pixel for pixel, the same skipped reasons; a plot that fails in
    either process is reported, not lost."""
    from sam_bench.report import forked, plots

    rows = collect(grid_sweep)

    def broken(*args: Any) -> Path:
        raise RuntimeError("broken plot")

    monkeypatch.setattr(plots, "plot_marginal", broken)
    monkeypatch.setattr(forked, "cpus", lambda: 2)
    forks: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counted_fork)

    def drawn(paths: list[Path]) -> tuple[list[tuple[str, bytes]], str]:
        out = []
        for p in paths:
            with Image.open(p) as im:
                out.append((p.name, np.asarray(im.convert("RGBA")).tobytes()))
        return out, (grid_sweep / "plots" / "skipped.json").read_text()

    two = drawn(make_plots(grid_sweep, rows))
    assert len(forks) == 1
    one = drawn(make_plots(grid_sweep, rows, inspect=lambda fig, path: None))  # here only
    assert len(forks) == 1
    assert [n for n, _ in two[0]] == [n for n, _ in one[0]] and len(one[0]) >= 4
    assert two == one
    assert json.loads(two[1])["marginal_effects"] == "failed: RuntimeError: broken plot"


# --- overlay ------------------------------------------------------------------------------


def test_decode_segmentation_and_paint() -> None:
    m = np.zeros((8, 9), bool)
    m[2:5, 3:7] = True
    assert (decode_segmentation(_rle(m), 8, 9) == m).all()
    raw = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))  # bytes counts
    assert (decode_segmentation(raw, 8, 9) == m).all()
    poly = [[3, 2, 7, 2, 7, 5, 3, 5]]
    assert decode_segmentation(poly, 8, 9).sum() > 0
    image = np.zeros((8, 9, 3))
    out = paint(image, [m])
    assert (out[~m] == 0).all() and (out[m] > 0).any(axis=-1).all()


# --- report -------------------------------------------------------------------------------


class _StrictHTML(HTMLParser):
    """Fails on unbalanced tags; records every src/href."""

    VOID = frozenset({"meta", "img", "br", "hr", "link", "input", "source", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.urls: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


def test_report_contents(grid_sweep: Path) -> None:
    files = build_report(grid_sweep)
    names = {p.name for p in files}
    assert {"summary.csv", "report.md", "report.html", "pareto.png"} <= names
    md = (grid_sweep / "report.md").read_text()
    page = (grid_sweep / "report.html").read_text()

    parser = _StrictHTML()
    parser.feed(page)
    parser.close()
    assert parser.doctype and parser.stack == []
    pngs = [p for p in files if p.suffix == ".png"]
    images = [u for u in parser.urls if u.startswith("data:image/png;base64,")]
    links = [u for u in parser.urls if u not in images]
    assert len(images) == len(pngs)
    doc = (REPO / "docs" / "metrics.md").as_uri()  # every other URL: a metric's definition
    assert links and all(u.startswith(doc + "#") for u in links)
    assert "<script" not in page.lower() and "http" not in page

    # the failed job's error is escaped, and listed in both
    assert "RuntimeError: &lt;boom&gt; &amp; &#x27;quotes&#x27; | pipe" in page
    assert "<boom>" not in page and "<boom>" not in md and "\\| pipe" in md

    assert md.index("UNTRAINED MODEL") < md.index("## Overview")
    assert page.index("UNTRAINED MODEL") < page.index("Overview")
    assert "partially labelled" in md and "cpu: Fake CPU" in page

    # best miou: job 7 (0.65); lowest latency: job 0 (400 ms, tiny pps=4)
    rows = collect(grid_sweep)
    lines = {
        re.sub(r"^\[(.*)\]\(.*\)$", r"\1", line.split("|")[1].strip()): line
        for line in md.splitlines()
        if line.startswith("| ") and line.count("|") == 7
    }
    assert "| #7 |" in lines["miou"] and "0.650 (untrained)" in lines["miou"]
    assert "| #0 |" in lines["latency\\_ms\\_p50"]
    assert best_configuration(rows, "miou")["job"] == "7"
    pareto = md.split("## Pareto set")[1].split("## Plots")[0]
    expected = {f"#{r['job']}" for r in pareto_front(rows, "latency_ms_p50", "miou")}
    assert {t for t in pareto.split() if t.startswith("#") and t[1:].isdigit()} == expected
    # by hand: latency 400/800/1600 ms, the most accurate job at each wins
    assert expected == {"#1", "#5", "#7"}
    assert sweep_facts(rows).untrained_jobs == [str(n) for n in range(9)]


def test_cli(grid_sweep: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def report_cli(sweep: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sam_bench.report", str(sweep)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    ok = report_cli(grid_sweep)
    assert ok.returncode == 0, ok.stderr
    printed = ok.stdout.split()
    assert str(grid_sweep / "report.html") in printed and all(Path(p).is_file() for p in printed)
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing"):
        res = report_cli(bad)
        assert res.returncode == 2 and "error:" in res.stderr and "Traceback" not in res.stderr


def test_report_code_imports_no_model_code() -> None:
    code = (
        "import sys, sam_bench.report.document, sam_bench.report.__main__;"
        "import sam_bench.compare.cli, sam_bench.compare.output, sam_bench.compare.mlflow_source;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sam2', 'torchvision')];"
        "assert not bad, bad"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def test_quoted_overrides_with_spaces_and_non_ascii_stay_whole() -> None:
    """summary.csv joins a job's overrides with spaces: a quoted value (non-ASCII, with a
    space) comes back as one override, in the console's "all jobs" line too."""
    from sam_bench.report.console import varying_keys
    from sam_bench.report.summary import split_overrides

    text = "task=toy dataset.limit=1 sweep_name='café ü' note=\"a b\""
    assert split_overrides(text) == [
        "task=toy", "dataset.limit=1", "sweep_name='café ü'", 'note="a b"',
    ]  # fmt: skip
    assert split_overrides("x='unbalanced y") == ["x='unbalanced", "y"]
    rows = [{"overrides": text}, {"overrides": text.replace("limit=1", "limit=2")}]
    varying, fixed = varying_keys(rows)
    assert varying == ["dataset.limit"]
    assert fixed == {"task": "toy", "sweep_name": "'café ü'", "note": '"a b"'}


def test_report_links_every_metric_to_its_definition(grid_sweep: Path) -> None:
    """Every metric of the "About the metrics" and "best" tables links to an anchor of
    docs/metrics.md that exists, in both report.html (file: URLs) and report.md (paths
    relative to the sweep folder)."""
    from urllib.parse import unquote, urlsplit

    build_report(grid_sweep)
    doc = REPO / "docs" / "metrics.md"
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', doc.read_text()))
    page = (grid_sweep / "report.html").read_text()
    hrefs = re.findall(r'<a href="([^"]+)">([^<]+)</a>', page)
    about = page.split('id="metrics"')[1].split("</table>")[0]
    shown = re.findall(r"<tr><td>(?:<a [^>]+>)?([a-z0-9_]+)", about)
    assert len(shown) >= 10, "the metrics table lists no metric"
    linked = {text for _, text in hrefs}
    assert set(shown) <= linked, f"metrics without a link: {sorted(set(shown) - linked)}"
    for href, text in hrefs:
        parts = urlsplit(href)
        assert parts.scheme == "file" and Path(unquote(parts.path)) == doc.resolve(), href
        assert parts.fragment in anchors, f"{text}: no anchor #{parts.fragment} in {doc}"
    md = (grid_sweep / "report.md").read_text()
    md_links = re.findall(r"\[([a-z0-9\\_]+)\]\(([^)#]+)#([^)]+)\)", md)
    assert len(md_links) == len(hrefs)
    for _, path, fragment in md_links:
        assert (grid_sweep / path).resolve() == doc.resolve() and fragment in anchors


def test_overlays_name_every_tied_job(tmp_path: Path) -> None:
    """Jobs tied for best (and worst) are all named, not the first alone; examples without
    instance ground truth are not drawn as 'ground truth (0)'."""
    from sam_bench.report.overlay import draw_overlays

    sweep = tmp_path / "sweep"
    for n, (miou, pps) in enumerate([(0.5, 4), (0.5, 8), (0.2, 16), (0.2, 32)]):
        write_job(sweep, n, {"amg.points_per_side": pps}, _metrics(miou, 100.0), masks_shift=n)
    rows = collect(sweep)
    fig, title = draw_overlays(rows, "miou")
    assert "best (2 jobs tie; masks of #0): #0 amg.points_per_side=4; #1" in title
    assert "worst (2 jobs tie; masks of #2): #2 amg.points_per_side=16; #3" in title
    panel_titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("best #0, #1\n") for t in panel_titles), panel_titles
    assert any(t.startswith("worst #2, #3\n") for t in panel_titles), panel_titles

    for n in range(4):  # every job ties: one column, named "all jobs tie"
        write_job(tmp_path / "flat", n, {"amg.points_per_side": 4 * (n + 1)},
                  _metrics(0.4, 100.0), masks_shift=n)  # fmt: skip
    fig, title = draw_overlays(collect(tmp_path / "flat"), "miou")
    assert len(fig.axes) == 2 * 3  # 2 images x (image, ground truth, one prediction column)
    assert any(ax.get_title().startswith("all jobs tie #0, #1, #2, #3") for ax in fig.axes)

    for job in (sweep / str(n) for n in range(4)):  # no instance ground truth saved
        for path in (job / "masks").glob("*.json"):
            data = json.loads(path.read_text())
            path.write_text(json.dumps({**data, "ground_truth": []}))
    with pytest.raises(SkipPlot, match="no instance ground truth"):
        draw_overlays(rows, "miou")
