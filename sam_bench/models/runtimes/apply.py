"""Putting a job's model on its ``model.runtime``: look the runtime up in the registry (kind
``runtime``), give it its options and cache folder, describe what it did for the record
(``task_info.runtime``, and the ``weights`` block when the runtime ran other weights), and
make the eager reference the agreement metrics compare with."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from sam_bench import registry
from sam_bench.config import ModelConfig
from sam_bench.errors import SamBenchError
from sam_bench.models.runtimes.base import BITWISE, EAGER, Prepared, Runtime, RuntimeOptions

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


def runtime_options(cfg: ModelConfig, weights_hash: str) -> RuntimeOptions:
    """What a runtime gets besides the model: the eager weights' hash, the cache folder and
    ``model.runtime_options``."""
    return RuntimeOptions(
        weights_hash=weights_hash, cache_dir=cache_dir(cfg), options=dict(cfg.runtime_options)
    )


def prepare_runtime(
    model: torch.nn.Module, cfg: ModelConfig, device: torch.device, weights_hash: str
) -> Prepared:
    """``model`` on ``cfg.runtime`` (changed in place or replaced: use the returned
    ``Prepared.model``)."""
    runtime = load_runtime(cfg.runtime)
    options = runtime_options(cfg, weights_hash)
    try:
        return runtime.prepare(model, device, options)
    except ModuleNotFoundError as e:  # a library imported lazily by the runtime
        raise SamBenchError(
            f"model.runtime={cfg.runtime} needs {e.name or 'a library'}, which is not "
            f"installed: {INSTALL_HINT}"
        ) from None


def runtime_info(name: str, prepared: Prepared | None) -> dict[str, Any]:
    """``task_info.runtime``: name, whether masks are expected identical to eager (``exact``)
    and how (``exactness``: ``bitwise``, ``float`` with its ``logit_tol``, ``approximate``:
    see ``base.py``), seconds spent preparing, the runtime's own details, and ``weights``:
    ``null`` when the runtime ran the eager build's weights, else what ran (``source``,
    ``state_dict_hash``, ``parts``: :class:`RuntimeWeights`)."""
    if prepared is None:
        return {
            "name": name, "exact": name == EAGER, "exactness": BITWISE if name == EAGER else None,
            "logit_tol": None, "prepare_s": 0.0, "details": {}, "weights": None,
        }  # fmt: skip
    return {
        "name": name,
        "exact": bool(prepared.exact),
        "exactness": prepared.exactness,
        "logit_tol": prepared.logit_tol,
        "prepare_s": float(prepared.prepare_s),
        "details": dict(prepared.details),
        "weights": asdict(prepared.weights) if prepared.weights is not None else None,
    }


def eager_reference(
    reference: torch.nn.Module,
    cfg: ModelConfig,
    weights_hash: str,
    ran: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make ``reference`` (sam2's eager build of the job's config, with the eager weights of
    hash ``weights_hash``) hold the weights the job's runtime ran, and say what it is: the
    description recorded as ``agreement.reference`` (``implementation``, ``weights``,
    ``state_dict_hash``). A runtime that runs the eager weights leaves it unchanged; one
    that may run others does it through its ``eager_reference`` method (see ``base.py``).
    ``ran``: ``task_info.runtime.weights`` of the job; when given, the reference must hold
    those very weights (their hash is checked: a hub id whose files changed between the two
    loads raises :class:`SamBenchError`)."""
    runtime = load_runtime(cfg.runtime)
    hook = getattr(runtime, "eager_reference", None)
    if hook is None:
        return {
            "implementation": "sam2 eager",
            "weights": "the eager build's (model.weights)",
            "state_dict_hash": weights_hash,
        }
    described: dict[str, Any] = hook(reference, runtime_options(cfg, weights_hash))
    expected = (ran or {}).get("state_dict_hash")
    if expected and described.get("runtime_weights_hash") != expected:
        raise SamBenchError(
            f"the eager reference does not hold the weights model.runtime={cfg.runtime} ran "
            f"({described.get('runtime_weights_hash')} != {expected})"
        )
    return described


def recorded_weights(block: dict[str, Any], runtime: dict[str, Any] | None) -> dict[str, Any]:
    """The record's ``weights`` block for a job on ``runtime`` (its ``task_info.runtime``):
    ``block`` (the eager build's weights) unchanged when the runtime ran them; else
    ``label`` / ``hash`` / ``state_dict_hash`` / ``checkpoint_path`` are the runtime's
    weights (label: their source), ``sha256`` is null, ``runtime_parts`` says which
    parts they replace, and ``eager`` keeps the eager build's block (``kind``, ``requested``
    and ``untrained`` still describe the eager build, whose other modules also ran)."""
    ran = (runtime or {}).get("weights")
    if not ran:
        return block
    return {
        **block,
        "label": ran["source"],
        "hash": ran["state_dict_hash"],
        "sha256": None,
        "state_dict_hash": ran["state_dict_hash"],
        "checkpoint_path": ran["source"],
        "runtime_parts": ran["parts"],
        "eager": dict(block),
    }
