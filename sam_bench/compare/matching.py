"""Pair the configurations of two sides: by ``config_id``, then by resolved settings.

Three passes, each on the jobs the previous ones left:

1. ``config_id`` -- the same task settings, model, preprocessing, dtype, device setting, seed,
   engine, data and weights (:mod:`sam_bench.identity`). With ``--across`` the named parts are
   left out of the identity first (``--across dtype`` pairs an fp32 job with its bf16 twin).
2. **settings** -- the recorded identity document without data, weights and engine: pairs a
   job with its counterpart run on other data or weights (the fairness check then reports
   that difference and stops) or with another engine (context: comparing engines is a main
   use). A failed job's identity is the one its record holds (the runner records it with the
   task's own rule once the task is known); a record without one gets the generic rule (the
   task's settings sections as they are) from its resolved config.
3. **overrides** -- the job's command-line overrides (keys that never change what is measured,
   such as ``tracking.*`` or ``progress``, left out): for ``summary.csv`` rows of jobs that
   failed before their ``config_id`` was known.

Job numbers are never used. Several jobs with the same key on one side are paired in job
order, and the pairing is reported as ambiguous.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from sam_bench.compare.jobs import CompareError, Job
from sam_bench.identity import config_id, config_identity, section_settings

#: ``--across`` names and the identity paths they stand for.
ACROSS_ALIASES = {
    "dataset": "data",
    "data": "data",
    "weights": "weights",
    "model": "model",
    "preprocess": "preprocess",
    "dtype": "settings.dtype",
    "device": "settings.device",
    "engine": "settings.engine",
    "seed": "settings.seed",
    "warmup": "settings.warmup",
}
#: Identity parts the settings pass ignores.
LOOSE_PATHS = ("data", "weights", "settings.engine")
#: Override keys (prefixes) that never change what a job measures.
NON_IDENTITY_OVERRIDES = (
    "hydra", "tracking", "progress", "cache", "dry_run", "save_predictions", "objective",
    "sweep_name", "task.save_masks", "resume",
)  # fmt: skip


@dataclass
class Pair:
    """A configuration measured on both sides."""

    base: Job
    cur: Job
    matched_by: str
    """``config_id``, ``settings`` or ``overrides``."""
    differs: list[str] = field(default_factory=list)
    """Identity parts that differ between the two (``data``, ``settings.engine``...)."""
    ambiguous: bool = False


@dataclass
class Matching:
    pairs: list[Pair]
    baseline_only: list[Job]
    current_only: list[Job]
    notes: list[str] = field(default_factory=list)


def identity_of(job: Job) -> dict[str, Any] | None:
    """The job's identity document: recorded, or computed from its resolved config with the
    generic rule (:func:`~sam_bench.identity.section_settings` of the task's sections) when
    the record has none (``None`` when neither is possible). Reads the record only: no task
    code is imported."""
    rec = job.record
    doc = rec.get("config_identity")
    if isinstance(doc, dict) and doc:
        return doc
    spec = rec.get("task_spec")
    config = rec.get("config")
    task = rec.get("task")
    if not (isinstance(spec, dict) and spec and isinstance(config, dict) and task):
        return None
    data = (rec.get("dataset") or {}).get("fingerprint")
    weights = (rec.get("weights") or {}).get("hash")
    return config_identity(
        config,
        task=str(task),
        settings=section_settings(config, tuple(spec.get("sections") or ())),
        uses_engine=bool(spec.get("uses_engine")) and not config.get("predictions"),
        data=data,
        weights=weights,
    )


def resolve_across(names: list[str], docs: list[dict[str, Any]]) -> list[str]:
    """Identity paths of the ``--across`` names (aliases or dotted settings such as
    ``amg.points_per_batch``); :class:`CompareError` for a name no identity has."""
    out = []
    for name in names:
        name = name.strip()
        path = ACROSS_ALIASES.get(name)
        if path is None:
            head = name.split(".")[0]
            if any(head in (d.get("sections") or {}) for d in docs):
                path = f"sections.{name}"
            elif any(_has(d, name) for d in docs):
                path = name
        if path is None or (docs and not any(_has(d, path) for d in docs)):
            known = ", ".join(sorted(set(ACROSS_ALIASES) - {"data"}))
            raise CompareError(
                f"--across {name!r}: not part of any configuration's identity (one of {known}, "
                "or a task setting such as amg.points_per_batch)"
            )
        out.append(path)
    return out


def _has(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def without(doc: dict[str, Any], paths: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """A copy of ``doc`` without the dotted ``paths``."""
    out = copy.deepcopy(doc)
    for path in paths:
        *parents, last = path.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


def differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths whose values differ between two identity documents."""
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(differences(va, vb, path + "."))
        elif json.dumps(va, sort_keys=True, default=str) != json.dumps(
            vb, sort_keys=True, default=str
        ):
            out.append(path)
    return out


def overrides_key(job: Job, across: list[str]) -> str | None:
    """The job's overrides that identify it (sorted), or ``None`` without overrides."""
    keep = []
    for item in job.overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key.startswith(NON_IDENTITY_OVERRIDES):
            continue
        if any(key == a or key == a.removeprefix("sections.") for a in across):
            continue
        keep.append(item.lstrip("+~"))
    return " ".join(sorted(keep)) if keep else None


def match(baseline: list[Job], current: list[Job], across: list[str] | None = None) -> Matching:
    """Pair ``baseline`` and ``current`` jobs (see the module docstring). ``across``: identity
    paths (:func:`resolve_across`) left out of every key."""
    across = list(across or [])
    ids = {id(j): identity_of(j) for j in [*baseline, *current]}

    def exact(job: Job) -> str | None:
        doc = ids[id(job)]
        if across and doc is not None:
            return config_id(without(doc, across))
        return job.config_id

    def loose(job: Job) -> str | None:
        doc = ids[id(job)]
        return None if doc is None else config_id(without(doc, [*across, *LOOSE_PATHS]))

    pairs: list[Pair] = []
    notes: list[str] = []
    base_left, cur_left = list(baseline), list(current)
    passes = (
        ("config_id", exact),
        ("settings", loose),
        ("overrides", lambda j: overrides_key(j, across)),
    )
    for name, key in passes:
        found, base_left, cur_left = _pair(base_left, cur_left, key, name)
        for p in found:
            da, db = ids[id(p.base)], ids[id(p.cur)]
            if da is not None and db is not None:
                p.differs = differences(da, db)
            if p.ambiguous:
                notes.append(
                    f"several jobs share the key of baseline job {p.base.name} / current job "
                    f"{p.cur.name} ({name}): paired in job order"
                )
        pairs.extend(found)
    return Matching(pairs, base_left, cur_left, notes)


def _pair(
    base: list[Job], cur: list[Job], key: Any, how: str
) -> tuple[list[Pair], list[Job], list[Job]]:
    groups_b: dict[str, list[Job]] = {}
    groups_c: dict[str, list[Job]] = {}
    for jobs, groups in ((base, groups_b), (cur, groups_c)):
        for j in jobs:
            k = key(j)
            if k is not None:
                groups.setdefault(k, []).append(j)
    pairs = []
    used: set[int] = set()
    for k, bs in groups_b.items():
        cs = groups_c.get(k, [])
        ambiguous = len(bs) > 1 or len(cs) > 1
        for b, c in zip(bs, cs, strict=False):
            pairs.append(Pair(b, c, how, ambiguous=ambiguous))
            used.update((id(b), id(c)))
    return (
        pairs,
        [j for j in base if id(j) not in used],
        [j for j in cur if id(j) not in used],
    )


def closest_pair(
    baseline: list[Job], current: list[Job], limit: int = 2500
) -> tuple[Job, Job, list[str]] | None:
    """The baseline / current jobs whose identities differ in the fewest parts (data and
    weights left aside when other parts differ too), with those parts; ``None`` without
    identities. At most ``limit`` pairs are examined."""
    docs_b = [(j, d) for j in baseline if (d := identity_of(j)) is not None]
    docs_c = [(j, d) for j in current if (d := identity_of(j)) is not None]
    best: tuple[Job, Job, list[str]] | None = None
    for n, ((jb, db), (jc, dc)) in enumerate((b, c) for b in docs_b for c in docs_c):
        if n >= limit:
            break
        parts = differences(db, dc)
        if best is None or len(parts) < len(best[2]):
            best = (jb, jc, parts)
    return best
