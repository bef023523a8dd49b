"""The comparers of prediction outputs, by output kind (:data:`sam_bench.layout.KINDS`).

The regression check runs, for every matched configuration, the comparer of each prediction
kind both jobs declare; a kind without an entry here cannot be compared (an error, never a
pass). A comparer knows its kind's file format only, never a task.
"""

from __future__ import annotations

from sam_bench.compare.comparers import instance_rle, label_png, palette_png_sequence
from sam_bench.compare.comparers.common import Comparer, ItemComparison, MaskFileError

#: The comparer of each output kind.
COMPARERS: dict[str, Comparer] = {
    c.kind: c for c in (instance_rle.COMPARER, label_png.COMPARER, palette_png_sequence.COMPARER)
}

__all__ = ["COMPARERS", "Comparer", "ItemComparison", "MaskFileError"]
