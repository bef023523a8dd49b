"""DAVIS-style video object segmentation data (``dataset.format=davis``).

Layout (``dataset.root``; DAVIS 2016, 2017 and their derivatives)::

    ROOT/JPEGImages/<resolution>/<sequence>/00000.jpg ...   frames (JPEG)
    ROOT/Annotations/<resolution>/<sequence>/00000.png ...  masks (any subset of the frames)
    ROOT/ImageSets/<year>/<split>.txt                       sequence lists (optional)

``dataset.resolution`` (default ``480p``) names the resolution folder. A sequence may also be a
video file in place of its frame folder (``JPEGImages/<resolution>/<sequence>.mp4``); and
``dataset.root`` may be a single video file, with ``dataset.annotations`` the folder of its
masks (``00000.png`` ... named by frame index, or a ``<video stem>/`` subfolder of them).
Video files are decoded with OpenCV into a cached JPEG folder
(:mod:`sam_bench.data.video_file`), recorded with the sequence.

**Annotation styles** (detected per file, recorded per sequence):

* ``davis2016``: a grayscale (``L`` or 1-bit) PNG whose values are only 0 and 255 -- one
  object, id 1, where the value is 255;
* ``davis2017``: a palette (``P``) PNG whose indices are object ids (0 = background); index 255
  is DAVIS's void label, treated as background (as the DAVIS 2017 toolkit's semi-supervised
  evaluation does);
* ``ids``: any other grayscale or 16-bit PNG whose values are object ids (255 is void in 8-bit
  files).

RGB annotations are refused (they carry colours, not ids). ``dataset.annotations=DIR`` reads
masks from another folder laid out like ``Annotations`` (``DIR/<resolution>/<sequence>/`` or
``DIR/<sequence>/``), e.g. the palette-style copy of DAVIS 2016 masks.

**Sequences**: ``dataset.split`` reads ``ImageSets/<year>/<split>.txt`` (one sequence name per
line; DAVIS 2017 ships ``2016`` and ``2017`` lists), or the DAVIS 2016 list
``ImageSets/<resolution>/<split>.txt`` (lines of frame paths) when that is the one present;
without ``split`` every sequence folder (and video file) is taken, sorted by name. Then
``dataset.sequences`` keeps the named ones (in that order; an unknown name is an error with a
suggestion) and ``dataset.limit`` the first N. ``dataset.max_frames`` keeps the first N frames
of every sequence (annotations of later frames are ignored).

**Frames** are sorted by number when every file stem is a number, else by name. :meth:`load`
decodes every frame once (a truncated or unreadable frame, frames of different sizes, a mask
whose size differs from the frames', or a sequence without any annotated object is a
:class:`SampleError` for that sequence; the others go on).

**Fingerprint** (:func:`sam_bench.data.fingerprint.compute_fingerprint`, kind ``davis``): per
sequence, each frame used as an "image" (id ``<sequence>/<frame>``, name relative to the root,
size), or for a video file the file itself (id ``<sequence>[:<max_frames>]``); then each
annotation PNG of those frames with its bytes (name ``<sequence>/<file>``).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig
from sam_bench.data.base import ImageRef, Sample, VideoTruth
from sam_bench.data.fingerprint import compute_fingerprint
from sam_bench.data.video_file import Extraction, extract_frames, is_video_file
from sam_bench.errors import DatasetError, SampleError

log = logging.getLogger(__name__)

FRAME_EXTENSIONS = (".jpg", ".jpeg")
"""Frame files read from a sequence folder (what SAM 2's video predictor reads)."""
VOID = 255
"""DAVIS 2017's void label (8-bit annotations)."""


@dataclass
class DavisVideo(VideoTruth):
    """A sequence's ground truth plus how it was read."""

    sequence: str = ""
    styles: list[str] = field(default_factory=list)
    """Annotation styles met (``davis2016``, ``davis2017``, ``ids``)."""
    notes: list[str] = field(default_factory=list)
    """How the sequence was read (styles, void pixels, frame extraction...)."""
    extraction: dict[str, Any] | None = None
    """The frame extraction record of a video file (``None`` for a frame folder)."""


def read_annotation(path: Path) -> tuple[np.ndarray, str, bool]:
    """An annotation PNG as an object-id map.

    Returns:
        ``(ids, style, had_void)``: an int32 HxW map (0 = background; void pixels set to 0),
        the style (``davis2016``, ``davis2017`` or ``ids``, see the module docstring) and
        whether void pixels were present.

    Raises:
        SampleError: unreadable file, or an RGB / RGBA annotation.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.array(im)
    except FileNotFoundError:
        raise SampleError(path, f"annotation file {path.name} not found") from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise SampleError(path, f"cannot read annotation {path.name}: {e}") from None
    if arr.ndim != 2:
        raise SampleError(
            path,
            f"annotation {path.name} is {mode} (colour); expected a palette (P) or grayscale PNG "
            "of object ids",
        )
    if mode == "1":
        return arr.astype(np.int32), "davis2016", False
    ids = arr.astype(np.int32)
    if mode == "P":
        void = ids == VOID
        ids[void] = 0
        return ids, "davis2017", bool(void.any())
    if mode == "L" and np.isin(ids, (0, VOID)).all():
        return (ids == VOID).astype(np.int32), "davis2016", False
    void_value = VOID if arr.dtype == np.uint8 else None
    had_void = False
    if void_value is not None:
        void = ids == void_value
        had_void = bool(void.any())
        ids[void] = 0
    return ids, "ids", had_void


def _frame_key(paths: list[Path]) -> list[Path]:
    if paths and all(p.stem.isdigit() for p in paths):
        return sorted(paths, key=lambda p: (int(p.stem), p.name))
    return sorted(paths, key=lambda p: p.name)


def list_frames(folder: Path) -> list[Path]:
    """JPEG frames of a sequence folder in playback order."""
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in FRAME_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return _frame_key(files)


def read_split(path: Path) -> list[str]:
    """Sequence names of an ``ImageSets`` list: one name per line (DAVIS 2017), or frame paths
    ``/JPEGImages/480p/<sequence>/00000.jpg ...`` (DAVIS 2016), in first-seen order."""
    names: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        item = line.strip().split()
        if not item:
            continue
        first = item[0]
        if "/" in first:
            parts = [p for p in first.split("/") if p]
            name = parts[-2] if len(parts) >= 2 else parts[0]
        else:
            name = first
        if name not in names:
            names.append(name)
    return names


class DavisDataset:
    """DAVIS-style sequences (see the module docstring).

    Args:
        root: The DAVIS folder (``JPEGImages/``, ``Annotations/``...) or a video file.
        name: Name recorded with results.
        resolution: Resolution folder under ``JPEGImages/`` and ``Annotations/``.
        year: ``ImageSets/<year>/`` folder of ``split``.
        split: Sequence list to read (``val``...); ``None``: every sequence.
        sequences: Keep these sequences only.
        max_frames: Keep the first N frames of each sequence.
        limit: Keep the first N sequences.
        annotations: Another annotation folder (required when ``root`` is a video file).
        frames_cache: Where video files are extracted (default: the frames cache folder).

    Raises:
        DatasetError: missing folders, split file or sequences.
    """

    kind = "davis"
    provides: tuple[str, ...] = ("video",)

    def __init__(
        self,
        root: Path | str,
        *,
        name: str = "davis",
        resolution: str = "480p",
        year: str = "2017",
        split: str | None = None,
        sequences: list[str] | None = None,
        max_frames: int | None = None,
        limit: int | None = None,
        annotations: Path | str | None = None,
        frames_cache: Path | None = None,
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.resolution = resolution
        self.max_frames = max_frames
        self.frames_cache = frames_cache
        self.split_file: Path | None = None
        self._warnings: list[dict[str, Any]] = []
        if is_video_file(self.root):
            self._init_video_file(annotations)
        else:
            self._init_folder(annotations)
            names = self._sequence_names(year, split)
            self._refs = [self._ref(n) for n in names]
        self._select(sequences, limit)

    # ------------------------------------------------------------------ listing

    def _init_video_file(self, annotations: Path | str | None) -> None:
        if annotations is None:
            raise DatasetError(
                f"dataset.root is a video file ({self.root}): dataset.annotations must name the "
                "folder of its masks (00000.png ... by frame index)"
            )
        ann = Path(annotations)
        if not ann.is_dir():
            raise DatasetError(f"annotation folder not found: {ann} (dataset.annotations)")
        self.images_dir = self.root.parent
        seq = self.root.stem
        self.ann_root = ann
        self._ann_dirs = {seq: ann / seq if (ann / seq).is_dir() else ann}
        self._refs = [ImageRef(image_id=seq, path=self.root)]

    def _init_folder(self, annotations: Path | str | None) -> None:
        if not self.root.is_dir():
            raise DatasetError(f"DAVIS root folder not found: {self.root} (dataset.root)")
        images = self.root / "JPEGImages"
        self.images_dir = images / self.resolution
        if not self.images_dir.is_dir():
            found = (
                sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
            )
            hint = f"; resolutions found: {', '.join(found)}" if found else ""
            raise DatasetError(
                f"no JPEGImages/{self.resolution} folder in {self.root} (dataset.resolution"
                f"={self.resolution}){hint}"
            )
        self.ann_root = Path(annotations) if annotations is not None else self.root / "Annotations"
        if not self.ann_root.is_dir():
            key = "dataset.annotations" if annotations is not None else "dataset.root"
            raise DatasetError(f"annotation folder not found: {self.ann_root} ({key})")
        self._ann_dirs = {}

    def _sequence_names(self, year: str, split: str | None) -> list[str]:
        present = sorted(
            p.stem if p.is_file() else p.name
            for p in self.images_dir.iterdir()
            if not p.name.startswith(".") and (p.is_dir() or is_video_file(p))
        )
        if split is None:
            return present
        candidates = [
            self.root / "ImageSets" / year / f"{split}.txt",
            self.root / "ImageSets" / self.resolution / f"{split}.txt",
        ]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            sets = self.root / "ImageSets"
            found = (
                sorted(str(p.relative_to(sets)) for p in sets.rglob("*.txt"))
                if sets.is_dir()
                else []
            )
            hint = f"; lists found: {', '.join(found)}" if found else "; no ImageSets folder"
            raise DatasetError(
                f"dataset.split={split}: neither {candidates[0]} nor {candidates[1]} exists"
                f"{hint} (dataset.split=null takes every sequence folder)"
            )
        self.split_file = path
        names = read_split(path)
        missing = [n for n in names if n not in present]
        if missing:
            self._warnings.append(
                _warning(
                    "missing_sequences",
                    f"{len(missing)} sequence(s) of {path.name} have no frames under "
                    f"{self.images_dir} (each fails as a sequence error)",
                    missing,
                )
            )
        return names

    def _ref(self, seq: str) -> ImageRef:
        folder = self.images_dir / seq
        if not folder.is_dir():
            videos = [
                p for p in self.images_dir.glob(f"{seq}.*") if is_video_file(p) and p.stem == seq
            ]
            if videos:
                return ImageRef(image_id=seq, path=sorted(videos)[0])
        return ImageRef(image_id=seq, path=folder)

    def _select(self, sequences: list[str] | None, limit: int | None) -> None:
        if sequences is not None:
            by_name = {r.image_id: r for r in self._refs}
            unknown = [s for s in sequences if s not in by_name]
            if unknown:
                hints = []
                for s in unknown:
                    close = difflib.get_close_matches(s, list(by_name), n=1)
                    hints.append(f"{s!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                shown = ", ".join(list(by_name)[:20]) + (" ..." if len(by_name) > 20 else "")
                raise DatasetError(
                    f"unknown sequence(s) {', '.join(hints)} (dataset.sequences); "
                    f"available: {shown or 'none'}"
                )
            self._refs = [by_name[s] for s in dict.fromkeys(sequences)]
        if limit is not None:
            self._refs = self._refs[:limit]

    def refs(self) -> list[ImageRef]:
        """Sequences in order (split file order, else by name), selection applied."""
        return list(self._refs)

    def annotation_dir(self, seq: str) -> Path:
        """Folder of a sequence's annotation PNGs."""
        if seq in self._ann_dirs:
            return self._ann_dirs[seq]
        nested = self.ann_root / self.resolution / seq
        return (
            nested if nested.is_dir() or not (self.ann_root / seq).is_dir() else self.ann_root / seq
        )

    # ------------------------------------------------------------------ loading

    def _frames(self, ref: ImageRef) -> tuple[list[Path], Extraction | None]:
        if is_video_file(ref.path):
            ex = extract_frames(ref.path, max_frames=self.max_frames, cache_dir=self.frames_cache)
            return list_frames(Path(ex.folder)), ex
        if not ref.path.is_dir():
            raise SampleError(ref.path, "sequence folder not found (no frames for this sequence)")
        frames = list_frames(ref.path)
        if not frames:
            raise SampleError(ref.path, "no JPEG frames (*.jpg) in the sequence folder")
        if self.max_frames is not None:
            frames = frames[: self.max_frames]
        return frames, None

    def load(self, ref: ImageRef) -> Sample:
        """Read one sequence: its frames (checked by decoding each) and annotations.

        Raises:
            SampleError: see the module docstring.
        """
        frames, extraction = self._frames(ref)
        height, width = _check_frames(frames)
        names = [p.stem for p in frames]
        ann_dir = self.annotation_dir(ref.image_id)
        if not ann_dir.is_dir():
            raise SampleError(ann_dir, "annotation folder of this sequence not found")
        masks: dict[int, dict[int, dict[str, Any]]] = {}
        styles: list[str] = []
        void_frames = 0
        for t, name in enumerate(names):
            path = ann_dir / f"{name}.png"
            if not path.is_file():
                continue
            ids, style, had_void = read_annotation(path)
            if ids.shape != (height, width):
                size = f"{ids.shape[1]}x{ids.shape[0]}"
                raise SampleError(
                    path, f"annotation {path.name} is {size} but the frames are {width}x{height}"
                )
            if style not in styles:
                styles.append(style)
            void_frames += int(had_void)
            masks[t] = {
                int(o): mask_utils.encode(np.asfortranarray(ids == o, dtype=np.uint8))
                for o in np.unique(ids)
                if o != 0
            }
        if not masks:
            raise SampleError(
                ann_dir, f"no annotation PNG named like the frames ({names[0]}.png ...)"
            )
        if not any(masks.values()):
            raise SampleError(ann_dir, "the annotations hold no object (every mask is empty)")
        notes = [f"annotations: {', '.join(styles)} style ({len(masks)} annotated frames)"]
        if void_frames:
            notes.append(f"void label 255 on {void_frames} frame(s), scored as background")
        if extraction is not None:
            notes.append(extraction.note())
        video = DavisVideo(
            frames=frames, frame_names=names, masks=masks, height=height, width=width,
            sequence=ref.image_id, styles=styles, notes=notes,
            extraction=extraction.to_dict() if extraction is not None else None,
        )  # fmt: skip
        return Sample(ref=ref, raw=None, gt=None, video=video)

    # ------------------------------------------------------------------ provenance

    def fingerprint(self) -> str:
        """See the module docstring for what is hashed."""
        images: list[tuple[str, str, Path | None]] = []
        annotations: list[tuple[str, Path | None]] = []
        for ref in self._refs:
            seq = ref.image_id
            if is_video_file(ref.path):
                cap = "" if self.max_frames is None else f"[:{self.max_frames}]"
                images.append((f"{seq}{cap}", ref.path.name, ref.path))
                ann_dir = self.annotation_dir(seq)
                files = sorted(ann_dir.glob("*.png")) if ann_dir.is_dir() else []
                if self.max_frames is not None:
                    files = [
                        p for p in files if not p.stem.isdigit() or int(p.stem) < self.max_frames
                    ]
                annotations.extend((f"{seq}/{p.name}", p) for p in files)
                continue
            frames = list_frames(ref.path) if ref.path.is_dir() else []
            if self.max_frames is not None:
                frames = frames[: self.max_frames]
            if not frames:
                images.append((f"{seq}/<none>", f"JPEGImages/{self.resolution}/{seq}", None))
            for p in frames:
                rel = f"JPEGImages/{self.resolution}/{seq}/{p.name}"
                images.append((f"{seq}/{p.stem}", rel, p))
            ann_dir = self.annotation_dir(seq)
            for p in frames:
                a = ann_dir / f"{p.stem}.png"
                if a.is_file():
                    annotations.append((f"{seq}/{a.name}", a))
        return compute_fingerprint(self.kind, images, annotations)

    def warnings(self) -> list[dict[str, Any]]:
        """What was found suspicious while listing (sequences of the split without frames)."""
        return list(self._warnings)

    def info(self) -> dict[str, Any]:
        """How sequences were chosen (recorded by the video task)."""
        return {
            "root": str(self.root),
            "resolution": self.resolution,
            "split_file": None if self.split_file is None else str(self.split_file),
            "annotations": str(self.ann_root),
            "max_frames": self.max_frames,
            "sequences": [r.image_id for r in self._refs],
        }


def _check_frames(frames: list[Path]) -> tuple[int, int]:
    """Decode every frame (a broken one fails the sequence); all must share one size."""
    size: tuple[int, int] | None = None
    for p in frames:
        try:
            with Image.open(p) as im:
                im.load()
                this = (im.height, im.width)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise SampleError(p, f"cannot read frame {p.name}: {e}") from None
        if size is None:
            size = this
        elif this != size:
            raise SampleError(
                p, f"frame {p.name} is {this[1]}x{this[0]}, the first is {size[1]}x{size[0]}"
            )
    assert size is not None
    return size


def _warning(kind: str, message: str, items: list[str]) -> dict[str, Any]:
    shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
    return {
        "kind": kind,
        "message": f"{message} (e.g. {shown})" if items else message,
        "count": len(items),
        "examples": items[:5],
    }


def from_config(cfg: DatasetConfig, base_dir: Path) -> DavisDataset:
    """``dataset.format=davis`` (relative paths taken from ``base_dir``)."""
    from sam_bench.data.paths import config_path

    root = config_path(cfg, "root", base_dir)
    ann = config_path(cfg, "annotations", base_dir) if cfg.annotations else None
    return DavisDataset(
        root, name=cfg.name, resolution=cfg.resolution, year=cfg.year, split=cfg.split,
        sequences=cfg.sequences, max_frames=cfg.max_frames, limit=cfg.limit, annotations=ann,
    )  # fmt: skip
