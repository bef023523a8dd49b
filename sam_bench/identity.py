"""A stable identity for a configuration: ``config_id``.

``config_id`` is the first 16 hex digits of the sha256 of a canonical JSON document made of

* the task's name and the settings that change what a job measures: the task's own settings
  (:meth:`Task.identity_settings <sam_bench.tasks.base.Task.identity_settings>`: by default its
  config sections, :attr:`TaskSpec.sections`, e.g. ``amg``; a task leaves out settings that
  cannot change a result -- output options, settings of another prompt mode -- writes a
  default as the value it stands for, and names an input file by its content), ``model``
  (which architecture, build option and runtime, not where its file lies; ``model.runtime``
  only when it is not ``eager``), ``preprocess``, ``dtype``,
  ``device`` (the setting, e.g. ``auto``), ``seed``, ``warmup`` and, for tasks that use one,
  ``engine`` -- each without preset labels (``name``);
* the data, by its fingerprint (never its path);
* the weights, by their hash (a checkpoint's sha256, or the state-dict hash of random weights),
  or, for a job scoring saved predictions, the predictions file's sha256.

File paths, output folders, tracking, cache, resume, progress and sweep-preset settings never
enter it, nor do other tasks' sections: the same sweep run from another checkout or folder
gets the same ids, and adding a task's settings does not change another task's ids. The
document itself is recorded as ``config_identity`` in ``result.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sam_bench.files import sha256_file

#: Common top-level settings that change what any task measures.
COMMON_KEYS = ("dtype", "device", "seed", "warmup")
#: ``model`` keys that say where a file is or how it is obtained, not what it computes.
MODEL_LOCATION_KEYS = ("name", "checkpoint", "checkpoint_file", "url", "sha256", "weights")
#: ``model`` keys that change how long a job takes to prepare or what it records beside its
#: results, never what it computes (``model.agreement_items``, ``model.runtime_cache``).
MODEL_BOOKKEEPING_KEYS = ("agreement_items", "runtime_cache")
#: ``model.runtime`` of today's behaviour: at it, ``runtime`` and ``runtime_options`` are left
#: out, so the identity document of an eager job is the one written before runtimes existed.
EAGER_RUNTIME = "eager"
#: Keys dropped from every section (preset labels).
LABEL_KEYS = ("name",)
ID_LENGTH = 16


def _strip(section: Any, drop: tuple[str, ...]) -> Any:
    if not isinstance(section, dict):
        return section
    return {k: v for k, v in section.items() if k not in drop}


def section_settings(config: Mapping[str, Any], sections: tuple[str, ...]) -> dict[str, Any]:
    """``sections`` of ``config`` without preset labels: the default task settings of an
    identity."""
    return {s: _strip(config.get(s), LABEL_KEYS) for s in sections}


def content_digest(path: str | Path) -> str | None:
    """sha256 of an input named by path, so an identity names it by content: a file's bytes,
    or a directory's files (relative names and bytes, in sorted order); ``None`` when nothing
    is there. Files are hashed once per process (memoised on path, size and mtime)."""
    p = Path(path).expanduser()
    if p.is_file():
        return sha256_file(p)
    if not p.is_dir():
        return None
    digest = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        digest.update(f"{f.relative_to(p).as_posix()}\0{sha256_file(f)}\0".encode())
    return digest.hexdigest()


def model_identity(model: Mapping[str, Any]) -> dict[str, Any]:
    """The ``model`` section of an identity: without location and bookkeeping keys; an
    ``eager`` runtime (the default) leaves ``runtime`` and ``runtime_options`` out (its ids
    are those of jobs recorded before runtimes existed); another runtime keeps both (its
    options only when set)."""
    out = _strip(dict(model), (*MODEL_LOCATION_KEYS, *MODEL_BOOKKEEPING_KEYS))
    if out.get("runtime", EAGER_RUNTIME) == EAGER_RUNTIME:
        out.pop("runtime", None)
        out.pop("runtime_options", None)
    elif not out.get("runtime_options"):
        out.pop("runtime_options", None)
    return out


def config_identity(
    config: dict[str, Any],
    *,
    task: str,
    settings: Mapping[str, Any],
    uses_engine: bool,
    data: str | None,
    weights: str | None,
) -> dict[str, Any]:
    """The document :func:`config_id` hashes (see the module docstring).

    Args:
        config: The job's resolved config as plain containers.
        task: Task name.
        settings: The task's own settings, by section (:func:`section_settings` or the
            task's ``identity_settings``).
        uses_engine: Whether ``engine`` changes what the task measures.
        data: Dataset fingerprint.
        weights: Weights hash (or predictions sha256); ``None`` when unknown.
    """
    model = model_identity(config.get("model") or {})
    doc: dict[str, Any] = {
        "task": task,
        "model": model,
        "preprocess": _strip(config.get("preprocess") or {}, LABEL_KEYS),
        "settings": {k: config.get(k) for k in COMMON_KEYS},
        "sections": dict(settings),
        "data": data,
        "weights": weights,
    }
    if uses_engine:
        doc["settings"]["engine"] = config.get("engine")
    return doc


def config_id(identity: dict[str, Any]) -> str:
    """First :data:`ID_LENGTH` hex digits of the sha256 of ``identity`` as canonical JSON."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]
