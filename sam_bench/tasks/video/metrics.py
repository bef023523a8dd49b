"""Video object segmentation metrics (DAVIS semi-supervised protocol) and their catalogue
entries.

Definitions follow the official DAVIS 2017 toolkit (``davisvideochallenge/davis2017-evaluation``,
``davis2017/metrics.py``, ``utils.py`` and ``evaluation.py``), re-implemented here:

* **J** (region similarity): IoU of the object's predicted and ground-truth masks on a frame;
  1 when both are empty (the toolkit's convention for an empty union).
* **F** (boundary accuracy): both masks are reduced to one-pixel boundary maps with
  :func:`seg2bmap` (Martin et al.'s ``seg2bmap``: a pixel is a boundary pixel when it differs
  from its east, south or south-east neighbour); each map is dilated with a disk of radius
  ``ceil(0.008 x image diagonal)`` pixels; precision is the fraction of predicted boundary
  pixels inside the dilated ground-truth boundary, recall the fraction of ground-truth boundary
  pixels inside the dilated predicted boundary, and F = 2PR / (P + R) (0 when P + R = 0).
  Empty boundaries follow the toolkit: neither has one -> P = R = 1 (F = 1); only the ground
  truth has one -> P = 1, R = 0 (F = 0); only the prediction has one -> P = 0, R = 1 (F = 0).
  A mask covering the whole frame has no boundary under ``seg2bmap``.
* **Statistics** of one object's per-frame values (:func:`davis_statistics`): mean, recall (the
  fraction of frames with a value > 0.5) and decay (mean of the first of four bins of frames
  minus mean of the last, bins cut as the toolkit cuts them).
* **Frames scored**: an object is scored on the annotated frames after the frame it was prompted
  on (its first annotated frame where its mask is not empty), up to and excluding the last frame
  of the sequence. For DAVIS, where every object is on frame 0, that is frames 1 .. N-2, as the
  toolkit scores them. Void pixels (255 in DAVIS 2017 palette annotations) count as background,
  as in the toolkit's semi-supervised evaluation.
* **Aggregates**: ``j_mean``, ``f_mean`` (and recall, decay) are means over every object of the
  dataset (each object counts once, whatever its sequence), as the toolkit's global table;
  ``jf`` = (``j_mean`` + ``f_mean``) / 2. Per sequence, the means over its objects.

Propagation cost (:class:`PropagationCost`): ``fps`` is frames propagated per second (frames
after a prompt, each timed from the previous output to its own, including moving the masks to
the CPU), and ``frame_latency_ms_*`` the statistics of those per-frame times, pooled over the
job. Frames where every object is prompted are not propagated frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from sam_bench.data.base import Sample, VideoTruth
from sam_bench.metrics.catalogue import Metric, declare

BOUND_TH = 0.008
"""Boundary tolerance of F as a fraction of the image diagonal (DAVIS)."""

TASKS = ("video",)


# --------------------------------------------------------------------------------------------
# per-frame measures


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> float:
    """J: IoU of two binary masks; 1.0 when both are empty (DAVIS convention)."""
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    g, p = gt.astype(bool), pred.astype(bool)
    union = int(np.count_nonzero(g | p))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(g & p)) / union


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary map of a binary mask, as Martin's ``seg2bmap`` (used by DAVIS).

    A pixel is on the boundary when its value differs from its east, south or south-east
    neighbour (neighbours outside the image count as background); in the last row only the
    east neighbour is compared, in the last column only the south one, and the bottom-right
    pixel is never on the boundary. The boundary thus lies half a pixel towards the origin.
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {m.shape}")
    right = np.zeros_like(m)
    below = np.zeros_like(m)
    diag = np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    below[:-1, :] = m[1:, :]
    diag[:-1, :-1] = m[1:, 1:]
    edge = (m != right) | (m != below) | (m != diag)
    edge[-1, :] = m[-1, :] != right[-1, :]
    edge[:, -1] = m[:, -1] != below[:, -1]
    edge[-1, -1] = False
    return edge


def boundary_tolerance(shape: tuple[int, ...], bound_th: float = BOUND_TH) -> int:
    """Dilation radius in pixels: ``bound_th`` itself when >= 1, else
    ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def disk(radius: int) -> np.ndarray:
    """Structuring element: pixels (x, y) with x^2 + y^2 <= radius^2 (uint8)."""
    r = np.arange(-radius, radius + 1)
    return ((r[None, :] ** 2 + r[:, None] ** 2) <= radius**2).astype(np.uint8)


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """F: boundary F-measure of ``pred`` against ``gt`` (see the module docstring)."""
    if gt.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {gt.shape} vs {pred.shape}")
    gt_b, pr_b = seg2bmap(gt), seg2bmap(pred)
    n_gt, n_pr = int(np.count_nonzero(gt_b)), int(np.count_nonzero(pr_b))
    if n_gt == 0 and n_pr == 0:
        precision = recall = 1.0
    elif n_pr == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        kernel = disk(boundary_tolerance(gt.shape, bound_th))
        gt_zone = cv2.dilate(gt_b.astype(np.uint8), kernel).astype(bool)
        pr_zone = cv2.dilate(pr_b.astype(np.uint8), kernel).astype(bool)
        precision = int(np.count_nonzero(pr_b & gt_zone)) / n_pr
        recall = int(np.count_nonzero(gt_b & pr_zone)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def davis_statistics(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F values, as the DAVIS toolkit.

    Mean ignores NaN; recall is the fraction of frames whose value is > 0.5 (a NaN frame counts
    as not above); decay cuts the frames into four bins at ``round(linspace(1, n, 5)) - 1``
    (each bin includes its end index) and returns mean(first bin) - mean(last bin). The
    toolkit stores those indices as uint8, which wraps beyond 256 frames; here they are plain
    integers (identical up to 256 frames). Empty input: NaN for all three.
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        nan = float("nan")
        return nan, nan, nan
    with np.errstate(invalid="ignore"):
        finite = v[~np.isnan(v)]
        mean = float(finite.mean()) if finite.size else float("nan")
        recall = float(np.mean(v > 0.5))
    cuts = (np.round(np.linspace(1, v.size, 5) + 1e-10) - 1).astype(int)
    bins = [v[cuts[i] : cuts[i + 1] + 1] for i in range(4)]

    def nanmean(a: np.ndarray) -> float:
        a = a[~np.isnan(a)]
        return float(a.mean()) if a.size else float("nan")

    return mean, recall, nanmean(bins[0]) - nanmean(bins[3])


# --------------------------------------------------------------------------------------------
# predictions and evaluators


@dataclass
class VideoPrediction:
    """One sequence's predicted masks (what the video task returns and what a folder of
    DAVIS-format PNGs holds)."""

    labels: Sequence[np.ndarray | None]
    """HxW integer maps of object ids (0 = background), one per frame of the sequence (or per
    name of :attr:`frame_names`); ``None`` where nothing was predicted (background, but a
    frame that is scored must have a prediction). May be read lazily (a folder of PNGs)."""
    frame_names: list[str] | None = None
    """Names of the frames :attr:`labels` holds, matched to the sequence's frame names;
    ``None``: :attr:`labels` has exactly one entry per frame of the sequence."""
    frame_ms: list[float | None] | None = None
    """Per frame: the propagation time of that frame in ms (``None`` for frames that were not
    propagated); ``None`` altogether when nothing was timed (saved predictions)."""
    untrained: bool | None = None
    """Whether the masks came from random weights (``None``: unknown)."""
    compile_s: float | None = None
    """``video.vos_optimized``: seconds ``torch.compile`` spent during this sequence, taken
    out of its stages and frame times (``None``: not compiled)."""
    n_compiles: int = 0
    """Compilations during this sequence (their frames are not timed)."""
    notes: list[str] = field(default_factory=list)
    """How the prediction was made or read (recorded per sequence)."""


@dataclass
class ObjectScores:
    """J and F of one object over its scored frames, with their statistics."""

    sequence: str
    object_id: int
    prompt_frame: int
    frames: list[int]
    j: list[float]
    f: list[float]

    def stats(self) -> dict[str, float]:
        jm, jr, jd = davis_statistics(self.j)
        fm, fr, fd = davis_statistics(self.f)
        return {
            "j_mean": jm, "j_recall": jr, "j_decay": jd,
            "f_mean": fm, "f_recall": fr, "f_decay": fd,
            "jf": (jm + fm) / 2.0,
        }  # fmt: skip


def frame_lookup(
    prediction: VideoPrediction, video: VideoTruth, seq: str
) -> Callable[[int], np.ndarray | None]:
    """Frame index of the sequence -> the prediction's label map (or ``None``)."""
    if prediction.frame_names is None:
        if len(prediction.labels) != len(video.frames):
            raise ValueError(
                f"{seq}: {len(prediction.labels)} predicted frames for {len(video.frames)} frames"
            )
        return lambda t: prediction.labels[t]
    where = {name: i for i, name in enumerate(prediction.frame_names)}

    def lookup(t: int) -> np.ndarray | None:
        i = where.get(video.frame_names[t])
        return None if i is None else prediction.labels[i]

    return lookup


STAT_KEYS = ("j_mean", "j_recall", "j_decay", "f_mean", "f_recall", "f_decay", "jf")


def prompt_frames(video: VideoTruth) -> dict[int, int]:
    """Object id -> its first annotated frame where its mask is not empty."""
    first: dict[int, int] = {}
    for t in sorted(video.masks):
        for obj, rle in video.masks[t].items():
            if obj not in first and int(mask_utils.area(rle)) > 0:
                first[obj] = t
    return first


def scored_frames(video: VideoTruth, prompt_frame: int) -> list[int]:
    """Annotated frames an object prompted on ``prompt_frame`` is scored on: after the prompt
    frame, before the last frame of the sequence."""
    last = len(video.frames) - 1
    return [t for t in sorted(video.masks) if prompt_frame < t < last]


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


class VideoEvaluator:
    """J and F per object and frame, statistics per object, sequence and dataset.

    Keeps the per-object scores (:attr:`objects`) and a per-frame table (:attr:`frame_rows`)
    for the task's ``per_sequence.csv`` / ``per_frame.csv``.
    """

    name = "video"

    def __init__(self, bound_th: float = BOUND_TH) -> None:
        self.bound_th = bound_th
        self.reset()

    def reset(self) -> None:
        self.objects: list[ObjectScores] = []
        self.sequences: list[dict[str, Any]] = []
        self.frame_rows: list[dict[str, Any]] = []
        self.untrained: bool | None = None

    def process(self, sample: Sample, prediction: VideoPrediction) -> dict[str, Any]:
        video = sample.video
        if video is None:
            raise ValueError(f"item {sample.ref.image_id} is not a video")
        seq = sample.ref.image_id
        predicted = frame_lookup(prediction, video, seq)
        n = len(video.frames)
        if prediction.untrained is not None:
            self.untrained = bool(self.untrained) or prediction.untrained
        first = prompt_frames(video)
        objs: list[ObjectScores] = []
        scores: dict[tuple[int, int], tuple[float, float]] = {}
        for obj in sorted(first):
            frames = scored_frames(video, first[obj])
            j: list[float] = []
            f: list[float] = []
            for t in frames:
                gt = self._gt(video, t, obj)
                pred = self._pred(predicted, t, video, seq) == obj
                jt, ft = region_similarity(gt, pred), boundary_f(gt, pred, self.bound_th)
                j.append(jt)
                f.append(ft)
                scores[(t, obj)] = (jt, ft)
            objs.append(ObjectScores(seq, obj, first[obj], frames, j, f))
        self.objects.extend(objs)
        self._frame_rows(seq, video, prediction, first, scores)
        scored = [o for o in objs if o.frames]
        row: dict[str, Any] = {
            "n_frames": n,
            "n_objects": len(objs),
            "n_frames_scored": sum(len(o.frames) for o in objs),
            "prompt_frames": " ".join(f"{o}:{t}" for o, t in sorted(first.items())),
        }
        stats = [o.stats() for o in scored]
        for key in STAT_KEYS:
            row[key] = _mean([s[key] for s in stats])
        self.sequences.append({"sequence": seq, **row})
        return row

    @staticmethod
    def _gt(video: VideoTruth, t: int, obj: int) -> np.ndarray:
        rle = video.masks.get(t, {}).get(obj)
        if rle is None:
            return np.zeros((video.height, video.width), dtype=bool)
        return mask_utils.decode(rle).astype(bool)

    @staticmethod
    def _pred(
        predicted: Callable[[int], np.ndarray | None], t: int, video: VideoTruth, seq: str
    ) -> np.ndarray:
        labels = predicted(t)
        name = video.frame_names[t]
        if labels is None:
            raise ValueError(f"{seq}: no predicted mask for frame {name}, which is scored")
        if labels.shape != (video.height, video.width):
            raise ValueError(
                f"{seq} frame {name}: predicted mask is {labels.shape[1]}x{labels.shape[0]}, "
                f"the frame is {video.width}x{video.height}"
            )
        return labels

    def _frame_rows(
        self,
        seq: str,
        video: VideoTruth,
        prediction: VideoPrediction,
        first: dict[int, int],
        scores: dict[tuple[int, int], tuple[float, float]],
    ) -> None:
        for t, name in enumerate(video.frame_names):
            ms = prediction.frame_ms[t] if prediction.frame_ms is not None else None
            for obj in sorted(first):
                j, f = scores.get((t, obj), (None, None))
                self.frame_rows.append({
                    "sequence": seq, "frame": t, "frame_name": name, "object": obj,
                    "annotated": t in video.masks, "prompt_frame": t == first[obj],
                    "scored": (t, obj) in scores, "j": j, "f": f, "propagation_ms": ms,
                })  # fmt: skip

    def object_rows(self) -> list[dict[str, Any]]:
        """One row per object (the toolkit's ``<sequence>_<id>`` naming)."""
        rows = []
        for o in self.objects:
            rows.append({
                "sequence": o.sequence, "object": o.object_id,
                "name": f"{o.sequence}_{o.object_id}", "prompt_frame": o.prompt_frame,
                "n_frames_scored": len(o.frames), **o.stats(),
            })  # fmt: skip
        return rows

    def evaluate(self) -> dict[str, float]:
        stats = [o.stats() for o in self.objects if o.frames]
        out = {key: _mean([s[key] for s in stats]) for key in STAT_KEYS if key != "jf"}
        out["jf"] = (out["j_mean"] + out["f_mean"]) / 2.0
        out["n_sequences"] = float(len(self.sequences))
        out["n_objects"] = float(len(self.objects))
        out["n_frames_scored"] = float(sum(len(o.frames) for o in self.objects))
        return out


class PropagationCost:
    """``fps`` and per-frame latency of propagation, from the predictions' frame times
    (nothing when the predictions were not timed)."""

    name = "propagation_cost"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frame_ms: list[float] = []
        self.compile_s: float | None = None

    def process(self, sample: Sample, prediction: VideoPrediction) -> dict[str, Any]:
        if prediction.frame_ms is None:
            return {}
        times = [t for t in prediction.frame_ms if t is not None]
        self.frame_ms.extend(times)
        total = sum(times)
        compiled: dict[str, Any] = {}
        if prediction.compile_s is not None:
            self.compile_s = (self.compile_s or 0.0) + prediction.compile_s
            compiled = {"compile_ms": prediction.compile_s * 1000.0,
                        "n_compiles": prediction.n_compiles}  # fmt: skip
        return {
            **compiled,
            "n_frames_propagated": len(times),
            "fps": len(times) * 1000.0 / total if total > 0 else float("nan"),
            "frame_latency_ms_p50": float(np.percentile(times, 50)) if times else float("nan"),
        }

    def evaluate(self) -> dict[str, float]:
        if not self.frame_ms:
            return {}
        a = np.asarray(self.frame_ms, dtype=float)
        total = float(a.sum())
        compiled = {} if self.compile_s is None else {"timed_compile_s": self.compile_s}
        return {
            **compiled,
            "fps": a.size * 1000.0 / total if total > 0 else float("nan"),
            "frame_latency_ms_mean": float(a.mean()),
            "frame_latency_ms_p50": float(np.percentile(a, 50)),
            "frame_latency_ms_p90": float(np.percentile(a, 90)),
            "n_frames_propagated": float(a.size),
        }


# --------------------------------------------------------------------------------------------
# catalogue entries

_REF = "DAVIS 2017 toolkit (davis2017-evaluation)"


def _stat(name: str, measure: str, what: str, direction: str, label: str, text: str) -> Metric:
    return Metric(
        name, direction, label,  # type: ignore[arg-type]
        f"{text} of {measure} ({what}) over an object's scored frames, then the mean over every "
        "object of the dataset",
        reference=_REF, tasks=TASKS,
    )  # fmt: skip


_J = "J, per-frame mask IoU"
_F = "F, boundary F-measure within 0.008 x the image diagonal"

declare(
    Metric("jf", "higher", "J&F",
           "(j_mean + f_mean) / 2: the DAVIS headline (J&F-Mean)", reference=_REF, tasks=TASKS),
    _stat("j_mean", "J", _J, "higher", "J mean", "mean"),
    _stat("j_recall", "J", _J, "higher", "J recall", "fraction of frames with J > 0.5"),
    _stat("j_decay", "J", _J, "lower", "J decay", "mean of the first quarter minus the last"),
    _stat("f_mean", "F", _F, "higher", "F mean", "mean"),
    _stat("f_recall", "F", _F, "higher", "F recall", "fraction of frames with F > 0.5"),
    _stat("f_decay", "F", _F, "lower", "F decay", "mean of the first quarter minus the last"),
    Metric("n_sequences", "neither", "sequences", "sequences scored", tasks=TASKS, kind="info",
           fmt="{:.0f}"),
    Metric("n_objects", "neither", "objects",
           "objects tracked (one first annotated on the last frame has no scored frame and is "
           "left out of the means)", tasks=TASKS, kind="info", fmt="{:.0f}"),
    Metric("n_frames_scored", "neither", "frames scored",
           "object-frames scored (frames after each object's prompt frame, last frame excluded)",
           tasks=TASKS, kind="info", fmt="{:.0f}"),
    Metric("fps", "higher", "fps",
           "frames propagated per second: propagated frames / their summed per-frame time "
           "(frames after the prompt; prompting, init_state and warm-up excluded)",
           reference="docs/metrics.md: Video", unit="frames/s", tasks=TASKS, kind="cost",
           fmt="{:.3g}"),
    Metric("frame_latency_ms_mean", "lower", "frame ms",
           "per-frame propagation time (previous output to this frame's mask on the CPU), mean "
           "over every propagated frame of the job", unit="ms", tasks=TASKS, kind="cost",
           fmt="{:.0f}"),
    Metric("frame_latency_ms_p50", "lower", "frame p50 ms",
           "per-frame propagation time, median over every propagated frame of the job",
           unit="ms", tasks=TASKS, kind="cost", fmt="{:.0f}"),
    Metric("frame_latency_ms_p90", "lower", "frame p90 ms",
           "per-frame propagation time, 90th percentile over every propagated frame of the job",
           unit="ms", tasks=TASKS, kind="cost", fmt="{:.0f}"),
    Metric("n_frames_propagated", "neither", "frames propagated",
           "frames timed for fps (frames after a prompt)", tasks=TASKS, kind="info",
           fmt="{:.0f}"),
    Metric("timed_compile_s", "lower", "compile s (timed)",
           "video.vos_optimized: seconds torch.compile spent inside timed sequences after the "
           "warm-up (kept out of every stage and frame time; frames it fell in are not timed); "
           "0 when the warm-up compiled every shape", unit="s", tasks=TASKS, kind="cost",
           fmt="{:.1f}"),
    Metric("sequences_per_s", "higher", "seq/s",
           "sequences per second: 1000 / latency_ms_mean (a sequence's latency is every stage: "
           "frame folder, init_state, prompts, propagation)", unit="seq/s", tasks=TASKS,
           kind="cost", fmt="{:.3g}"),
)  # fmt: skip
