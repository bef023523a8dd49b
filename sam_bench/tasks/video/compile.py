"""``video.vos_optimized``: keeping ``torch.compile`` out of the timed frames.

``SAM2VideoPredictorVOS`` compiles its modules lazily: the image encoder, prompt encoder and
mask decoder on their first call, the memory encoder on the first memory, and the memory
attention (``dynamic=True``) as the number of memories and object pointers grows -- shapes
keep changing until the memory bank (``num_maskmem`` frames) and the object-pointer window
(``max_obj_ptrs_in_encoder`` frames) are full. So:

* the untimed warm-up propagates :func:`warmup_frames` frames (at least enough to fill both,
  and ``video.warmup_frames``), where the compilation happens;
* a compilation that still happens in a timed sequence (a new object count, a shape the
  warm-up did not see) is measured by :class:`CompileWatch` and recorded apart
  (``compile_ms`` / ``n_compiles`` per sequence, ``timed_compile_s`` per job): its seconds are
  taken out of the stage they fell in, and a frame during which it happened is left out of
  ``fps`` and ``frame_latency_ms_*``.

The seconds are torch's own account of whole-frame compilation (dynamo's
``_compile.compile_inner`` timer, which holds the backend's compile and autotuning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: dynamo's timer of one whole frame compilation (``torch._dynamo.utils``).
COMPILE_TIMER = "_compile.compile_inner"
#: sam2 1.1.0's defaults, used when the model does not say.
NUM_MASKMEM = 7
MAX_OBJ_PTRS = 16


def compile_totals() -> tuple[int, float]:
    """(compilations, seconds) torch has recorded in this process so far."""
    from torch._dynamo.utils import compilation_time_metrics

    times = compilation_time_metrics.get(COMPILE_TIMER, [])
    return len(times), float(sum(times))


def warmup_frames(configured: int, vos_optimized: bool, model: object) -> int:
    """Frames of the untimed warm-up propagation: ``configured`` (``video.warmup_frames``), and
    with ``vos_optimized`` enough frames after the prompt frame to fill the memory bank and the
    object-pointer window, so the shapes the timed frames see have been compiled."""
    if not vos_optimized:
        return configured
    maskmem = int(getattr(model, "num_maskmem", NUM_MASKMEM))
    ptrs = int(getattr(model, "max_obj_ptrs_in_encoder", MAX_OBJ_PTRS))
    return max(configured, maskmem + 1, ptrs + 1)


@dataclass
class CompileWatch:
    """Compilations since the last :meth:`take` (``totals`` reads torch's; a recorded
    sequence in tests)."""

    totals: Callable[[], tuple[int, float]] = compile_totals
    count: int = 0
    """Compilations seen in all."""
    seconds: float = 0.0
    """Their seconds in all."""
    _last: tuple[int, float] = field(default=(0, 0.0), init=False)

    def __post_init__(self) -> None:
        self._last = self.totals()

    def take(self) -> tuple[int, float]:
        """(compilations, seconds) since the last call (or the watch's start)."""
        now = self.totals()
        n, s = now[0] - self._last[0], max(now[1] - self._last[1], 0.0)
        self._last = now
        self.count += n
        self.seconds += s
        return n, s

    def split(self, elapsed: float) -> tuple[float, bool]:
        """``elapsed`` wall seconds of a stage or frame without the compilation that happened
        in them, and whether one happened."""
        n, s = self.take()
        return max(elapsed - s, 0.0), n > 0
