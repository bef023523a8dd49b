"""The saved outputs of a matched configuration, compared by output kind.

Each side's outputs are what its record declares (``result.json`` ``outputs`` of schema 3, or,
through :func:`sam_bench.layout.declared_outputs`' legacy table, the files the task of a
schema-2 record wrote) and its job folder holds. For every prediction kind
(:data:`sam_bench.layout.PREDICTION_KINDS`) both sides have, the kind's comparer
(:data:`.comparers.COMPARERS`) runs; which task wrote them does not matter.

Never a silent pass: each of these is a **problem** (the command exits 3) with a message
naming the configuration, the kind and what is missing:

* a prediction kind one side declares and the other does not;
* a declared output whose file or folder is not in the job folder;
* a declared kind this version has no comparer for (a record of a newer sam_bench);
* an unreadable output;
* items (images, frames) only one side has;
* zero items compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam_bench.compare.comparers import COMPARERS, ItemComparison, MaskFileError
from sam_bench.compare.comparers.common import count
from sam_bench.compare.jobs import Job
from sam_bench.layout import KINDS, PREDICTION_KINDS, Output, declared_outputs

#: Item ids named in one message.
MAX_NAMED = 10


@dataclass
class SideOutputs:
    """The prediction outputs of one job, by kind."""

    found: dict[str, tuple[Output, Path]] = field(default_factory=dict)
    absent: dict[str, Output] = field(default_factory=dict)
    """Declared by the record (schema 3) but not in the job folder."""
    unknown: list[str] = field(default_factory=list)
    """Declared kinds this version does not know."""


def declared_predictions(record: Mapping[str, Any]) -> tuple[list[Output], bool, list[str]]:
    """The prediction outputs ``record`` declares, whether they come from the legacy table
    (then they are what the job *may* have written), and the declared kinds this version
    does not know. A record that lists ``outputs`` (schema 3) is read as it is; records of
    schema 1 and 2 go through :func:`sam_bench.layout.declared_outputs`' legacy table."""
    listed = record.get("outputs")
    if not isinstance(listed, list):
        legacy = declared_outputs(record)
        return [o for o in legacy if o.kind in PREDICTION_KINDS], True, []
    entries: list[Output] = []
    unknown: list[str] = []
    for d in listed:
        if not isinstance(d, Mapping):
            continue
        if str(d.get("kind")) not in KINDS:
            unknown.append(f"{d.get('kind')} ({d.get('name')}: {d.get('path')})")
            continue
        entries.append(Output.from_dict(d))
    return [o for o in entries if o.kind in PREDICTION_KINDS], False, unknown


def side_outputs(job: Job) -> SideOutputs:
    """What ``job`` declares and holds (see the module docstring)."""
    entries, legacy, unknown = declared_predictions(job.record)
    out = SideOutputs(unknown=unknown)
    layout = job.layout
    for o in entries:
        if o.kind in out.found:
            continue
        path = layout.path(o) if layout is not None else None
        if path is not None and (path.is_dir() if o.is_dir else path.is_file()):
            out.found[o.kind] = (o, path)
        elif not legacy:  # the legacy table lists what a job *may* write
            out.absent[o.kind] = o
    return out


@dataclass
class KindResult:
    """One kind compared for one configuration."""

    kind: str
    comparison: ItemComparison
    baseline: Path
    current: Path


def _ids(ids: list[str]) -> str:
    more = f" (and {len(ids) - MAX_NAMED} more)" if len(ids) > MAX_NAMED else ""
    return ", ".join(ids[:MAX_NAMED]) + more


def compare_outputs(
    base: Job, cur: Job, progress: bool = False
) -> tuple[list[KindResult], list[str]]:
    """The kinds compared and the problems (see the module docstring) of one matched
    configuration, in :data:`PREDICTION_KINDS` order."""
    sides = {"baseline": (base, side_outputs(base)), "current": (cur, side_outputs(cur))}
    problems: list[str] = []
    for role, (job, found) in sides.items():
        where = f"{role} job {job.name}"
        for text in found.unknown:
            problems.append(f"{where} declares an output of kind {text}: no comparer for it")
        for kind, o in found.absent.items():
            folder = job.job_dir if job.job_dir is not None else "(no job folder)"
            problems.append(f"{kind}: {where} declares {o.path} but {folder} does not hold it")
    results: list[KindResult] = []
    fb, fc = sides["baseline"][1], sides["current"][1]
    for kind in PREDICTION_KINDS:
        if kind in fb.absent or kind in fc.absent:
            continue  # already named
        b, c = fb.found.get(kind), fc.found.get(kind)
        if b is None and c is None:
            continue
        if b is None or c is None:
            has, lacks = ("baseline", "current") if c is None else ("current", "baseline")
            job = sides[lacks][0]
            problems.append(
                f"{kind}: only the {has} saved {(b or c)[0].path} (the {lacks} job "  # type: ignore[index]
                f"{job.name} has none; run both with the same output settings, e.g. "
                "save_predictions=true)"
            )
            continue
        comparer = COMPARERS.get(kind)
        if comparer is None:
            problems.append(f"{kind}: no comparer for this output kind")
            continue
        try:
            comp = comparer.run(b[1], c[1], progress)
        except (MaskFileError, OSError) as e:
            problems.append(f"{kind}: not compared: {e}")
            continue
        only_b, only_c = comp.missing()
        for role, ids in (("baseline", only_b), ("current run", only_c)):
            if ids:
                problems.append(
                    f"{kind}: {count(len(ids), comparer.unit)} only in the {role}: {_ids(ids)}"
                )
        if comp.n_items == 0:
            problems.append(
                f"{kind}: 0 {comparer.unit} compared ({b[1]} and {c[1]} hold none in common)"
            )
        results.append(KindResult(kind, comp, b[1], c[1]))
    return results, problems


def to_dict(result: KindResult) -> dict[str, Any]:
    """One kind's comparison in ``regression.json``."""
    comparer = COMPARERS[result.kind]
    return {
        "kind": result.kind,
        "unit": comparer.unit,
        "n_items": result.comparison.n_items,
        "n_identical": result.comparison.n_identical,
        "agreement": result.comparison.agreement,
        "baseline": str(result.baseline),
        "current": str(result.current),
        **result.comparison.to_dict(),
    }
