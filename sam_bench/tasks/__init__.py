"""Benchmark tasks. Each task turns a :class:`JobContext` into a :class:`TaskResult`.

``amg`` is the first; prompted, video and semantic tasks register here beside it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from sam_bench.errors import ConfigError
from sam_bench.tasks.base import JobContext, Task, TaskResult

__all__ = ["JobContext", "Task", "TaskResult", "get_task"]


def _amg() -> type[Task]:
    from sam_bench.tasks.amg import AMGTask

    return AMGTask


TASKS: dict[str, Callable[[], type[Task]]] = {"amg": _amg}


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name`` (error with a suggestion otherwise)."""
    try:
        return TASKS[name]()
    except KeyError:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError("task.name", f"unknown task {name!r}{hint}") from None
