"""Comparer of ``palette_png_sequence`` outputs: per-frame label images of video jobs
(``predictions/<sequence>/<frame>.png``, DAVIS layout, pixel value = object id, 0 background,
255 void).

J (IoU) of every object in every frame against the baseline's frame (1 when the object is
absent from both, as in the DAVIS toolkit), averaged per object over the frames, then over the
objects of all sequences. Every frame either side wrote is compared, a missing one as an empty
frame (no first / last frame is dropped: this is agreement, not accuracy); the frames and
sequences only one side wrote are listed (the regression check makes them an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_bench.compare.comparers.common import MAX_LISTED, Comparer, png_files, read_labels

VOID = 255


@dataclass
class LabelComparison:
    """Agreement of one configuration's current label images with its baseline's."""

    n_sequences: int
    n_frames: int
    identical_frames: int
    changed_frames: int
    j_mean: float
    """Mean over objects (of all sequences) of J against the baseline, over frames."""
    per_sequence: list[tuple[str, int, float]] = field(default_factory=list)
    """``(sequence, frames compared, J mean over its objects)``."""
    frames_only_baseline: int = 0
    frames_only_current: int = 0
    sequences_only_baseline: list[str] = field(default_factory=list)
    sequences_only_current: list[str] = field(default_factory=list)
    frame_ids_only_baseline: list[str] = field(default_factory=list)
    """``<sequence>/<frame>`` of the frames only the baseline wrote."""
    frame_ids_only_current: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["per_sequence"] = [list(s) for s in self.per_sequence]
        d["frame_ids_only_baseline"] = self.frame_ids_only_baseline[:MAX_LISTED]
        d["frame_ids_only_current"] = self.frame_ids_only_current[:MAX_LISTED]
        return d

    @property
    def n_items(self) -> int:
        return self.n_frames

    @property
    def n_identical(self) -> int:
        return self.identical_frames

    @property
    def agreement(self) -> float:
        return self.j_mean

    def missing(self) -> tuple[list[str], list[str]]:
        return self.frame_ids_only_baseline, self.frame_ids_only_current

    def note(self) -> str:
        return f"{self.identical_frames} of {self.n_frames} frames identical"

    def details(self) -> list[str]:
        return [
            f"{self.identical_frames} of {self.n_frames} frames identical; J mean "
            f"{self.j_mean:.4f}",
            f"frames only in the baseline: {self.frames_only_baseline}; only in the current "
            f"run: {self.frames_only_current}",
        ]

    def table(self) -> tuple[list[str], list[list[str]]] | None:
        rows = [[s, str(n), f"{j:.4f}"] for s, n, j in self.per_sequence]
        return ["sequence", "frames", "J vs baseline"], rows


def frame_j(base: np.ndarray, cur: np.ndarray, objects: list[int]) -> dict[int, float]:
    """J of every object in one frame (1 when absent from both)."""
    out = {}
    for k in objects:
        a, b = base == k, cur == k
        union = np.logical_or(a, b).sum()
        out[k] = 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
    return out


def compare_label_folders(baseline: Path, current: Path) -> LabelComparison:
    """Agreement of two ``predictions/`` folders of per-frame label PNGs (see the module
    docstring). A frame or sequence only one side wrote counts as an empty frame on the other
    side (J 0 for every object it shows)."""
    seq_b = {p.name: p for p in sorted(Path(baseline).iterdir()) if p.is_dir()}
    seq_c = {p.name: p for p in sorted(Path(current).iterdir()) if p.is_dir()}
    per_sequence = []
    object_means: list[float] = []
    n_frames = identical = 0
    ids_b: list[str] = []
    ids_c: list[str] = []
    for name in sorted(set(seq_b) | set(seq_c)):
        fb = png_files(seq_b[name]) if name in seq_b else {}
        fc = png_files(seq_c[name]) if name in seq_c else {}
        ids_b.extend(f"{name}/{f}" for f in sorted(set(fb) - set(fc)))
        ids_c.extend(f"{name}/{f}" for f in sorted(set(fc) - set(fb)))
        pairs = []
        for f in sorted(set(fb) | set(fc)):
            b = read_labels(fb[f]) if f in fb else None
            c = read_labels(fc[f]) if f in fc else None
            if b is None and c is not None:
                b = np.zeros_like(c)
            if c is None and b is not None:
                c = np.zeros_like(b)
            if b is not None and c is not None:
                pairs.append((b, c, f in fb and f in fc))
        objects = sorted(
            {int(v) for b, c, _ in pairs for v in (*np.unique(b), *np.unique(c))} - {0, VOID}
        )
        scores: dict[int, list[float]] = {k: [] for k in objects}
        for b, c, both in pairs:
            n_frames += 1
            if b.shape != c.shape:
                for k in objects:
                    scores[k].append(0.0)
                continue
            identical += bool(both and np.array_equal(b, c))
            for k, j in frame_j(b, c, objects).items():
                scores[k].append(j)
        means = [float(np.mean(v)) for v in scores.values() if v]
        object_means.extend(means)
        per_sequence.append((name, len(pairs), float(np.mean(means)) if means else 1.0))
    return LabelComparison(
        n_sequences=len(per_sequence),
        n_frames=n_frames,
        identical_frames=identical,
        changed_frames=n_frames - identical,
        j_mean=float(np.mean(object_means)) if object_means else 1.0,
        per_sequence=per_sequence,
        frames_only_baseline=len(ids_b),
        frames_only_current=len(ids_c),
        sequences_only_baseline=sorted(set(seq_b) - set(seq_c)),
        sequences_only_current=sorted(set(seq_c) - set(seq_b)),
        frame_ids_only_baseline=ids_b,
        frame_ids_only_current=ids_c,
    )


COMPARER = Comparer(
    kind="palette_png_sequence",
    run=lambda base, cur, progress: compare_label_folders(base, cur),
    metric="video_j",
    label="J vs baseline masks",
    unit="frames",
    tolerance="video",
    title="Label images (predictions/):",
    method="Video label images: J of every object in every frame against the baseline's "
    "frame, mean per object over its frames, then over the objects (1.0 = identical).",
)
