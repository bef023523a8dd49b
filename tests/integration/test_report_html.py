"""``report.html`` as a person sees it: headless Chromium (driven by Playwright, with the
system's Chromium: no browser download) renders it with every image and no console error,
and the page asks for nothing but ``data:`` URIs.

Skipped with the reason when Playwright or a Chromium executable is absent, except in CI
(``CI=true``), where it fails instead: ``.ci/run`` installs both, so a missing browser there is
a broken CI set-up, never a silent skip. ``SAM_BENCH_CHROMIUM`` names the executable;
``SAM_BENCH_SCREENSHOT_DIR`` keeps the full-page screenshot.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from browser import ARGS, chromium
from conftest import run_cli
from PIL import Image

from sam_bench.report.document import build_report


@dataclass
class Rendered:
    """What the browser saw."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    #: Tables wider than the page (cut off, or only visible by scrolling sideways).
    overflowing: list[str] = field(default_factory=list)
    tables: int = 0


def render(page_path: Path, screenshot: Path) -> Rendered:
    """Open ``page_path`` in headless Chromium; collect errors, requests and image sizes."""
    from playwright.sync_api import sync_playwright

    seen = Rendered()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=ARGS)
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
            seen.overflowing = page.evaluate(
                "Array.from(document.querySelectorAll('table')).filter(t => {"
                " const box = t.getBoundingClientRect(), body = document.body"
                ".getBoundingClientRect(); return box.right > body.right + 1 ||"
                " t.parentElement.scrollWidth > t.parentElement.clientWidth + 1; })"
                ".map(t => t.closest('section').id + ': ' + t.rows[0].innerText.slice(0, 80))"
            )
            seen.tables = page.evaluate("document.querySelectorAll('table').length")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def _real_sweep(sweep: Path) -> None:
    """A real sweep (random-weight SAM 2 on the embedded data): four jobs over two swept keys
    with saved example masks, two at a time (joblib: the report warns of a shared machine);
    then a real run that fails into the sweep's folder ``4`` with markup in its reason (a
    checkpoint path holding an ``<img>`` tag), which the report must show as text."""
    proc = run_cli(
        [
            "-m", "model.weights=random", "tracking=none", "progress=false",
            "amg.points_per_side=4,8", "amg.pred_iou_thresh=0.0,0.5",
            "amg.stability_score_thresh=0", "amg.box_nms_thresh=1.0", "dataset.limit=1",
            "task.save_masks=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}",
        ],
        sweep.parent,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = run_cli(
        ["model.weights=pretrained", f'model.checkpoint="{MARKUP_CHECKPOINT}"', "tracking=none",
         "progress=false", f"hydra.run.dir={sweep / '4'}"],
        sweep.parent, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((sweep / "4" / "result.json").read_text())
    assert record["status"] == "failed" and MARKUP_CHECKPOINT in record["error"]


#: A checkpoint path that is markup: the failed job's reason names it.
MARKUP_CHECKPOINT = "/nonexistent/<img src=x onerror=alert(1)>.pt"


def _shot_path(tmp_path: Path, name: str) -> Path:
    keep = os.environ.get("SAM_BENCH_SCREENSHOT_DIR")
    return Path(keep) / name if keep else tmp_path / name


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    chromium()
    sweep = tmp_path / "sweep"
    _real_sweep(sweep)
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
    assert f"{MARKUP_CHECKPOINT}: no such file" in seen.text  # shown as text, not markup
    assert seen.tables >= 4 and seen.overflowing == [], seen.overflowing
    with Image.open(_shot_path(tmp_path, "report.png")) as shot:
        assert shot.width == 1280 and shot.height > 3000


def test_the_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The same checks on a page with a script error, a broken image and a remote request."""
    chromium()
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


def test_in_ci_a_missing_browser_fails_elsewhere_it_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAM_BENCH_CHROMIUM", raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but no Chromium executable"):
        chromium(["/nonexistent/chromium"])
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no Chromium executable"):
        chromium(["/nonexistent/chromium"])
