"""Shared pytest helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
"""The licensed samples and docs shared next to the repository (``../shared``); may be absent."""


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is absent."""
    data = SHARED_DIR / "data"
    if not data.is_dir():
        pytest.skip(f"shared data not found at {data}")
    return data
