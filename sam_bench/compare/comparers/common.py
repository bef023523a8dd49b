"""What every comparer of a prediction output kind shares: the file error, the label-image
reader and the shape of a comparer and of its result.

A comparer (:class:`Comparer`) compares one declared output of a configuration's baseline job
with the same output of its current job, item by item (an image, a frame), and returns an
:class:`ItemComparison`: how many items it compared, the items only one side has, one
agreement figure judged against a tolerance (1.0 = identical) and the lines the documents
show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

#: Items listed by name in the outputs (the worst first).
MAX_LISTED = 20


class MaskFileError(ValueError):
    """A predictions file or label folder that cannot be read."""


class ItemComparison(Protocol):
    """The result of one comparer on one matched configuration."""

    @property
    def n_items(self) -> int:
        """Items compared (images, frames)."""

    @property
    def n_identical(self) -> int:
        """Items identical on both sides."""

    @property
    def agreement(self) -> float:
        """The judged figure: 1.0 when every item is identical."""

    def missing(self) -> tuple[list[str], list[str]]:
        """Item ids only the baseline has, only the current run has."""

    def note(self) -> str:
        """One line for the configuration's table row."""

    def details(self) -> list[str]:
        """Lines for the configuration's section."""

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        """An optional table (headers, rows) for the configuration's section."""

    def to_dict(self) -> dict[str, Any]:
        """The comparison in ``regression.json``."""


@dataclass(frozen=True)
class Comparer:
    """How outputs of one kind are compared."""

    kind: str
    """The output kind (:data:`sam_bench.layout.KINDS`)."""
    run: Callable[[Path, Path, bool], ItemComparison]
    """``run(baseline path, current path, progress)``; raises :class:`MaskFileError`."""
    metric: str
    """Name of the agreement row in the configuration's table."""
    label: str
    """Label of that row."""
    unit: str
    """What an item is, plural (``images``, ``frames``)."""
    tolerance: str
    """The tolerance (``masks``, ``labels``, ``video``: :mod:`sam_bench.compare.tolerances`)."""
    title: str
    """Heading of the comparison in the configuration's section."""
    method: str
    """How agreement is computed, for the documents' method section."""


def count(n: int, unit: str) -> str:
    """``1 image``, ``2 images`` (``unit``: the plural)."""
    return f"{n} {unit[:-1] if n == 1 and unit.endswith('s') else unit}"


def read_labels(path: Path) -> np.ndarray:
    """A label PNG as an integer array (palette indices or gray values; RGB colours are
    packed into one integer per pixel)."""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "L", "I", "I;16", "1"):
                return np.asarray(im).astype(np.int64)
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
    except OSError as e:
        raise MaskFileError(f"{path}: cannot read it ({e})") from None
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed


def png_files(folder: Path) -> dict[str, Path]:
    """The PNG files of ``folder`` by stem (hidden files left out)."""
    if not folder.is_dir():
        raise MaskFileError(f"{folder}: not a folder")
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()
    }
