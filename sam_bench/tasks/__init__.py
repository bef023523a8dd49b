"""Benchmark tasks. A task is a module (a :class:`~sam_bench.tasks.base.Task` subclass with its
:class:`~sam_bench.tasks.base.TaskSpec`) plus its configs (``conf/task/<name>.yaml`` and its
settings' section), registered by name in :mod:`sam_bench.registry`.

``amg`` (automatic mask generation) is built in; plugin modules register more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sam_bench import registry

if TYPE_CHECKING:
    from sam_bench.tasks.base import JobContext, Task, TaskResult, TaskSpec

__all__ = ["JobContext", "Task", "TaskResult", "TaskSpec", "get_task"]


def __getattr__(name: str) -> Any:
    # Imported on use: a task package's settings and metrics modules (imported by the config
    # schema and the metric catalogue) must not pull in torch through this package.
    if name in ("JobContext", "Task", "TaskResult", "TaskSpec"):
        from sam_bench.tasks import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name`` (:class:`ConfigError` with a suggestion
    otherwise)."""
    task: type[Task] = registry.load("task", name)
    return task
