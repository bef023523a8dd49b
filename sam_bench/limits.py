"""Memory limits of a job: out-of-memory retries of prompt batches, and the RSS budget.

**Out-of-memory retries.** A computation done in batches of prompts (AMG's point batches,
the prompted task's instance batches) runs through :func:`retry_halving` (or
:class:`HalvingBatches`): when a batch fails for lack of memory (:func:`is_out_of_memory`:
CUDA's ``torch.OutOfMemoryError``, the ``RuntimeError`` torch raises when the CPU allocator
cannot allocate, Python's / numpy's ``MemoryError``), the same prompts are run again in
batches of half the size, down to a floor (``limits.oom_min_batch``, default 1); the later
batches of the same image keep the size that worked, the next image starts again at the
configured size. Before a retry the failed batch's tensors are released (the exception is
dropped first, as torch's documentation asks) and, on CUDA, ``torch.cuda.empty_cache()`` runs.
A batch that fails at the floor raises :class:`OutOfMemoryAtFloor`, an item error naming the
sizes tried.

Batches are independent prompts, but a batch's *size* can change the last bits of the
decoder's output (small matrix products pick their kernel by row count, see
:mod:`sam_bench.engines.decoder`). A retried image is computed as a run configured with the
smaller batch computes it (bit for bit, tested), which may differ slightly from the unretried
run. Measured on the development CPU (sam2.1 tiny, random weights, 2 threads; 4 x 4 grid,
batches of 8, 4 or 2 instead of 16): the fast engine in fp32 gave identical masks and
stability scores, and predicted IoUs differing by up to 6e-8 for 6-14 of 48 masks; in bf16,
0-6 of 48 masks differed by a few pixels (IoU >= 0.989 with the unretried mask); the official
generator (``engine=reference``) at 8 instead of 16 on a 2048 x 2048 image left 21 of 48 masks
or scores not bit-identical (IoU >= 0.999, scores within 1e-5). CUDA kernels were not
measured. Every retry is therefore recorded: per item (``per_image.csv`` ``oom_retries``,
``oom_batch``: the smallest batch used) and per job (``task_info.memory``, with a note).

**RSS budget.** With ``limits.max_rss_gb`` set, the shared loop (:mod:`sam_bench.loop`)
checks the process's resident memory before every item and before scoring it, and engines
check it before every prompt batch (:func:`check_budget`); a watchdog thread samples it every
:data:`WATCH_INTERVAL_S` seconds in between, so a short peak inside a batch counts too. Over
the budget, :class:`MemoryBudgetExceeded` stops the job: the item in flight is an error, the
items not reached are not run, the job ends ``failed`` with the reason, and the items that
finished stay in its per-item log (:mod:`sam_bench.resume`) for ``resume=true``. The checks
run between steps: one step that allocates past the budget at once (e.g. a very large
image's masks) is not interrupted (the watchdog only sets a flag; raising asynchronously in
the main thread could leave torch's autocast / inference-mode state half-restored), so
``limits.max_image_pixels`` and the batch size still bound what one step takes.

:class:`MemoryLimits` is the running job's state; the loop makes it current
(:func:`job_limits`) so that engines and tasks find it without passing it around.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

from sam_bench.errors import SamBenchError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

T = TypeVar("T")

GB = 1e9
"""Bytes per GB in ``limits.max_rss_gb`` (10**9, as ``cache.max_gb``)."""
WATCH_INTERVAL_S = 0.05
"""How often the watchdog samples the resident memory while a budget is set."""
MAX_EXAMPLES = 5
RETRY_NOTE = (
    "the oom_items images (per_image.csv oom_retries > 0) ran prompt batches smaller than "
    "configured after running out of memory: their masks and scores are those of a run with "
    "the smaller batch (oom_batch), which can differ in the last bits (rarely a few mask "
    "pixels) from a run without the retry"
)

#: Texts of the ``RuntimeError`` s torch raises when an allocation fails (CPU allocator on
#: Linux / Windows, CUDA before ``torch.OutOfMemoryError`` existed, cuBLAS / cuDNN
#: workspaces, other accelerators).
_OOM_TEXT = re.compile(
    r"DefaultCPUAllocator: (can't allocate memory|not enough memory)"
    r"|out of memory|_ALLOC_FAILED|std::bad_alloc",
    re.IGNORECASE,
)


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is an allocation failure that a smaller batch may avoid."""
    if isinstance(e, MemoryBudgetExceeded):
        return False
    if isinstance(e, MemoryError):  # Python, numpy's _ArrayMemoryError
        return True
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(e, oom):
        return True
    return isinstance(e, RuntimeError) and bool(_OOM_TEXT.search(str(e)))


class MemoryBudgetExceeded(SamBenchError):
    """The process's resident memory went over ``limits.max_rss_gb``: the job stops."""


class OutOfMemoryAtFloor(RuntimeError):
    """A batch ran out of memory at every size down to the floor (an item error)."""


def rss_bytes() -> int:
    """The process's resident set size now."""
    return int(psutil.Process().memory_info().rss)


def release_memory(device: torch.device | None) -> None:
    """Free what a failed batch left: collect cycles and, on CUDA, return cached blocks."""
    gc.collect()
    if device is not None and device.type == "cuda":
        import torch

        if torch.cuda.is_initialized():
            with torch.cuda.device(device):
                torch.cuda.empty_cache()


@dataclass
class ItemMemory:
    """What memory did to the current item."""

    item: str | None = None
    oom_retries: int = 0
    """Batches run again with half the size."""
    smallest_batch: int | None = None
    """The smallest batch size used after a retry (``None``: no retry)."""
    first_error: str | None = None
    """The first allocation failure's message."""

    def columns(self) -> dict[str, Any]:
        """Columns for the item's ``per_image.csv`` row (none when nothing was retried)."""
        if not self.oom_retries:
            return {}
        return {"oom_retries": self.oom_retries, "oom_batch": self.smallest_batch}


@dataclass
class MemoryLimits:
    """The memory limits of the running job (``limits.*``) and what happened under them."""

    max_rss_gb: float | None = None
    """``limits.max_rss_gb``: stop the job over this resident memory; ``None``: no budget."""
    oom_min_batch: int = 1
    """``limits.oom_min_batch``: the smallest batch an out-of-memory retry goes down to."""
    item: ItemMemory = field(default_factory=ItemMemory)
    oom_retries: int = 0
    oom_items: list[str] = field(default_factory=list)
    oom_smallest_batch: int | None = None
    stopped: str | None = None
    rss_max: int = 0
    """Largest resident memory the watchdog or a check saw (bytes; only with a budget)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def of(cls, cfg: Any) -> MemoryLimits:
        """From a ``limits`` config section (``None``: no limits)."""
        if cfg is None:
            return cls()
        return cls(
            max_rss_gb=getattr(cfg, "max_rss_gb", None),
            oom_min_batch=int(getattr(cfg, "oom_min_batch", 1)),
        )

    # ------------------------------------------------------------------ RSS budget

    def start(self) -> MemoryLimits:
        """Start the watchdog (only with a budget)."""
        if self.max_rss_gb is None or self._thread is not None:
            return self
        self._stop.clear()
        self.rss_max = rss_bytes()

        def watch() -> None:
            proc = psutil.Process()
            while not self._stop.wait(WATCH_INTERVAL_S):
                try:
                    self.rss_max = max(self.rss_max, int(proc.memory_info().rss))
                except psutil.Error:  # pragma: no cover - the process reading itself
                    return

        self._thread = threading.Thread(target=watch, name="sam-bench-rss-budget", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the watchdog."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=1.0)
            self._thread = None

    def check(self, where: str = "") -> None:
        """Raise :class:`MemoryBudgetExceeded` when the resident memory (now, or at any
        watchdog sample since the job started) went over the budget. ``where``: what was
        about to run, for the message (e.g. ``"before item x"``, ``"prompt batch"``)."""
        if self.max_rss_gb is None:
            return
        self.rss_max = max(self.rss_max, rss_bytes())
        if self.rss_max <= self.max_rss_gb * GB:
            return
        at = where or "check"
        if self.item.item is not None and where and "item" not in where:
            at = f"{where} of item {self.item.item}"
        self.stopped = (
            f"memory budget exceeded: the process's resident memory reached "
            f"{self.rss_max / GB:.2f} GB > limits.max_rss_gb={self.max_rss_gb:g} "
            f"(checked {at}); raise limits.max_rss_gb, or lower the batch size or the image "
            "size"
        )
        raise MemoryBudgetExceeded(self.stopped)

    # ------------------------------------------------------------------ OOM retries

    def begin_item(self, item: str | None) -> ItemMemory:
        """A fresh per-item record (retries noted before it, e.g. in the warm-up, are not
        the item's)."""
        self.item = ItemMemory(item=item)
        return self.item

    def note_retry(self, size: int, smaller: int, error: BaseException, what: str) -> None:
        """A batch of ``size`` failed with ``error`` and runs again in batches of
        ``smaller``."""
        it = self.item
        it.oom_retries += 1
        it.smallest_batch = (
            smaller if it.smallest_batch is None else min(smaller, it.smallest_batch)
        )
        text = (f"{type(error).__name__}: {error}".splitlines() or [""])[0][:300]
        it.first_error = it.first_error or text
        item = f" (item {it.item})" if it.item is not None else ""
        log.warning(
            "out of memory in a %s of %d%s: %s; retrying in batches of %d",
            what, size, item, text, smaller,
        )  # fmt: skip

    def end_item(self) -> dict[str, Any]:
        """Account for the current item in the job's totals; returns its row columns."""
        it = self.item
        if it.oom_retries:
            self.oom_retries += it.oom_retries
            if it.item is not None:
                self.oom_items.append(it.item)
            if it.smallest_batch is not None:
                low = self.oom_smallest_batch
                self.oom_smallest_batch = (
                    it.smallest_batch if low is None else min(low, it.smallest_batch)
                )
        return it.columns()

    def info(self, not_run: int = 0) -> dict[str, Any]:
        """``task_info.memory`` of the job."""
        return {
            "max_rss_gb": self.max_rss_gb,
            "rss_gb_max": round(self.rss_max / GB, 3) if self.max_rss_gb is not None else None,
            "stopped": self.stopped,
            "items_not_run": not_run,
            "oom_min_batch": self.oom_min_batch,
            "oom_retries": self.oom_retries,
            "oom_items": len(self.oom_items),
            "oom_examples": self.oom_items[:MAX_EXAMPLES],
            "oom_smallest_batch": self.oom_smallest_batch,
            "oom_note": RETRY_NOTE if self.oom_retries else None,
        }


_CURRENT: ContextVar[MemoryLimits | None] = ContextVar("sam_bench_memory_limits", default=None)


def current() -> MemoryLimits | None:
    """The running job's limits (``None`` outside a job)."""
    return _CURRENT.get()


@contextlib.contextmanager
def job_limits(cfg: Any) -> Iterator[MemoryLimits]:
    """Make the limits of ``cfg`` (a ``limits`` section, or a :class:`MemoryLimits`) the
    current ones and run the budget watchdog, for the duration of the block."""
    limits = cfg if isinstance(cfg, MemoryLimits) else MemoryLimits.of(cfg)
    token = _CURRENT.set(limits)
    limits.start()
    try:
        yield limits
    finally:
        limits.stop()
        _CURRENT.reset(token)


def check_budget(where: str = "prompt batch") -> None:
    """Check the running job's RSS budget (nothing outside a job or without a budget)."""
    limits = current()
    if limits is not None:
        limits.check(where)


def _floor(floor: int | None) -> int:
    if floor is not None:
        return max(1, int(floor))
    limits = current()
    return max(1, limits.oom_min_batch) if limits is not None else 1


class HalvingBatches:
    """Runs batched work with out-of-memory retries (see the module docstring).

    One object per image: once a batch had to be split, the later batches (of every
    :meth:`run` call on the object, e.g. every crop) keep the smaller size.

    Args:
        batch: the configured batch size.
        floor: the smallest size to try; ``None``: the running job's ``limits.oom_min_batch``
            (1 outside a job).
        device: where the work runs (CUDA: cached memory is returned before a retry).
        what: the batch's name in messages.
    """

    def __init__(
        self,
        batch: int,
        *,
        floor: int | None = None,
        device: torch.device | None = None,
        what: str = "prompt batch",
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch = batch
        self.size = batch
        self.floor = _floor(floor)
        self.device = device
        self.what = what

    def run(self, fn: Callable[[int, int], T], n: int) -> list[T]:
        """``fn(start, stop)`` over consecutive ranges covering ``range(n)``, ``self.size``
        items at a time; returns the results in order. A range whose call runs out of memory
        is run again in ranges of half the size (``fn`` must leave no trace of a failed
        call); the budget is checked before every call."""
        out: list[T] = []
        start = 0
        while start < n:
            stop = min(start + self.size, n)
            ok, value = self.attempt(functools.partial(fn, start, stop), stop - start)
            if ok:
                out.append(value)  # type: ignore[arg-type]
                start = stop
        return out

    def attempt(
        self, call: Callable[[], T], size: int, check: bool = True
    ) -> tuple[bool, T | None]:
        """Run ``call`` (a batch of ``size``) once: ``(True, result)``, or ``(False, None)``
        after an out-of-memory error, with :attr:`size` halved for the next try. Raises
        :class:`OutOfMemoryAtFloor` when the size was already at the floor, and any other
        error as it is. ``check``: check the budget first."""
        if check:
            check_budget(self.what)
        failed: BaseException | None = None
        try:
            return True, call()
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            if self.size <= self.floor:
                tried = str(self.batch) if self.size == self.batch else f"{self.batch}..{self.size}"
                raise OutOfMemoryAtFloor(
                    f"out of memory in a {self.what} at every size tried ({tried}; "
                    f"limits.oom_min_batch={self.floor}): {type(e).__name__}: {e}"
                ) from e
            failed = e
            e.__traceback__ = None  # its frames hold the failed batch's tensors
        # Outside the except block: the exception's traceback and the tensors its frames held
        # are gone (torch's advice for recovering from an out-of-memory error).
        smaller = max(self.floor, self.size // 2)
        limits = current()
        if limits is not None:
            limits.note_retry(size, smaller, failed, self.what)
        else:
            log.warning(
                "out of memory in a %s of %d: %s; retrying in batches of %d",
                self.what, size, failed, smaller,
            )  # fmt: skip
        del failed
        release_memory(self.device)
        self.size = smaller
        return False, None


def retry_halving(
    fn: Callable[[int, int], T],
    n: int,
    batch: int,
    *,
    floor: int | None = None,
    device: torch.device | None = None,
    what: str = "prompt batch",
) -> list[T]:
    """``fn(start, stop)`` over ``range(n)`` in batches of ``batch``, halved on out-of-memory
    errors down to ``floor`` (see :class:`HalvingBatches`); the results in order."""
    return HalvingBatches(batch, floor=floor, device=device, what=what).run(fn, n)


def retry_smaller(
    fn: Callable[[int], T],
    batch: int,
    *,
    floor: int | None = None,
    device: torch.device | None = None,
    what: str = "prompt batch",
) -> tuple[T, int]:
    """``fn(size)`` for work that takes its batch size as a setting (e.g. a whole image
    through the official generator with ``points_per_batch=size``), run again whole with half
    the size after an out-of-memory error, down to ``floor``. Returns the result and the size
    that worked. The budget is not checked here: ``fn`` checks it per batch."""
    batches = HalvingBatches(batch, floor=floor, device=device, what=what)
    while True:
        size = batches.size
        ok, value = batches.attempt(functools.partial(fn, size), size, check=False)
        if ok:
            return value, size  # type: ignore[return-value]
