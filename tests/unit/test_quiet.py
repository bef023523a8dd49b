"""Library log lines kept off the console (sam_bench.quiet): huggingface_hub's retries of an
unreachable server appear once, with the fix; MLflow's INFO lines only when asked."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from sam_bench.quiet import HUB_FIX, hub_retries_once


def _unreachable(retries: int) -> None:
    """huggingface_hub's own request-with-retries against a closed local port."""
    from huggingface_hub.utils._http import http_backoff

    with pytest.raises(Exception):  # noqa: B017  (whatever the HTTP client raises)
        http_backoff(
            "HEAD", "http://127.0.0.1:9/x/config.json", max_retries=retries,
            base_wait_time=0.01, max_wait_time=0.01,
        )  # fmt: skip


def _hub_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("huggingface_hub") and r.levelno >= logging.WARNING
    ]


def test_hub_retries_are_said_once_with_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        _unreachable(3)
    unfiltered = _hub_warnings(caplog)
    assert len(unfiltered) >= 4, unfiltered  # what a user saw before: every retry, twice
    caplog.clear()
    with caplog.at_level(logging.WARNING), hub_retries_once("CLIP x") as flt:
        _unreachable(3)
    (line,) = _hub_warnings(caplog)
    assert line.startswith("CLIP x: cannot reach the Hugging Face hub (")
    assert "127.0.0.1" in line and HUB_FIX in line and "HF_HUB_OFFLINE=1" in line
    assert flt.dropped == len(unfiltered) - 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the filter is gone afterwards
        _unreachable(1)
    assert len(_hub_warnings(caplog)) >= 2


@pytest.mark.parametrize("asked", [None, pytest.param("INFO", marks=pytest.mark.slow)])
def test_mlflow_info_lines_only_when_asked(asked: str | None, tmp_path) -> None:
    """A fresh SQLite store makes MLflow log "Creating initial MLflow database tables" at
    INFO on stderr: hidden after quiet_mlflow(), shown with MLFLOW_LOGGING_LEVEL=INFO."""
    code = (
        "from sam_bench.quiet import quiet_mlflow; quiet_mlflow()\n"
        "import mlflow\n"
        f"mlflow.set_tracking_uri('sqlite:///{tmp_path / 'm.db'}')\n"
        "mlflow.search_experiments()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}
    if asked:
        env["MLFLOW_LOGGING_LEVEL"] = asked
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
        check=True,
    )  # fmt: skip
    shown = "Creating initial MLflow database tables" in proc.stderr
    assert shown == bool(asked), proc.stderr[-2000:]
