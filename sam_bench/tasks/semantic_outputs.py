"""Reading saved semantic class maps back (``task=semantic predictions=DIR``): score another
semantic segmenter's output, or an earlier run's, with the semantic metrics and without SAM 2
or CLIP.

**Format**: ``DIR/<image stem>.png``, one single-channel PNG per image (8-bit or 16-bit
grayscale, or a palette PNG whose *indices* are read), the size of the image's label map,
named as ``save_predictions=true`` names them in ``<job>/predictions/`` (the image id made
file-name safe by :func:`~sam_bench.tasks.amg.masks.safe_name`; the id as it is is accepted too).
Each pixel holds a class index of the dataset's class list, or the "unlabelled" value
(:func:`sam_bench.tasks.semantic.label_png`): 255 in an 8-bit PNG, 65535 in a 16-bit one.
A job folder may be given: its ``predictions/`` subfolder is read when ``DIR`` itself holds
no PNG.

Per image, never for the whole job (the other images are scored): a missing file, an
unreadable or colour PNG, a map whose size is not the ground truth's, a value that is not a
class index (the void index ``dataset.void_index`` included: it is never a prediction; write
"unlabelled" there) is an item error naming the file and the reason.

Provenance: ``DIR/SOURCE.json`` (any tool's: ``{"untrained": bool, ...}``) when present, else
the record (``result.json``) of the sam_bench job whose ``predictions/`` folder ``DIR`` is; a
job scoring the maps of random weights then carries the untrained banner.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam_bench.data.base import Dataset, ImageRef
from sam_bench.data.images import DEFAULT_MAX_IMAGE_PIXELS, check_size
from sam_bench.data.semantic_folder import ClassList
from sam_bench.errors import ConfigError, SampleError
from sam_bench.metrics.semantic import UNLABELLED, SemanticPrediction
from sam_bench.record import read_json_object
from sam_bench.tasks.amg.masks import safe_name

log = logging.getLogger(__name__)

PREDICTIONS_DIR = "predictions"
SOURCE_FILE = "SOURCE.json"
RECORD_FILE = "result.json"
UNLABELLED_8BIT = 255
UNLABELLED_16BIT = 65535
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_GREY, _PALETTE = 0, 3
"""PNG colour types read (grayscale, palette); any other (RGB, alpha) is refused."""


@dataclass
class SavedMap(SemanticPrediction):
    """A class map read from a PNG (no masks: only the map is scored)."""

    path: Path | None = None
    """The PNG it was read from (named by errors about it)."""
    classes: ClassList | None = None
    """The dataset's class list the map was checked against."""
    untrained: bool | None = None
    """Whether the maps came from random weights (the folder's provenance), ``None``:
    unknown."""
    untrained_models: tuple[str, ...] = ()
    """Which networks had random weights, where the provenance says (``SAM 2``, ``CLIP``)."""


def read_class_png(
    path: Path, classes: ClassList, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """An HxW int32 class map from a PNG of the format above ("unlabelled" as
    :data:`~sam_bench.metrics.semantic.UNLABELLED`).

    Raises:
        SampleError: missing, unreadable or not a single-channel PNG, over ``max_pixels``, or
            holding values that are neither a class index nor "unlabelled".
    """
    name = path.name
    try:
        with path.open("rb") as f:
            head = f.read(33)
    except FileNotFoundError:
        raise SampleError(path, f"no prediction {name} in {path.parent}") from None
    except OSError as e:
        raise SampleError(path, f"cannot read prediction {name}: {e.strerror or e}") from None
    if len(head) < 33 or not head.startswith(_PNG_MAGIC) or head[12:16] != b"IHDR":
        raise SampleError(path, f"prediction {name} is not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    depth, colour = head[24], head[25]
    if colour not in (_GREY, _PALETTE):
        kind = {2: "RGB", 4: "grayscale + alpha", 6: "RGBA"}.get(colour, f"colour type {colour}")
        raise SampleError(
            path, f"prediction {name} is {kind}; expected a single-channel PNG of class indices"
        )
    if colour == _GREY and depth in (2, 4):  # Pillow scales these to 0..255
        raise SampleError(
            path, f"prediction {name} is a {depth}-bit grayscale PNG; write 8 or 16 bits"
        )
    check_size(path, width, height, max_pixels)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.array(im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise SampleError(path, f"cannot decode prediction {name}: {e}") from None
    if arr.ndim != 2:
        raise SampleError(path, f"prediction {name} has shape {arr.shape}, expected HxW")
    unlabelled = UNLABELLED_16BIT if depth == 16 else UNLABELLED_8BIT
    values = arr.astype(np.int64)
    found = np.unique(values)
    ids = np.asarray([c.index for c in classes.labelled], dtype=np.int64)
    bad = found[~np.isin(found, ids) & (found != unlabelled)]
    if bad.size:
        listed = ", ".join(str(int(v)) for v in bad[:10])
        void = classes.void_index
        why = (
            f"prediction {name} holds values {listed} that are not class indices of the "
            f"dataset's class list ({_ids(ids)}; 'unlabelled' is {unlabelled} in "
            f"{depth}-bit PNGs)"
        )
        if void is not None and void in bad:
            why += f"; {void} is the void index, never a prediction (write {unlabelled} there)"
        raise SampleError(path, why)
    out = values.astype(np.int32)
    out[values == unlabelled] = UNLABELLED
    return out


def _ids(ids: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in ids[:12])
    return shown + (", ..." if len(ids) > 12 else "")


class ClassMapFolder:
    """The class-map PNGs of another run or tool (see the module docstring): ``get(ref)``
    reads and checks one image's map.

    Raises:
        ConfigError: ``path`` is not a folder, or holds no map for any of the images.
    """

    def __init__(self, path: Path, dataset: Dataset, classes: ClassList) -> None:
        given = Path(path)
        if not given.is_dir():
            raise ConfigError(
                "predictions",
                f"{given} is not a folder (task=semantic reads <image>.png class maps from one, "
                "or from a job folder's predictions/)",
            )
        self.path = given
        sub = given / PREDICTIONS_DIR
        if not _pngs(given) and sub.is_dir():
            self.path = sub
        self.classes = classes
        self.max_pixels = getattr(dataset, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
        refs = dataset.refs()
        self.files: dict[str, Path] = {}
        for ref in refs:
            for stem in dict.fromkeys((safe_name(ref.image_id), ref.image_id)):
                p = self.path / f"{stem}.png"
                if "/" not in stem and p.is_file():
                    self.files[ref.image_id] = p
                    break
        if not self.files:
            example = self.path / f"{safe_name(refs[0].image_id) if refs else '<image>'}.png"
            raise ConfigError(
                "predictions",
                f"{self.path} has no class map for any of the {len(refs)} images "
                f"(expected e.g. {example})",
            )
        self.missing = [r.image_id for r in refs if r.image_id not in self.files]
        if self.missing:
            log.warning(
                "%s: no class map for %d image(s) (they fail as item errors), e.g. %s",
                self.path, len(self.missing), ", ".join(self.missing[:5]),
            )  # fmt: skip
        used = {p.name for p in self.files.values()}
        self.unknown = sorted(p.name for p in _pngs(self.path) if p.name not in used)
        self.source = self._source()
        flag = self.source.get("untrained")
        self.untrained = flag if isinstance(flag, bool) else None
        models = self.source.get("untrained_models")
        self.untrained_models = tuple(str(m) for m in models) if isinstance(models, list) else ()
        self.sha256 = self._hash(refs)

    def _source(self) -> dict[str, Any]:
        """``SOURCE.json``, else what the record of the job that wrote the folder says."""
        src = self.path / SOURCE_FILE
        if src.is_file():
            return _read_json(src) or {}
        record = self.path.parent / RECORD_FILE
        if self.path.name != PREDICTIONS_DIR or not record.is_file():
            return {}
        rec = _read_json(record)
        if not isinstance(rec, dict) or rec.get("task") != "semantic":
            return {}
        weights, info, config = (_dict(rec.get(k)) for k in ("weights", "task_info", "config"))
        untrained = rec.get("untrained")
        models = [*(["SAM 2"] if weights.get("kind") == "random" else []),
                  *(["CLIP"] if info.get("untrained_models") else [])]  # fmt: skip
        return {
            "tool": "sam_bench", "task": "semantic", "record": str(record),
            "model": _dict(config.get("model")).get("name"), "weights": weights.get("label"),
            "clip": _dict(info.get("clip")).get("label"),
            "untrained": untrained if isinstance(untrained, bool) else None,
            "untrained_models": models,
        }  # fmt: skip

    def _hash(self, refs: list[ImageRef]) -> str:
        h = hashlib.sha256()
        for ref in refs:
            p = self.files.get(ref.image_id)
            if p is not None:
                h.update(f"{p.name}\t{p.stat().st_size}\n".encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    def get(self, ref: ImageRef) -> SavedMap:
        path = self.files.get(ref.image_id)
        if path is None:
            path = self.path / f"{safe_name(ref.image_id)}.png"
        label_map = read_class_png(path, self.classes, self.max_pixels)
        return SavedMap(
            label_map=label_map, path=path, classes=self.classes, untrained=self.untrained,
            untrained_models=self.untrained_models,
        )  # fmt: skip

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "format": "class-index PNG per image (unlabelled: 255 8-bit, 65535 16-bit)",
            "images_found": len(self.files),
            "images_missing": len(self.missing),
            "unknown_files": self.unknown[:20],
            "source": self.source,
        }


def _pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png") if not p.name.startswith("."))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _read_json(path: Path) -> dict[str, Any] | None:
    data = read_json_object(path)
    if data is None:
        log.warning("cannot read %s as a JSON object; provenance unknown", path)
    return data
