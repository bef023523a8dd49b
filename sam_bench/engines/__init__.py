"""AMG engines: what turns an RGB image into scored masks.

``reference`` is sam2's official ``SAM2AutomaticMaskGenerator``; ``fast`` (the default) gives
the same masks from shared encoder / decoder passes (:mod:`sam_bench.engines.fast`). Every
engine fills the
``encoder`` / ``decoder`` / ``postprocess`` stages of the :class:`StageTimes` it is given and
returns :class:`MaskRecord` s, so tasks, metrics and records never depend on the engine.

The optional encoder cache (:class:`~sam_bench.engines.encoder_cache.EncoderCache`,
``cache.dir``) is used by ``fast`` only; ``reference`` runs the official generator unchanged
and ignores it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sam_bench import registry
from sam_bench.config import Config
from sam_bench.engines.base import AMGEngine, GroupEngine, MaskRecord, SingleAsGroup

if TYPE_CHECKING:  # torch comes with the engine modules (imported when an engine is built)
    import torch

    from sam_bench.engines.encoder_cache import EncoderCache
    from sam_bench.tasks.amg.settings import AMGConfig

__all__ = ["AMGEngine", "GroupEngine", "MaskRecord", "build_engine", "build_group_engine"]


def _amg(cfg: Config) -> AMGConfig:
    """The ``amg`` settings of a job (a section the amg task registers)."""
    settings: AMGConfig = getattr(cfg, "amg")  # noqa: B009
    return settings


#: The module of each engine (imported when the engine is built).
ENGINE_MODULES = {"reference": "sam_bench.engines.reference", "fast": "sam_bench.engines.fast"}


def reference_engine(
    model: torch.nn.Module, cfg: Config, device: torch.device, cache: EncoderCache | None
) -> AMGEngine:
    """``engine=reference`` (ignores the encoder cache)."""
    from sam_bench.engines.reference import ReferenceEngine

    return ReferenceEngine(model, _amg(cfg), device, dtype=cfg.dtype)


def fast_engine(
    model: torch.nn.Module, cfg: Config, device: torch.device, cache: EncoderCache | None
) -> AMGEngine:
    """``engine=fast``."""
    from sam_bench.engines.fast import FastEngine

    return FastEngine(model, _amg(cfg), device, dtype=cfg.dtype, encoder_cache=cache)


EngineFactory = Callable[
    ["torch.nn.Module", Config, "torch.device", "EncoderCache | None"], AMGEngine
]


def build_engine(
    model: torch.nn.Module,
    cfg: Config,
    device: torch.device,
    cache: EncoderCache | None = None,
) -> AMGEngine:
    """The engine named by ``cfg.engine`` (:mod:`sam_bench.registry`); ``cache``: the encoder
    cache (``None``: off)."""
    factory: EngineFactory = registry.load("engine", cfg.engine)
    return factory(model, cfg, device, cache)


def build_group_engine(
    model: torch.nn.Module,
    cfgs: list[Config],
    device: torch.device,
    cache: EncoderCache | None = None,
) -> GroupEngine:
    """An engine serving several jobs at once. Only ``fast`` shares work between jobs (they
    must share a candidate key); any engine serves a single job. ``cache``: the encoder
    cache (``None``: off)."""
    if len(cfgs) == 1:
        return SingleAsGroup(build_engine(model, cfgs[0], device, cache))
    if any(c.engine != "fast" for c in cfgs):
        raise ValueError("only engine=fast can serve several jobs at once")
    from sam_bench.engines.fast import FastAMG

    return FastAMG(model, [_amg(c) for c in cfgs], device, dtype=cfgs[0].dtype, encoder_cache=cache)
