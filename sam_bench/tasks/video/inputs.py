"""A sequence as the video predictor's input: its frames linked into a folder sam2 reads, and
each object's prompt derived from the ground truth (``prompt.mode``, see
:mod:`sam_bench.tasks.video.task`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.data.base import VideoTruth
from sam_bench.errors import ConfigError
from sam_bench.tasks.video.metrics import prompt_frames
from sam_bench.tasks.video.settings import MODES


@dataclass
class Prompt:
    """One object's prompt on its first annotated frame."""

    obj: int
    frame: int
    mode: str
    mask: np.ndarray | None = None
    point: tuple[int, int] | None = None
    """``(x, y)`` pixel of a positive click."""
    box: tuple[float, float, float, float] | None = None
    """``(x0, y0, x1, y1)``."""

    def describe(self) -> str:
        if self.point is not None:
            return f"obj {self.obj}@{self.frame}: click {self.point}"
        if self.box is not None:
            return f"obj {self.obj}@{self.frame}: box {[round(v) for v in self.box]}"
        return f"obj {self.obj}@{self.frame}: mask"


def derive_prompts(video: VideoTruth, mode: str) -> list[Prompt]:
    """Each object's prompt (see the module docstring), by object id."""
    from sam_bench.prompts import first_click, tight_box

    out = []
    for obj, frame in sorted(prompt_frames(video).items()):
        mask = mask_utils.decode(video.masks[frame][obj]).astype(bool)
        if mode == "mask":
            out.append(Prompt(obj, frame, mode, mask=mask))
        elif mode == "click":
            click = first_click(mask)
            assert click is not None  # prompt frames have a non-empty mask
            out.append(Prompt(obj, frame, mode, point=(click.x, click.y)))
        elif mode == "box":
            box = tight_box(mask)
            assert box is not None
            out.append(Prompt(obj, frame, mode, box=tuple(float(v) for v in box)))  # type: ignore[arg-type]
        else:
            raise ConfigError("prompt.mode", f"{mode!r} is not one of {', '.join(MODES)}")
    return out


@dataclass
class VideoInput:
    """A sequence ready for the predictor: its frames linked into a folder it reads."""

    folder: Path
    frames: list[Path]
    height: int
    width: int
    prompts: list[Prompt]
    steps: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """Columns of the sequence's per-item row: its size and its objects' prompts."""
        return {
            "height": self.height,
            "width": self.width,
            "prompts": "; ".join(p.describe() for p in self.prompts),
        }

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def link_frames(frames: list[Path], folder: Path) -> str:
    """Make ``folder/<index:05d>.jpg`` point to each frame (a symbolic link; a copy where links
    are not possible); returns how."""
    folder.mkdir(parents=True, exist_ok=True)
    how = "linked"
    for i, src in enumerate(frames):
        dst = folder / f"{i:05d}.jpg"
        try:
            os.symlink(src.resolve(), dst)
        except OSError:
            shutil.copyfile(src, dst)
            how = "copied"
    return how


def make_input(video: VideoTruth, frames: list[Path], prompts: list[Prompt]) -> VideoInput:
    """The frame folder (a temporary directory) for ``frames`` with ``prompts``."""
    folder = Path(tempfile.mkdtemp(prefix="sam_bench-video-"))
    how = link_frames(frames, folder)
    steps = [f"{len(frames)} frames {how} as 00000.jpg ... for sam2's JPEG-folder reader"]
    return VideoInput(folder, frames, video.height, video.width, prompts, steps)
