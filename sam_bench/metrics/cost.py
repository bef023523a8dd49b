"""Cost measurement: stage timers, latency statistics and memory peaks, and their catalogue
entries.

Definitions follow ``docs/metrics.md`` ("Cost"): on CUDA the clock is read only after
``torch.cuda.synchronize()``; GPU memory is ``max_memory_allocated`` after resetting the peak
before each item; the process's peak resident set is measured per job.

Stages: every task times ``preprocess`` and the stages it declares (AMG: ``encoder``,
``decoder``, ``postprocess``; a task may add its own, e.g. ``propagation`` or ``clip``); the
runner adds ``metrics``. ``latency_ms`` of an item is the sum of every stage but ``metrics``:
what a SAM 2 user pays. Each stage ``<s>`` is reported as ``<s>_ms_mean``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import numpy as np
import psutil

from sam_bench.metrics.catalogue import ALL_TASKS, CATALOGUE, Metric, declare, declare_family

if TYPE_CHECKING:  # torch is imported only where CUDA is used: reports read this module
    import torch

T = TypeVar("T")

#: Stages of the AMG timing split, in order (the default of :class:`StageTimes`).
STAGES = ("preprocess", "encoder", "decoder", "postprocess", "metrics")
#: Stages that are not part of what a SAM 2 user pays (excluded from ``latency_ms``).
NON_LATENCY_STAGES = ("metrics",)
LATENCY_STAGES = tuple(s for s in STAGES if s not in NON_LATENCY_STAGES)


class Clock:
    """A wall clock that synchronises CUDA before each read (when CUDA is in use)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def now(self) -> float:
        """Seconds, after all queued CUDA work on the device has finished."""
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter()


@dataclass
class StageTimes:
    """Seconds spent per stage for one item (accumulates over repeated calls). Stages that are
    not listed at construction are added on first use."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    peak_mb: float = math.nan
    """This job's own CUDA peak for the item, when an engine computing several jobs together
    can tell it (the shared stages' peak combined with the job's own post-processing peak);
    NaN: the loop's per-item peak of the whole group applies."""
    wall_offset: float = 0.0
    """Wall seconds actually spent minus those counted in the stages. Non-zero only with the
    encoder cache: the ``encoder`` stage then holds what running the encoder costs (stored
    with the entry on a hit), and this holds the difference to what ran (negative on a hit,
    the hashing and writing on a miss). Only ``marginal_ms`` uses it."""

    @classmethod
    def of(cls, stages: tuple[str, ...]) -> StageTimes:
        """Empty timers for ``stages`` (``metrics`` appended when missing)."""
        names = (*stages, *(s for s in NON_LATENCY_STAGES if s not in stages))
        return cls(seconds=dict.fromkeys(names, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def measure(self, stage: str, clock: Clock) -> Iterator[None]:
        """Time the block into ``stage``."""
        t0 = clock.now()
        try:
            yield
        finally:
            self.add(stage, clock.now() - t0)

    def ms(self) -> dict[str, float]:
        """``{"<stage>_ms": ..., "latency_ms": ...}`` for a per-image row."""
        out = {f"{k}_ms": v * 1000.0 for k, v in self.seconds.items()}
        out["latency_ms"] = (
            sum(v for k, v in self.seconds.items() if k not in NON_LATENCY_STAGES) * 1000.0
        )
        return out

    def shared_seconds(self, own: tuple[str, ...]) -> float:
        """Seconds of every stage but ``own`` and ``metrics``, plus :attr:`wall_offset`: the
        part of an item's time that jobs computed together share."""
        skip = set(own) | set(NON_LATENCY_STAGES)
        return sum(v for k, v in self.seconds.items() if k not in skip) + self.wall_offset


def latency_summary(latencies_ms: list[float], per_s: str = "images_per_s") -> dict[str, float]:
    """Mean / p50 / p90 of per-item latency and items per second (``per_s`` names that key;
    NaN when empty)."""
    a = np.asarray([x for x in latencies_ms if np.isfinite(x)], dtype=float)
    if a.size == 0:
        nan = float("nan")
        return {"latency_ms_mean": nan, "latency_ms_p50": nan, "latency_ms_p90": nan, per_s: nan}
    mean = float(a.mean())
    return {
        "latency_ms_mean": mean,
        "latency_ms_p50": float(np.percentile(a, 50)),
        "latency_ms_p90": float(np.percentile(a, 90)),
        per_s: 1000.0 / mean if mean > 0 else float("nan"),
    }


def _finite_mean(values: list[float]) -> float:
    vals = [v for v in values if isinstance(v, int | float) and np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def cost_summary(
    rows: list[dict[str, Any]], stages: tuple[str, ...], per_s: str = "images_per_s"
) -> dict[str, float]:
    """The cost metrics of a job from its ok per-item rows: latency statistics, the mean of
    every stage (``<stage>_ms_mean``), ``marginal_ms_mean``, ``peak_gpu_mem_mb`` and
    ``peak_gpu_reserved_mb`` (the maxima over items; NaN on CPU)."""
    out = latency_summary([r["latency_ms"] for r in rows], per_s)
    names = (*stages, *(s for s in NON_LATENCY_STAGES if s not in stages))
    for stage in names:
        out[f"{stage}_ms_mean"] = _finite_mean([r.get(f"{stage}_ms", math.nan) for r in rows])
    out["marginal_ms_mean"] = _finite_mean([r.get("marginal_ms", math.nan) for r in rows])
    gpu = [r.get("gpu_peak_mb", math.nan) for r in rows]
    gpu = [g for g in gpu if isinstance(g, int | float) and np.isfinite(g)]
    out["peak_gpu_mem_mb"] = max(gpu) if gpu else float("nan")
    res = [r.get("gpu_reserved_mb", math.nan) for r in rows]
    res = [g for g in res if isinstance(g, int | float) and np.isfinite(g)]
    out["peak_gpu_reserved_mb"] = max(res) if res else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# memory

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _vm_hwm_mb() -> float | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024.0 if m else None


class PeakRSS:
    """Peak resident memory of this process over one job, not inherited from earlier jobs.

    On Linux the kernel's high-water mark (``VmHWM``) is reset by writing ``5`` to
    ``/proc/self/clear_refs`` and read back at the end (exact). Elsewhere a background thread
    samples ``psutil`` RSS every ``interval`` seconds (may miss short spikes).
    ``method`` records which one ran.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.method = "none"
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakRSS:
        try:
            _CLEAR_REFS.write_text("5")
            if _vm_hwm_mb() is not None:
                self.method = "vmhwm"
                return self
        except OSError:
            pass
        self.method = "sampled"
        proc = psutil.Process()

        def sample() -> None:
            while not self._stop.is_set():
                self._peak = max(self._peak, proc.memory_info().rss / 2**20)
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=sample, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def peak_mb(self) -> float:
        """Peak so far in MiB."""
        if self.method == "vmhwm":
            return _vm_hwm_mb() or float("nan")
        return max(self._peak, psutil.Process().memory_info().rss / 2**20)

    def stop(self) -> float:
        """Stop sampling and return the peak in MiB."""
        peak = self.peak_mb()
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
        return peak


class CudaMemory(Protocol):
    """What :class:`GpuPeak` reads of the CUDA caching allocator (``torch.cuda`` has these;
    a recorded allocator trace can stand in for it in CPU tests)."""

    def synchronize(self, device: Any = None) -> None: ...
    def reset_peak_memory_stats(self, device: Any = None) -> None: ...
    def max_memory_allocated(self, device: Any = None) -> int: ...
    def max_memory_reserved(self, device: Any = None) -> int: ...


def combine_peaks(*peaks_mb: float) -> float:
    """The peak of work that ran in parts (the maximum of the parts' peaks), NaN parts left out
    (NaN when every part is NaN: nothing was measured, e.g. on the CPU).

    The per-configuration rule (README, "GPU memory"): a job's ``gpu_peak_mb`` combines the
    peak of the stages its group shares (the encoder -- the peak stored with the encoder-cache
    entry when the encoder did not run -- and a shared decoder pass) with the peak of its own
    stages (its decoding, post-processing, CLIP), each measured after a reset, so it is what
    the configuration costs alone, not the group's maximum."""
    vals = [float(p) for p in peaks_mb if not math.isnan(float(p))]
    return max(vals) if vals else math.nan


def measured(gpu: GpuPeak, run: Callable[[], T]) -> tuple[T, float]:
    """``run()`` and its own CUDA peak in MiB: measured after a reset, so what stays allocated
    (weights, the image's features) counts and an earlier part's peak does not. NaN on the
    CPU."""
    gpu.reset()
    out = run()
    return out, gpu.peak_mb()


#: Reserved-memory peaks folded in at each reset, per allocator and device: a reset by any
#: :class:`GpuPeak` (an engine resets between its stages) must not lose what the caching
#: allocator reserved earlier in the item.
_RESERVED_FOLD: dict[tuple[int, str], float] = {}


class GpuPeak:
    """Per-image CUDA peak allocation (``max_memory_allocated`` after a reset) and the
    caching allocator's reserved peak (``max_memory_reserved``). NaN on CPU.

    ``memory``: the allocator to read (``torch.cuda`` by default; a recorded trace in tests).
    """

    def __init__(self, device: torch.device, memory: CudaMemory | None = None) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self._memory = memory

    @property
    def memory(self) -> CudaMemory:
        if self._memory is None:
            import torch

            self._memory = cast("CudaMemory", torch.cuda)
        return self._memory

    @property
    def _key(self) -> tuple[int, str]:
        """The allocator and device index (``cuda`` and ``cuda:0`` are one device)."""
        index = self.device.index
        if index is None:
            current = getattr(self.memory, "current_device", None)
            index = int(current()) if callable(current) else 0
        return (id(self.memory), f"{self.device.type}:{index}")

    def reset(self) -> None:
        """Start a new peak window (the reserved peak so far is kept for
        :meth:`reserved_mb`)."""
        if self.cuda:
            m = self.memory
            m.synchronize(self.device)
            key = self._key
            seen = m.max_memory_reserved(self.device) / 2**20
            _RESERVED_FOLD[key] = max(_RESERVED_FOLD.get(key, 0.0), seen)
            m.reset_peak_memory_stats(self.device)

    def start_item(self) -> None:
        """Start an item: a new peak window, and the reserved peak measured from here."""
        if self.cuda:
            self.reset()
            _RESERVED_FOLD[self._key] = 0.0

    def peak_mb(self) -> float:
        """Allocated peak since the last reset, in MiB."""
        if not self.cuda:
            return float("nan")
        m = self.memory
        m.synchronize(self.device)
        return m.max_memory_allocated(self.device) / 2**20

    def reserved_mb(self) -> float:
        """Reserved peak (memory the caching allocator held) since :meth:`start_item`, across
        every reset in between, in MiB. It belongs to the process, not to a configuration: the
        allocator keeps blocks an earlier job of the group freed, so a group's jobs share it."""
        if not self.cuda:
            return float("nan")
        m = self.memory
        m.synchronize(self.device)
        now = m.max_memory_reserved(self.device) / 2**20
        return max(_RESERVED_FOLD.get(self._key, 0.0), now)


# ---------------------------------------------------------------------------------------------
# catalogue entries

declare(
    Metric("latency_ms_mean", "lower", "mean ms",
           "per-item latency (every stage but metrics: what a SAM 2 user pays), mean over the "
           "timed items (a warm-up pass runs first, untimed)",
           reference="docs/metrics.md: Cost", unit="ms", kind="cost", fmt="{:.0f}"),
    Metric("latency_ms_p50", "lower", "p50 ms", "per-item latency, median over the items",
           reference="docs/metrics.md: Cost", unit="ms", kind="cost", fmt="{:.0f}"),
    Metric("latency_ms_p90", "lower", "p90 ms", "per-item latency, 90th percentile",
           reference="docs/metrics.md: Cost", unit="ms", kind="cost", fmt="{:.0f}"),
    Metric("images_per_s", "higher", "img/s", "images per second: 1000 / latency_ms_mean",
           reference="docs/metrics.md: Cost", unit="img/s", kind="cost", fmt="{:.3g}"),
    Metric("marginal_ms_mean", "lower", "marginal ms",
           "time the job added to its sweep per item: jobs computed together share stages, "
           "which count for the group's first job only (an encoder-cache hit counts its load)",
           unit="ms", kind="cost", fmt="{:.0f}"),
    Metric("peak_gpu_mem_mb", "lower", "GPU MB",
           "CUDA max_memory_allocated per item after a reset, maximum over items (NaN on CPU): "
           "what the configuration costs alone -- the shared stages' peak (the encoder's, "
           "stored with an encoder-cache entry when it did not run) combined with the job's "
           "own stages' (decoding, post-processing, CLIP), never its group's maximum",
           reference="docs/metrics.md: Cost", unit="MB", kind="cost", fmt="{:.0f}"),
    Metric("peak_gpu_reserved_mb", "lower", "GPU reserved MB",
           "CUDA max_memory_reserved per item (memory the caching allocator held, allocated "
           "or cached), maximum over items (NaN on CPU); the process's, shared by the jobs "
           "computed together",
           unit="MB", kind="cost", fmt="{:.0f}"),
)  # fmt: skip

_STAGE_TEXT = {
    "preprocess": "conversion of the stored pixels to the model input",
    "encoder": "image encoder (set_image)",
    "decoder": "prompt encoder + mask decoder, every prompt batch",
    "postprocess": "filtering, NMS, upsampling and encoding of the masks",
    "metrics": "scoring against ground truth (not part of latency)",
}


def _stage_metric(match: re.Match[str]) -> Metric:
    stage = match.group("stage")
    what = _STAGE_TEXT.get(stage, f"the {stage} stage")
    return Metric(
        f"{stage}_ms_mean", "lower", f"{stage} ms", f"per-item time of {what}, mean over items",
        unit="ms", kind="cost", fmt="{:.0f}", tasks=(ALL_TASKS,),
    )  # fmt: skip


declare_family(r"(?P<stage>[a-z][a-z0-9]*)_ms_mean", _stage_metric)
for _stage in STAGES:  # the common stages, listed in this order
    CATALOGUE.get(f"{_stage}_ms_mean")
