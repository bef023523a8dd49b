"""What ``task=video`` writes and reads besides the records: DAVIS-format palette PNGs (written
with ``save_predictions=true``, read back by ``predictions=DIR``), overlay videos, the
per-sequence / per-frame tables and the per-job figures.

**DAVIS-format PNGs**: ``<dir>/<sequence>/<frame name>.png``, one per frame, 8-bit palette
images whose indices are object ids (0 = background) with the DAVIS palette (the PASCAL VOC
colour map: colour k spreads the bits of k over the high bits of R, G and B), as the official
evaluators (``davis2017-evaluation``, sam2's ``vos_inference.py``) read and write them.
``<dir>/SOURCE.json`` says what produced them (model, weights, untrained), so a job scoring
them again carries the untrained banner.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import cv2
import numpy as np
from PIL import Image

from sam_bench.data.base import Dataset, ImageRef
from sam_bench.errors import ConfigError, SampleError
from sam_bench.layout import Output, item_stem
from sam_bench.record import write_json, write_rows_csv
from sam_bench.tasks.video.metrics import VideoEvaluator, VideoPrediction

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
OVERLAYS_DIR = "overlays"
FIGURES_DIR = "figures"
SOURCE_FILE = "SOURCE.json"
PER_SEQUENCE_FILE = "per_sequence.csv"
PER_FRAME_FILE = "per_frame.csv"
JF_FIGURE = f"{FIGURES_DIR}/jf_per_sequence.png"
J_FRAMES_FIGURE = f"{FIGURES_DIR}/j_over_frames.png"
FRAMES_FIGURES_DIR = f"{FIGURES_DIR}/frames"
UNTRAINED_NOTE = "UNTRAINED (random weights): accuracy is meaningless"

#: Every file a video job may write besides the runner's (``VideoTask.spec.outputs``). A job
#: scoring saved predictions (``predictions=DIR``) writes the tables and figures only.
OUTPUTS: tuple[Output, ...] = (
    Output(
        "predictions", "palette_png_sequence", f"{PREDICTIONS_DIR}/",
        "DAVIS palette PNGs <sequence>/<frame>.png (object ids, 0 background) and SOURCE.json "
        "(what produced them); predictions=DIR scores them again",
        "save_predictions",
    ),
    Output(
        "overlays", "overlay_videos", f"{OVERLAYS_DIR}/",
        "<sequence>.mp4 (an animated GIF where OpenCV cannot write mp4): the predicted masks "
        "over the frames", "video.save_overlay",
    ),
    Output(
        "per_sequence", "table_csv", PER_SEQUENCE_FILE,
        "J, F and J&F per sequence (object = all) and per object",
    ),
    Output("per_frame", "table_csv", PER_FRAME_FILE, "J and F per frame and object"),
    Output(
        "frames", "figure_folder", f"{FRAMES_FIGURES_DIR}/",
        "<sequence>.png: its first, middle and last frame with the ground-truth and the "
        "predicted masks (one colour per object), for the first task.save_masks sequences",
        "task.save_masks",
    ),
    Output(
        "jf_per_sequence", "figure", JF_FIGURE, "J, F and J&F per sequence (when one was scored)"
    ),
    Output(
        "j_over_frames", "figure", J_FRAMES_FIGURE,
        "J over frames per object: where tracking is lost (when a frame was scored)",
    ),
)  # fmt: skip


def overlay_path(job_dir: Path, sequence: str) -> Path:
    """Where the overlay video of ``sequence`` goes (``overlays/<item_stem>.mp4``)."""
    return job_dir / OVERLAYS_DIR / f"{item_stem(sequence)}.mp4"


def frames_figure_path(job_dir: Path, sequence: str) -> Path:
    """Where the frames figure of ``sequence`` goes (``figures/frames/<item_stem>.png``)."""
    return job_dir / FRAMES_FIGURES_DIR / f"{item_stem(sequence)}.png"


def davis_palette() -> np.ndarray:
    """(256, 3) uint8: the DAVIS / PASCAL VOC colour map."""
    out = np.zeros((256, 3), dtype=np.uint8)
    for k in range(256):
        rgb = [0, 0, 0]
        c = k
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        out[k] = rgb
    return out


def write_label_png(path: Path, labels: np.ndarray) -> None:
    """One frame's object ids as a DAVIS palette PNG."""
    if labels.size and int(labels.max()) > 255:
        raise ValueError(f"object id {int(labels.max())} does not fit a palette PNG (max 255)")
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(davis_palette().ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def save_sequence_pngs(
    out: Path,
    sequence: str,
    frame_names: list[str],
    prediction: VideoPrediction,
    shape: tuple[int, int],
) -> int:
    """Every frame of a sequence as ``out/<sequence>/<frame>.png`` (frames without a
    prediction, before the first prompt, are empty); returns the number written."""
    for t, name in enumerate(frame_names):
        labels = prediction.labels[t]
        write_label_png(
            out / sequence / f"{name}.png", np.zeros(shape, np.uint8) if labels is None else labels
        )
    return len(frame_names)


# --------------------------------------------------------------------------------------------
# reading a folder of predictions (``predictions=DIR``)


class _LazyLabels(Sequence[np.ndarray | None]):
    """Label maps read from PNG files when indexed."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    @overload
    def __getitem__(self, i: int) -> np.ndarray | None: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[np.ndarray | None]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        from sam_bench.data.davis import read_annotation

        ids, _, _ = read_annotation(self.paths[i])
        return ids


class PredictionFolder:
    """DAVIS-format PNGs of another run or tool (see the module docstring): ``get(ref)`` gives
    a sequence's predictions, read lazily, matched to the frames by name.

    Raises:
        ConfigError: ``path`` is not a folder, or has no folder for any listed sequence.
    """

    def __init__(self, path: Path, dataset: Dataset) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(
                "predictions",
                f"{self.path} is not a folder (task=video reads <sequence>/<frame>.png from one)",
            )
        names = [r.image_id for r in dataset.refs()]
        self.found = [n for n in names if (self.path / n).is_dir()]
        if not self.found:
            raise ConfigError(
                "predictions",
                f"{self.path} has no folder for any of the {len(names)} sequences "
                f"(expected e.g. {self.path / names[0] if names else '<sequence>'}/00000.png)",
            )
        missing = [n for n in names if n not in self.found]
        if missing:
            log.warning(
                "%s: no predictions for %d sequence(s) (they fail as sequence errors), e.g. %s",
                self.path, len(missing), ", ".join(missing[:5]),
            )  # fmt: skip
        self.source: dict[str, Any] = {}
        src = self.path / SOURCE_FILE
        if src.is_file():
            try:
                data = json.loads(src.read_text(encoding="utf-8"))
                self.source = data if isinstance(data, dict) else {}
            except (OSError, ValueError) as e:
                log.warning("cannot read %s: %s", src, e)
        self.sha256 = self._hash()

    def _files(self, sequence: str) -> list[Path]:
        folder = self.path / sequence
        return sorted(p for p in folder.glob("*.png") if not p.name.startswith("."))

    def _hash(self) -> str:
        h = hashlib.sha256()
        for seq in self.found:
            for p in self._files(seq):
                h.update(f"{seq}/{p.name}\t{p.stat().st_size}\n".encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    def get(self, ref: ImageRef) -> VideoPrediction:
        folder = self.path / ref.image_id
        if not folder.is_dir():
            raise SampleError(folder, "no predictions for this sequence")
        files = self._files(ref.image_id)
        untrained = self.source.get("untrained")
        return VideoPrediction(
            labels=_LazyLabels(files), frame_names=[p.stem for p in files],
            untrained=untrained if isinstance(untrained, bool) else None,
            notes=[f"predictions read from {folder}"],
        )  # fmt: skip

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "sequences_found": len(self.found),
            "source": self.source,
        }


# --------------------------------------------------------------------------------------------
# overlays


def overlay_frame(
    frame_rgb: np.ndarray, labels: np.ndarray | None, alpha: float = 0.5
) -> np.ndarray:
    """Masks blended over a frame in their DAVIS colours, with their outlines."""
    out = frame_rgb.copy()
    if labels is None:
        return out
    palette = davis_palette()
    for obj in np.unique(labels):
        if obj == 0:
            continue
        m = labels == obj
        colour = palette[int(obj) % 256].astype(np.float32)
        out[m] = (out[m].astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in palette[int(obj) % 256]), 2)
    return out


def write_overlay(
    path: Path, frames: list[Path], prediction: VideoPrediction, fps: float = 10.0
) -> Path:
    """An mp4 (OpenCV ``mp4v``) of the masks over the frames; an animated GIF (Pillow) where
    OpenCV cannot write mp4. Returns the file written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = []
    for t, frame in enumerate(frames):
        with Image.open(frame) as im:
            rgb = np.asarray(im.convert("RGB"))
        images.append(overlay_frame(rgb, prediction.labels[t]))
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if writer.isOpened():
        for img in images:
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        writer.release()
        if path.is_file() and path.stat().st_size > 0:
            return path
    gif = path.with_suffix(".gif")
    pil = [Image.fromarray(img) for img in images]
    pil[0].save(gif, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    path.unlink(missing_ok=True)
    return gif


# --------------------------------------------------------------------------------------------
# tables and figures


def write_tables(job_dir: Path, ev: VideoEvaluator, untrained: bool | None) -> dict[str, Any]:
    """``per_sequence.csv`` (a row per sequence, ``object`` = ``all``, then a row per object)
    and ``per_frame.csv`` (a row per frame and object); returns ``task_info`` entries."""
    flag = {"untrained": untrained}
    rows: list[dict[str, Any]] = []
    objects = ev.object_rows()
    for seq in ev.sequences:
        rows.append({
            "sequence": seq["sequence"], "object": "all", "name": seq["sequence"],
            "level": "sequence", "prompt_frame": None, "n_frames": seq["n_frames"],
            "n_objects": seq["n_objects"], "n_frames_scored": seq["n_frames_scored"],
            **{k: seq[k] for k in ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall",
                                   "f_decay", "jf")},
            **flag,
        })  # fmt: skip
        for o in objects:
            if o["sequence"] == seq["sequence"]:
                rows.append({**o, "level": "object", **flag})
    write_rows_csv(job_dir / PER_SEQUENCE_FILE, rows or [{"sequence": None}])
    write_rows_csv(
        job_dir / PER_FRAME_FILE, [{**r, **flag} for r in ev.frame_rows] or [{"sequence": None}]
    )
    return {"per_sequence_file": PER_SEQUENCE_FILE, "per_frame_file": PER_FRAME_FILE}


def write_source(out: Path, source: dict[str, Any]) -> None:
    """``<predictions dir>/SOURCE.json``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SOURCE_FILE, source)
