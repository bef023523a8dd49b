"""A recorded CUDA caching allocator for CPU tests of the GPU-peak bookkeeping
(:class:`sam_bench.metrics.cost.GpuPeak` reads it in place of ``torch.cuda``).

It keeps the four numbers the real allocator keeps: bytes allocated now, their peak since the
last ``reset_peak_memory_stats``, bytes reserved now (segments grow to cover what is allocated
and are never returned: no ``empty_cache``) and their peak. Every call is recorded in
:attr:`trace`, so a test can replay what a measurement saw.
"""

from __future__ import annotations

from typing import Any

MB = 2**20


class RecordedAllocator:
    """``alloc`` / ``free`` move the counters; the ``torch.cuda``-named methods read them."""

    def __init__(self, segment_mb: int = 2) -> None:
        self.segment = segment_mb * MB
        self.allocated = 0
        self.reserved = 0
        self.peak_allocated = 0
        self.peak_reserved = 0
        self.trace: list[tuple[str, int]] = []

    # what runs on the "device"
    def alloc(self, mb: float) -> None:
        self.allocated += int(mb * MB)
        if self.allocated > self.reserved:  # a new segment, rounded up
            self.reserved = -(-self.allocated // self.segment) * self.segment
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        self.trace.append(("alloc", int(mb * MB)))

    def free(self, mb: float) -> None:
        self.allocated -= int(mb * MB)
        assert self.allocated >= 0, "freed more than allocated"
        self.trace.append(("free", int(mb * MB)))

    def run(self, mb: float) -> None:
        """A kernel that needs ``mb`` of temporaries and frees them."""
        self.alloc(mb)
        self.free(mb)

    # torch.cuda's names
    def synchronize(self, device: Any = None) -> None:
        self.trace.append(("synchronize", 0))

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        self.peak_allocated = self.allocated
        self.peak_reserved = self.reserved
        self.trace.append(("reset", 0))

    def max_memory_allocated(self, device: Any = None) -> int:
        return self.peak_allocated

    def max_memory_reserved(self, device: Any = None) -> int:
        return self.peak_reserved
