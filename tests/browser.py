"""Headless Chromium for rendering checks, driven by Playwright with the system's Chromium
(never a browser download). ``SAM_BENCH_CHROMIUM`` names the executable; a test without one
(or without Playwright) is skipped saying why."""

from __future__ import annotations

import os
import shutil

import pytest

#: Chromium flags for a sandbox-less, offline, quiet headless run.
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


def chromium() -> str:
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
