"""AMG engines: what turns an RGB image into scored masks.

``reference`` is sam2's official ``SAM2AutomaticMaskGenerator``. Every engine fills the
``encoder`` / ``decoder`` / ``postprocess`` stages of the :class:`StageTimes` it is given and
returns :class:`MaskRecord` s, so tasks, metrics and records never depend on the engine.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch

from sam_bench.config import Config
from sam_bench.engines.base import AMGEngine, MaskRecord
from sam_bench.errors import ConfigError

__all__ = ["AMGEngine", "MaskRecord", "build_engine"]


def _reference(model: torch.nn.Module, cfg: Config, device: torch.device) -> AMGEngine:
    from sam_bench.engines.reference import ReferenceEngine

    return ReferenceEngine(model, cfg.amg, device, dtype=cfg.dtype)


ENGINES: dict[str, Callable[[torch.nn.Module, Config, torch.device], AMGEngine]] = {
    "reference": _reference,
}


def build_engine(model: torch.nn.Module, cfg: Config, device: torch.device) -> AMGEngine:
    """The engine named by ``cfg.engine``."""
    try:
        factory = ENGINES[cfg.engine]
    except KeyError:
        close = difflib.get_close_matches(cfg.engine, ENGINES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError("engine", f"unknown engine {cfg.engine!r}{hint}") from None
    return factory(model, cfg, device)
