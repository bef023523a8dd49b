"""Exceptions with messages meant for people (printed without a traceback)."""

from __future__ import annotations


class SamBenchError(Exception):
    """Base class: an error whose message alone tells the user what to do."""


class ConfigError(SamBenchError):
    """A configuration value is out of range or inconsistent. Names the key."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        # OmegaConf re-creates exceptions from their text alone: keep that text as is.
        super().__init__(key if message is None else f"invalid config `{key}`: {message}")


class DatasetError(SamBenchError):
    """A dataset as a whole cannot be read (missing folder, unreadable annotation file...)."""


class SampleError(SamBenchError):
    """One image or its annotation cannot be read. The job records it and goes on."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointUnavailable(SamBenchError):
    """A pretrained checkpoint is not on disk and cannot be downloaded."""
