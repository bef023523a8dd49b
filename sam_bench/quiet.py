"""Library log lines a user did not ask for, kept off the console.

* **MLflow** configures its own stderr handler at INFO when imported ("Creating initial MLflow
  database tables...", alembic upgrades). sam_bench sets ``MLFLOW_LOGGING_LEVEL=WARNING``
  unless the user set it (``MLFLOW_LOGGING_LEVEL=INFO`` brings the lines back); child
  processes (joblib workers) inherit it.
* **Hugging Face hub retries**: without network, ``huggingface_hub`` logs two lines per retry
  (five retries, ~25 s) for every file CLIP asks for. :func:`hub_retries_once` lets the first
  through as one line that says what is happening and how to avoid it, and drops the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

MLFLOW_LEVEL_VAR = "MLFLOW_LOGGING_LEVEL"

#: Loggers through which huggingface_hub reports failed requests and their retries.
HUB_LOGGERS = ("huggingface_hub.utils._http", "huggingface_hub.file_download")

HUB_FIX = (
    "without network, set HF_HUB_OFFLINE=1 to read only the local Hugging Face cache (no "
    "retries), give a local folder or checkpoint, or measure speed only with "
    "semantic.clip_weights=random"
)


def quiet_mlflow() -> None:
    """MLflow's INFO lines off stderr unless ``MLFLOW_LOGGING_LEVEL`` says otherwise."""
    if os.environ.get(MLFLOW_LEVEL_VAR):
        return
    os.environ[MLFLOW_LEVEL_VAR] = "WARNING"
    for name in ("mlflow", "alembic"):  # already imported: its loggers are configured
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


class _FirstRetryOnly(logging.Filter):
    """Passes the first warning (rewritten as one line with the fix), drops the others."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self.passed = 0
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if self.passed:
            self.dropped += 1
            return False
        self.passed += 1
        first = " ".join(record.getMessage().split())[:300]
        record.msg = (
            "%s: cannot reach the Hugging Face hub (%s); huggingface_hub retries quietly "
            "before giving up. To skip this: %s"
        )
        record.args = (self.what, first, HUB_FIX)
        return True


@contextlib.contextmanager
def hub_retries_once(what: str) -> Iterator[_FirstRetryOnly]:
    """While inside, huggingface_hub's request-failure and retry warnings appear once, as one
    line naming ``what`` is being fetched and the fix."""
    flt = _FirstRetryOnly(what)
    loggers = [logging.getLogger(n) for n in HUB_LOGGERS]
    for logger in loggers:
        logger.addFilter(flt)
    try:
        yield flt
    finally:
        for logger in loggers:
            logger.removeFilter(flt)
