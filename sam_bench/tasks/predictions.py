"""Existing predictions as a task's input (``predictions=PATH``): score the output of an earlier
job, another tool or another segmenter with the same evaluators, records, report and tracking,
without running SAM 2.

:class:`ReplayTask` stands in for a task's model call: its prediction for an item is what the
file holds for it; evaluators, records and reports are the task's own. No stage is timed, so
latency metrics are absent from the record (``task_info.scored_from`` says where the
predictions came from).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from sam_bench.data.base import Dataset, ImageRef, Sample
from sam_bench.errors import ConfigError
from sam_bench.metrics.base import Evaluator
from sam_bench.metrics.cost import StageTimes
from sam_bench.metrics.instance import InstancePredictions
from sam_bench.tasks.base import JobContext, Task, Writer

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class InstancePredictionFile:
    """A COCO results JSON with RLE masks: a list of ``{image_id, segmentation, score}`` or
    sam_bench's ``{"source": {...}, "predictions": [...]}``. ``score`` (else
    ``predicted_iou``) ranks the masks for AR. Images without entries have no masks."""

    def __init__(self, path: Path, dataset: Dataset) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("predictions", f"file not found: {self.path}") from None
        except (OSError, ValueError) as e:
            raise ConfigError("predictions", f"cannot read {self.path}: {e}") from None
        self.source: dict[str, Any] = {}
        if isinstance(data, dict):
            header = data.get("source")
            self.source = header if isinstance(header, dict) else {}
            data = data.get("predictions")
        if not isinstance(data, list):
            raise ConfigError(
                "predictions", f"{self.path}: expected a list of COCO results (or a "
                '{"predictions": [...]} object)',
            )  # fmt: skip
        self.by_image: dict[str, list[tuple[dict[str, Any], float]]] = {}
        for i, entry in enumerate(data):
            image_id, rle, score = _entry(entry, i, self.path)
            self.by_image.setdefault(image_id, []).append((rle, score))
        known = {ref.image_id for ref in dataset.refs()}
        self.unknown_images = sorted(set(self.by_image) - known)
        if self.unknown_images:
            log.warning(
                "%s: %d image id(s) not in the evaluated images (ignored), e.g. %s",
                self.path, len(self.unknown_images), ", ".join(self.unknown_images[:5]),
            )  # fmt: skip
        self.sha256 = file_sha256(self.path)
        self.n_entries = len(data)

    def get(self, ref: ImageRef) -> InstancePredictions:
        entries = self.by_image.get(ref.image_id, [])
        return InstancePredictions([r for r, _ in entries], [s for _, s in entries])

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "entries": self.n_entries,
            "images_with_entries": len(self.by_image),
            "unknown_image_ids": self.unknown_images[:20],
            "source": self.source,
        }


def _entry(entry: Any, i: int, path: Path) -> tuple[str, dict[str, Any], float]:
    def bad(why: str) -> ConfigError:
        return ConfigError("predictions", f"{path}: entry {i}: {why}")

    if not isinstance(entry, dict) or "image_id" not in entry:
        raise bad("not an object with an image_id")
    seg = entry.get("segmentation")
    if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
        raise bad("segmentation is not an RLE ({size, counts})")
    size = seg["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise bad(f"RLE size {size!r} is not [height, width]")
    counts = seg["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(seg, size[0], size[1])
    elif isinstance(counts, str | bytes):
        rle = {"size": list(size), "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise bad("RLE counts are neither a string nor a list")
    score = entry.get("score", entry.get("predicted_iou"))
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise bad("no numeric score (or predicted_iou)")
    return str(entry["image_id"]), rle, float(score)


def read_instance_predictions(path: Path, dataset: Dataset) -> InstancePredictionFile:
    """The instance predictions of ``path`` (see :class:`InstancePredictionFile`)."""
    return InstancePredictionFile(path, dataset)


class ReplayTask(Task):
    """A task whose model call is a file of predictions (see the module docstring)."""

    measures_cost = False

    def __init__(self, jobs: list[JobContext], inner: type[Task], source: Any) -> None:
        super().__init__(jobs)
        self.inner = inner
        self.source = source
        self.spec = inner.spec  # type: ignore[misc]  # the task's own metrics and report

    def evaluator(self, job: int) -> Evaluator:
        return self.inner.evaluator_for(self.jobs[job], live=False)

    def make_writer(self, job: int) -> Writer:
        """The task's writer of the files that follow from the scores, and the source."""
        return _Scored(self.inner.writer(self.jobs[job], live=False), self.source)

    def describe_input(self, sample: Sample, inputs: Any) -> dict[str, Any]:
        return {}

    def prepare(self, sample: Sample) -> tuple[Any, list[str]]:
        return None, []

    def warmup(self, sample: Sample, inputs: Any) -> None:
        return None

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        prediction = self.source.get(sample.ref)
        return [prediction for _ in self.jobs]


class _Scored(Writer):
    """A replay's writer: the task's own (``live=False``) plus ``scored_from``."""

    def __init__(self, inner: Writer, source: Any) -> None:
        super().__init__(inner.ctx, live=False)
        self.inner, self.source = inner, source

    def finish(self, evaluator: Evaluator) -> dict[str, Any]:
        return {**self.inner.finish(evaluator), "scored_from": self.source.info()}

    def figures(self, evaluator: Evaluator) -> list[dict[str, str]]:
        return self.inner.figures(evaluator)
