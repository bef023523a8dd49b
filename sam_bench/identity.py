"""A stable identity for a configuration: ``config_id``.

``config_id`` is the first 16 hex digits of the sha256 of a canonical JSON document made of

* the task's name and the settings that change what a job measures: the task's own config
  sections (:attr:`TaskSpec.sections`, e.g. ``amg``), ``model`` (which architecture and build
  option, not where its file lies), ``preprocess``, ``dtype``, ``device`` (the setting, e.g.
  ``auto``), ``seed``, ``warmup`` and, for tasks that use one, ``engine`` -- each without preset
  labels (``name``);
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
from typing import Any

#: Common top-level settings that change what any task measures.
COMMON_KEYS = ("dtype", "device", "seed", "warmup")
#: ``model`` keys that say where a file is or how it is obtained, not what it computes.
MODEL_LOCATION_KEYS = ("name", "checkpoint", "checkpoint_file", "url", "sha256", "weights")
#: Keys dropped from every section (preset labels).
LABEL_KEYS = ("name",)
ID_LENGTH = 16


def _strip(section: Any, drop: tuple[str, ...]) -> Any:
    if not isinstance(section, dict):
        return section
    return {k: v for k, v in section.items() if k not in drop}


def config_identity(
    config: dict[str, Any],
    *,
    task: str,
    sections: tuple[str, ...],
    uses_engine: bool,
    data: str | None,
    weights: str | None,
) -> dict[str, Any]:
    """The document :func:`config_id` hashes (see the module docstring).

    Args:
        config: The job's resolved config as plain containers.
        task: Task name.
        sections: The task's own config sections.
        uses_engine: Whether ``engine`` changes what the task measures.
        data: Dataset fingerprint.
        weights: Weights hash (or predictions sha256); ``None`` when unknown.
    """
    model = _strip(config.get("model") or {}, MODEL_LOCATION_KEYS)
    doc: dict[str, Any] = {
        "task": task,
        "model": model,
        "preprocess": _strip(config.get("preprocess") or {}, LABEL_KEYS),
        "settings": {k: config.get(k) for k in COMMON_KEYS},
        "sections": {s: _strip(config.get(s), LABEL_KEYS) for s in sections},
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
