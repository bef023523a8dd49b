"""Cost measurement: stage timers, latency statistics and memory peaks.

Definitions follow ``shared/docs/metrics.md`` ("Cost"): on CUDA the clock is read only after
``torch.cuda.synchronize()``; GPU memory is ``max_memory_allocated`` after resetting the peak
before each image; the process's peak resident set is measured per job.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch

#: Stages of the per-image timing split, in order. ``latency`` is the sum of all but metrics.
STAGES = ("preprocess", "encoder", "decoder", "postprocess", "metrics")
LATENCY_STAGES = ("preprocess", "encoder", "decoder", "postprocess")


class Clock:
    """A wall clock that synchronises CUDA before each read (when CUDA is in use)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def now(self) -> float:
        """Seconds, after all queued CUDA work has finished."""
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


@dataclass
class StageTimes:
    """Seconds spent per stage for one image (accumulates over repeated calls)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_offset: float = 0.0
    """Wall seconds actually spent minus those counted in the stages. Non-zero only with the
    encoder cache: the ``encoder`` stage then holds what running the encoder costs (stored
    with the entry on a hit), and this holds the difference to what ran (negative on a hit,
    the hashing and writing on a miss). Only ``marginal_ms`` uses it."""

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

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
        out["latency_ms"] = sum(self.seconds[k] for k in LATENCY_STAGES) * 1000.0
        return out


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    """Mean / p50 / p90 of per-image latency and images per second (NaN when empty)."""
    a = np.asarray([x for x in latencies_ms if np.isfinite(x)], dtype=float)
    if a.size == 0:
        nan = float("nan")
        return {
            "latency_ms_mean": nan,
            "latency_ms_p50": nan,
            "latency_ms_p90": nan,
            "images_per_s": nan,
        }
    mean = float(a.mean())
    return {
        "latency_ms_mean": mean,
        "latency_ms_p50": float(np.percentile(a, 50)),
        "latency_ms_p90": float(np.percentile(a, 90)),
        "images_per_s": 1000.0 / mean if mean > 0 else float("nan"),
    }


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


class GpuPeak:
    """Per-image CUDA peak allocation (``max_memory_allocated`` after a reset). NaN on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float:
        if not self.cuda:
            return float("nan")
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device) / 2**20
