"""The prompted task (``task=prompted``): ``SAM2ImagePredictor`` prompted with clicks or boxes
derived from the instance ground truth. One package:

* :mod:`~sam_bench.tasks.prompted.settings`: ``prompt.*`` (:class:`PromptConfig`);
* :mod:`~sam_bench.tasks.prompted.task`: :class:`PromptedTask` (the protocols, the model call);
* :mod:`~sam_bench.tasks.prompted.protocols`: the protocols on one image;
* :mod:`~sam_bench.tasks.prompted.decoder`: many prompts of one image per decoder call;
* :mod:`~sam_bench.tasks.prompted.metrics`: per-instance outcomes, their evaluator and metrics;
* :mod:`~sam_bench.tasks.prompted.writer`: the job's files (:class:`PromptedWriter`);
* :mod:`~sam_bench.tasks.prompted.figures`: the job's figures.

The clicks and boxes a simulated user derives from a mask are shared with the video task
(:mod:`sam_bench.prompts`). ``PromptedTask`` is imported on use (the settings and metrics
modules are imported without torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam_bench.tasks.prompted.task import PromptedTask

__all__ = ["PromptedTask"]


def __getattr__(name: str) -> Any:
    if name == "PromptedTask":
        from sam_bench.tasks.prompted.task import PromptedTask

        return PromptedTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
