"""Headless Chromium for rendering checks, driven by Playwright with the system's Chromium
(never a browser download). ``SAM_BENCH_CHROMIUM`` names the executable. Without one (or
without Playwright) a test is skipped saying why, except in CI (``CI=true``), where it fails:
``.ci/run`` installs both, so a missing browser there is a broken set-up, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

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

#: Where a Chromium is looked for (after ``SAM_BENCH_CHROMIUM``).
CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "/usr/lib/chromium/chromium"]


def in_ci() -> bool:
    """Whether this runs in CI (``CI`` set to true, as GitHub Actions, GitLab and ``.ci/run``
    set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """Skip saying why; in CI, fail: the browser tests must run there."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}: .ci/run installs it", pytrace=False)
    pytest.skip(reason)


def find_chromium(names: list[str] | None = None) -> str | None:
    """``SAM_BENCH_CHROMIUM``, else the first of ``names`` (default :data:`CHROMIUM_NAMES`)
    on ``PATH``."""
    for name in [os.environ.get("SAM_BENCH_CHROMIUM", ""), *(names or CHROMIUM_NAMES)]:
        if name and (found := shutil.which(name)):
            return found
    return None


def chromium(names: list[str] | None = None) -> str:
    """The Chromium executable, or skip (in CI: fail) saying why there is none."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("Playwright is not installed (pip install playwright)")
    found = find_chromium(names)
    if found is None:
        missing("no Chromium executable (apt-get install chromium, or set SAM_BENCH_CHROMIUM)")
    return found
