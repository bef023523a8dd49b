"""Where a job's and a sweep's files are: the one module that spells their names.

A job folder holds the runner's files (the record ``result.json``, the per-item table
``per_image.csv``, the per-item journal ``.items.jsonl``, ``traceback.txt`` of a job that
crashed) and the files its task **declares** (:class:`Output`, in ``TaskSpec.outputs``). Each
declared output has a *kind* (:data:`KINDS`) that says what the file is, so the tools that work
across tasks -- the regression check (:mod:`sam_bench.compare`), the report's overlays, MLflow
artifacts, resume -- choose what to do with a file by its kind, never by the task's name.

``result.json`` lists the outputs the job wrote (``outputs``: ``[{name, kind, path,
description}]``, schema version 3). Records written before outputs were declared (schema 1
and 2) are read through :func:`declared_outputs`, which knows the files those versions wrote.

Item files (one per image or sequence) are named by :func:`item_stem`: a readable stem of the
item id, unique for every id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------ output kinds

#: Every kind of file a job may declare, and what a file of that kind holds.
KINDS: dict[str, str] = {
    "record": "the job's result record (JSON, sam_bench.record)",
    "per_item_csv": "one row per item: timings, conversion, per-item metrics, errors",
    "journal": "append-only JSON lines, one finished item each (resume continues from it)",
    "traceback": "the traceback of a job that crashed",
    "instance_rle": (
        "instance masks of every item: a COCO results JSON ({source, predictions: [{image_id, "
        "segmentation (RLE), score, ...}]})"
    ),
    "instance_examples": (
        "a folder of JSON files, one per example item: {image_id, height, width, masks: "
        "[{segmentation (RLE), ...}], ground_truth: [...]} (the report's overlays)"
    ),
    "label_png": (
        "a folder of label images, one PNG per item named by item_stem: pixel value = class "
        "index (SOURCE.json beside them says which classes)"
    ),
    "palette_png_sequence": (
        "a folder per sequence of DAVIS palette PNGs, one per frame: pixel value = object id, "
        "0 background"
    ),
    "table_csv": "a dataset-level table (per instance, per class, per sequence, ...)",
    "figure": "a PNG figure",
    "figure_folder": "a folder of PNG figures, one per example item",
    "overlay_videos": (
        "a folder of videos, one per sequence named by item_stem (mp4, or an animated GIF): "
        "predicted masks over the frames, for a person to watch"
    ),
}

#: The kinds whose items the regression check compares (``sam_bench.compare``).
PREDICTION_KINDS = ("instance_rle", "label_png", "palette_png_sequence")


@dataclass(frozen=True)
class Output:
    """One file (or folder) a job of a task writes, declared by the task."""

    name: str
    """Short name (unique within the task), e.g. ``predictions``."""
    kind: str
    """One of :data:`KINDS`."""
    path: str
    """Path relative to the job folder; a folder ends with ``/``."""
    description: str = ""
    """What it holds, for a person (the README and the record)."""
    when: str = "always"
    """When the job writes it: ``always``, or the setting that turns it on
    (``save_predictions``, ``task.save_masks``, ...)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"output {self.name!r}: unknown kind {self.kind!r}; one of {KINDS}")
        if not self.path or self.path.startswith("/") or ".." in Path(self.path).parts:
            raise ValueError(f"output {self.name!r}: path must be relative to the job folder")

    @property
    def is_dir(self) -> bool:
        return self.path.endswith("/")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Output:
        return cls(
            name=str(d["name"]),
            kind=str(d["kind"]),
            path=str(d["path"]),
            description=str(d.get("description") or ""),
            when=str(d.get("when") or "always"),
        )


# ------------------------------------------------------------------------------ job folder

RESULT_FILE = "result.json"
PER_ITEM_FILE = "per_image.csv"
JOURNAL_FILE = ".items.jsonl"
TRACEBACK_FILE = "traceback.txt"

#: The runner's own files, written for every job whatever its task.
RUNNER_OUTPUTS: tuple[Output, ...] = (
    Output("record", "record", RESULT_FILE, "the job's result record"),
    Output("per_item", "per_item_csv", PER_ITEM_FILE, "one row per item"),
    Output("journal", "journal", JOURNAL_FILE, "finished items while the job runs", "running"),
    Output("traceback", "traceback", TRACEBACK_FILE, "why the job crashed", "crashed"),
)


def item_stem(item_id: str) -> str:
    """A file stem for an item id: the id with every character other than letters, digits,
    ``.``, ``-`` and ``_`` replaced by ``_``; when anything was replaced (or the id is empty,
    or starts with a dot) the first 8 hex digits of the id's sha1 are appended, so two ids
    never share a stem (``p/q`` -> ``p_q-<hash>``, ``p_q`` -> ``p_q``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)
    if stem == item_id and stem and not stem.startswith("."):
        return stem
    digest = hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:8]
    return f"{stem.lstrip('.') or 'item'}-{digest}"


def renamed_items(item_ids: Iterable[str]) -> dict[str, str]:
    """``{item id: file stem}`` for the ids whose files are not named by the id as it is
    (``result.json`` ``item_files``: where to find an item's files)."""
    return {i: s for i in dict.fromkeys(item_ids) if (s := item_stem(i)) != i}


@dataclass(frozen=True)
class JobLayout:
    """The files of one job folder."""

    root: Path

    @property
    def record(self) -> Path:
        return self.root / RESULT_FILE

    @property
    def per_item(self) -> Path:
        return self.root / PER_ITEM_FILE

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL_FILE

    @property
    def traceback(self) -> Path:
        return self.root / TRACEBACK_FILE

    def path(self, output: Output) -> Path:
        """Where ``output`` is in this job folder."""
        return self.root / output.path

    def item_file(self, output: Output, item_id: str, suffix: str) -> Path:
        """The file of item ``item_id`` inside the folder output ``output``."""
        if not output.is_dir:
            raise ValueError(f"output {output.name!r} is a file, not a folder of item files")
        return self.path(output) / f"{item_stem(item_id)}{suffix}"

    def written(self, outputs: Iterable[Output]) -> list[Output]:
        """The declared outputs that exist in this job folder (a folder counts when it holds
        at least one file)."""
        found = []
        for o in outputs:
            p = self.path(o)
            if (o.is_dir and p.is_dir() and any(p.iterdir())) or (not o.is_dir and p.is_file()):
                found.append(o)
        return found

    def find(self, record: Mapping[str, Any], kind: str) -> list[tuple[Output, Path]]:
        """The outputs of ``kind`` the record says the job wrote, with their paths here."""
        return [(o, self.path(o)) for o in declared_outputs(record) if o.kind == kind]


# ------------------------------------------------------------------------------ sweep folder

SUMMARY_FILE = "summary.csv"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
SKIPPED_FILE = "skipped.json"
#: The encoder cache jobs of one sweep share (``cache.in_sweep``), removed at the sweep's end.
SWEEP_ENCODER_CACHE = ".encoder_cache"
REGRESSION_STEM = "regression"


# ------------------------------------------------------------------------------ records

#: What records written before outputs were declared (schema 1 and 2) hold, by task name:
#: those versions did not list their files, so this table stands in for the declaration.
#: New tasks never need an entry here: their records list their outputs.
_LEGACY_OUTPUTS: dict[str, tuple[Output, ...]] = {
    "amg": (
        Output("predictions", "instance_rle", "predictions.json", when="save_predictions"),
        Output("examples", "instance_examples", "masks/", when="task.save_masks"),
    ),
    "prompted": (
        Output("predictions", "instance_rle", "predictions.json", when="save_predictions"),
        Output("examples", "instance_examples", "masks/", when="task.save_masks"),
        Output("per_instance", "table_csv", "per_instance.csv"),
    ),
    "semantic": (
        Output("predictions", "instance_rle", "predictions.json", when="save_predictions"),
        Output("label_maps", "label_png", "predictions/", when="save_predictions"),
        Output("examples", "instance_examples", "masks/", when="task.save_masks"),
        Output("per_class", "table_csv", "per_class.csv"),
    ),
    "video": (
        Output("predictions", "palette_png_sequence", "predictions/", when="save_predictions"),
        Output("per_sequence", "table_csv", "per_sequence.csv"),
        Output("per_frame", "table_csv", "per_frame.csv"),
    ),
}


def declared_outputs(record: Mapping[str, Any]) -> list[Output]:
    """The outputs a record says its job wrote (``outputs``); for a record of schema 1 or 2,
    the files those versions wrote for its task (see :data:`_LEGACY_OUTPUTS`)."""
    listed = record.get("outputs")
    if isinstance(listed, list):
        return [Output.from_dict(o) for o in listed if isinstance(o, Mapping)]
    return list(_LEGACY_OUTPUTS.get(str(record.get("task")), ()))
