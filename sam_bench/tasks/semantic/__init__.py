"""``task=semantic``: SAM 2's automatic masks labelled by CLIP zero-shot from the dataset's class
names, painted into a per-pixel class map and scored per class (IoU) against semantic label
maps.

The package holds all of the task: :mod:`.settings` (the ``semantic.*`` section), :mod:`.task`
(the model call: AMG, CLIP labels, painting), :mod:`.labels` (class maps), :mod:`.metrics`
(evaluators and the catalogue's semantic metrics), :mod:`.evaluators` (scoring saved maps),
:mod:`.writer` (the job's declared outputs), :mod:`.outputs` (reading saved class maps) and
:mod:`.figures`. The CLIP backends are shared (:mod:`sam_bench.clip`).

:class:`SemanticTask` is imported on first use, so reading the settings or the metrics does not
import torch or SAM 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam_bench.tasks.semantic.task import SemanticTask

__all__ = ["SemanticTask"]


def __getattr__(name: str) -> Any:
    if name == "SemanticTask":
        from sam_bench.tasks.semantic.task import SemanticTask

        return SemanticTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
