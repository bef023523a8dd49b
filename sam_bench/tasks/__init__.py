"""Benchmark tasks. A task is a module (a :class:`~sam_bench.tasks.base.Task` subclass with its
:class:`~sam_bench.tasks.base.TaskSpec`) plus its configs (``conf/task/<name>.yaml`` and its
settings' section), registered by name in :mod:`sam_bench.registry`.

``amg`` (automatic mask generation) is built in; plugin modules register more.
"""

from __future__ import annotations

from sam_bench import registry
from sam_bench.tasks.base import JobContext, Task, TaskResult, TaskSpec

__all__ = ["JobContext", "Task", "TaskResult", "TaskSpec", "get_task"]


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name`` (:class:`ConfigError` with a suggestion
    otherwise)."""
    task: type[Task] = registry.load("task", name)
    return task
