"""``report.html`` as a person sees it: headless Chromium (driven by Playwright, with the
system's Chromium: no browser download) renders it with every image and no console error,
and the page asks for nothing but ``data:`` URIs.

Skipped with the reason when Playwright or a Chromium executable is absent (``.ci/run``
installs both). ``SAM_BENCH_CHROMIUM`` names the executable; ``SAM_BENCH_SCREENSHOT_DIR``
keeps the full-page screenshot.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.report.document import build_report

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]


def _chromium() -> str:
    """The Chromium executable, or skip the test saying why there is none."""
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip)")
    candidates = [
        os.environ.get("SAM_BENCH_CHROMIUM", ""),
        "chromium",
        "chromium-browser",
        "google-chrome",
        "/usr/lib/chromium/chromium",
    ]
    for name in candidates:
        if name and (found := shutil.which(name)):
            return found
    pytest.skip("no Chromium executable (apt-get install chromium, or set SAM_BENCH_CHROMIUM)")


@dataclass
class Rendered:
    """What the browser saw."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""


def render(page_path: Path, screenshot: Path) -> Rendered:
    """Open ``page_path`` in headless Chromium; collect errors, requests and image sizes."""
    from playwright.sync_api import sync_playwright

    seen = Rendered()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: m.type == "error" and seen.console_errors.append(m.text))
            page.on("pageerror", lambda e: seen.page_errors.append(str(e)))
            page.on("request", lambda r: seen.requests.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load", timeout=60_000)
            seen.images = page.evaluate(
                "Array.from(document.images).map(i => ({complete: i.complete,"
                " w: i.naturalWidth, h: i.naturalHeight, src: i.currentSrc.slice(0, 30)}))"
            )
            seen.text = page.inner_text("body")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def _rle(m: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _fake_sweep(sweep: Path) -> None:
    """Four untrained jobs over two swept keys (with saved masks) and one failed job."""
    for n, (pps, thr) in enumerate(itertools.product((4, 8), (0.0, 0.5))):
        job = sweep / str(n)
        (job / "masks").mkdir(parents=True)
        metrics = {
            "miou": 0.2 + 0.1 * n,
            "latency_ms_p50": 50.0 * pps + n,
            "msa": 0.1,
            "mask_count_mean": pps * 3.0,
            "ar1000_small": 0.1,
            "ar1000_medium": 0.2,
            "ar1000_large": 0.3,
            "peak_rss_mb": 900.0,
        }
        record = {
            "task": "amg",  # its saved masks are found through the task's outputs
            "status": "ok",
            "error": None,
            "untrained": True,
            "metrics": metrics,
            "overrides": [f"amg.points_per_side={pps}", f"amg.pred_iou_thresh={thr}"],
            "config": {"model": {"name": "sam2.1_hiera_tiny"}},
            "environment": {"device": "cpu", "concurrent_jobs": 2},
            "weights": {"label": "random"},
        }
        (job / "result.json").write_text(json.dumps(record))
        Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(job / "masks" / "1.png")
        m = np.zeros((32, 48), bool)
        m[4:20, 6 + n : 30 + n] = True
        shown = {
            "image_id": "1",
            "image_file": "1.png",
            "height": 32,
            "width": 48,
            "masks": [{"segmentation": _rle(m)}],
            "ground_truth": [{"segmentation": _rle(np.roll(m, 3)), "iscrowd": 0}],
        }
        (job / "masks" / "1.json").write_text(json.dumps(shown))
    failed = sweep / "4"
    failed.mkdir()
    record = {
        "status": "failed",
        "error": "ValueError: <img src=x onerror=alert(1)>",
        "overrides": ["amg.points_per_side=32", "amg.pred_iou_thresh=0.0"],
    }
    (failed / "result.json").write_text(json.dumps(record))


def _shot_path(tmp_path: Path, name: str) -> Path:
    keep = os.environ.get("SAM_BENCH_SCREENSHOT_DIR")
    return Path(keep) / name if keep else tmp_path / name


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    _chromium()
    sweep = tmp_path / "sweep"
    _fake_sweep(sweep)
    files = build_report(sweep)
    pngs = [p for p in files if p.suffix == ".png"]
    assert len(pngs) >= 5
    page_path = sweep / "report.html"
    seen = render(page_path, _shot_path(tmp_path, "report.png"))

    assert seen.console_errors == [] and seen.page_errors == []
    assert [u for u in seen.requests if not u.startswith("data:")] == [page_path.as_uri()]
    assert len(seen.images) == len(pngs)
    for img in seen.images:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
        assert img["src"].startswith("data:image/png;base64,"), img
    assert "UNTRAINED MODEL" in seen.text and "SHARED MACHINE" in seen.text
    assert "ValueError: <img src=x onerror=alert(1)>" in seen.text  # shown as text, not markup
    with Image.open(_shot_path(tmp_path, "report.png")) as shot:
        assert shot.width == 1280 and shot.height > 3000


def test_the_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The same checks on a page with a script error, a broken image and a remote request."""
    _chromium()
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<img src="data:image/png;base64,AAAA"><img src="http://127.0.0.1:9/x.png">'
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    seen = render(bad, tmp_path / "bad.png")
    assert any("boom" in e for e in seen.console_errors)
    assert any("undefinedFunction" in e for e in seen.page_errors)
    assert "http://127.0.0.1:9/x.png" in seen.requests
    assert [img["w"] for img in seen.images] == [0, 0]
