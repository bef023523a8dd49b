"""``task=video``: semi-supervised video object segmentation with ``SAM2VideoPredictor`` on
DAVIS-style sequences, scored with J, F and J&F.

The package: :mod:`.settings` (the ``video.*`` section and how ``prompt.mode`` is read),
:mod:`.task` (:class:`VideoTask`), :mod:`.inputs` (frame folders and prompts),
:mod:`.tracking` (prompting and propagation), :mod:`.metrics` (J, F, propagation cost),
:mod:`.writer` (the job's files) and :mod:`.outputs` (what they are: palette PNGs, overlays,
tables, figures). ``VideoTask`` is imported on first use, so reading the settings imports
neither torch nor sam2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sam_bench.tasks.video.task import VideoTask

__all__ = ["VideoTask"]


def __getattr__(name: str) -> Any:
    if name == "VideoTask":
        from sam_bench.tasks.video.task import VideoTask

        return VideoTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
