"""Python's cyclic garbage collector over a job's long-lived heap.

A job imports torch, sam2 and MLflow (and torchvision where sam2's official predictor or
generator runs: the reference engine, the prompted task; the fast engine loads only
torchvision's NMS kernel): some 600,000 objects that live as long as the process. Each of
Python's full collections walks all of them, ~0.25 s on a 2-core CPU, and the imports
themselves trigger several (9 in a 1-image single run, 1.3 s of its time). :func:`settle`
marks everything alive as long-lived (``gc.freeze``): later full collections walk only what
was created since. What a job builds and drops keeps being collected as before (young objects
are never frozen); cyclic garbage among settled objects waits until :func:`release`, which the
job calls at its end (a job's model must not outlive it) and which collects everything, as a
full collection did before.
Heavy imports run under :func:`settling`: the collections they would trigger walk the new
modules' objects and find next to nothing.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


def settle() -> None:
    """Everything alive now is long-lived: full collections skip it until :func:`release` or
    :func:`unsettle` (``gc.freeze``; costs nothing, walks nothing)."""
    gc.freeze()


def unsettle() -> None:
    """Settled objects are ordinary again (``gc.unfreeze``: in the oldest generation, for the
    next full collection); collects nothing now."""
    gc.unfreeze()


def release() -> int:
    """Unsettle and collect every generation, settled objects included; returns the number
    of unreachable objects found (``gc.collect``)."""
    gc.unfreeze()
    return gc.collect()


@contextlib.contextmanager
def settling() -> Iterator[None]:
    """Automatic collections paused while the block runs (heavy imports, building what
    lives as long as the job), then :func:`settle`. The collector's enabled state is
    restored; cyclic garbage the block left waits for :func:`release`."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        settle()
