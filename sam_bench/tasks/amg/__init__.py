"""The ``amg`` task (automatic mask generation) as one package.

* :mod:`~sam_bench.tasks.amg.settings`: the ``amg`` settings section (:class:`AMGConfig`,
  ``conf/amg/*.yaml``) and the roles of its fields;
* :mod:`~sam_bench.tasks.amg.task`: :class:`AMGTask` (the engine call, grouping of jobs);
* :mod:`~sam_bench.tasks.amg.writer`: the files a job writes (declared outputs) and
  ``task_info``;
* :mod:`~sam_bench.tasks.amg.masks`: the JSON forms of an engine's masks.

The engines (:mod:`sam_bench.engines`) turn an image into masks; the instance metrics
(:mod:`sam_bench.metrics.instance`) are shared with the prompted task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam_bench.tasks.amg.task import AMGTask

__all__ = ["AMGTask"]


def __getattr__(name: str) -> Any:
    # Imported on first use: reading the settings (the config schema, a dry run) imports
    # neither torch nor sam2.
    if name == "AMGTask":
        from sam_bench.tasks.amg.task import AMGTask

        return AMGTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
