"""Putting a job's model on its ``model.runtime``: look the runtime up in the registry (kind
``runtime``), give it its options and cache folder, and describe what it did for the record
(``task_info.runtime``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sam_bench import registry
from sam_bench.config import ModelConfig
from sam_bench.errors import SamBenchError
from sam_bench.models.runtimes.base import EAGER, Prepared, Runtime, RuntimeOptions

#: What a runtime whose library is missing asks the user to install.
INSTALL_HINT = "pip install sam_bench[runtimes]"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sam_bench/runtimes`` (``~/.cache/sam_bench/runtimes``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "sam_bench" / "runtimes"


def cache_dir(cfg: ModelConfig) -> Path:
    """``model.runtime_cache`` (user paths expanded), or :func:`default_cache_dir`."""
    return Path(cfg.runtime_cache).expanduser() if cfg.runtime_cache else default_cache_dir()


def load_runtime(name: str) -> Runtime:
    """The runtime registered as ``name``, instantiated. A library the runtime needs that is
    not installed is one line naming :data:`INSTALL_HINT`."""
    try:
        factory = registry.load("runtime", name)
    except ModuleNotFoundError as e:
        target = registry.target("runtime", name)
        module = target.partition(":")[0]
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise SamBenchError(
                f"model.runtime={name}: its module is not part of this installation "
                f"({e.name}; registered as {target})"
            ) from None
        raise SamBenchError(
            f"model.runtime={name} needs {e.name or 'a library'}, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    runtime: Runtime = factory()
    return runtime


def prepare_runtime(
    model: torch.nn.Module, cfg: ModelConfig, device: torch.device, weights_hash: str
) -> Prepared:
    """``model`` on ``cfg.runtime`` (changed in place or replaced: use the returned
    ``Prepared.model``)."""
    runtime = load_runtime(cfg.runtime)
    options = RuntimeOptions(
        weights_hash=weights_hash, cache_dir=cache_dir(cfg), options=dict(cfg.runtime_options)
    )
    try:
        return runtime.prepare(model, device, options)
    except ModuleNotFoundError as e:  # a library imported lazily by the runtime
        raise SamBenchError(
            f"model.runtime={cfg.runtime} needs {e.name or 'a library'}, which is not "
            f"installed: {INSTALL_HINT}"
        ) from None


def runtime_info(name: str, prepared: Prepared | None) -> dict[str, Any]:
    """``task_info.runtime``: name, whether masks are expected identical to eager, seconds
    spent preparing, and the runtime's own details."""
    if prepared is None:
        return {"name": name, "exact": name == EAGER, "prepare_s": 0.0, "details": {}}
    return {
        "name": name,
        "exact": bool(prepared.exact),
        "prepare_s": float(prepared.prepare_s),
        "details": dict(prepared.details),
    }
