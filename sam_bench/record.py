"""Result records: ``result.json`` and ``per_image.csv`` of one job, written atomically.

``result.json`` layout (``schema_version`` 3)::

    schema_version  int
    status          "ok" | "partial" (some items failed) | "failed"
    error           str | null          why the job failed
    task            the task name ("amg", ...)
    task_spec       the task's declaration: metrics, headline, objective, pareto [x, y],
                    stages, needs, sections (see sam_bench.tasks.base.TaskSpec)
    config_id       16 hex digits identifying the configuration (see sam_bench.identity)
    config_identity the document config_id hashes
    job             {num, dir, started, finished, duration_s}
    overrides       Hydra's list of "key=value" strings for this job
    config          the resolved config
    environment     versions, device, CPU model, threads, dtype, CUDA extension, git commit
    weights         {kind, label, hash, sha256, state_dict_hash, requested, checkpoint_path,
                    fallback_reason}; kind "predictions" when saved predictions were scored
    untrained       true when the weights are random (accuracy figures are meaningless)
    banner          the untrained-model warning, or null
    dataset         {name, format, n_images (items), fingerprint, warnings}
    task_info       task-specific facts (AMG: engine, cc_impl, points per image,
                    encoder_cache {dir, max_gb, hits, misses, writes, evictions, errors} or
                    null) and the runner's: warmup {item, failed, seconds}, grouped_with_jobs,
                    input_warnings [{warning, count, examples}], resume {reused_images,
                    computed_images}, memory {oom_retries, ..., items_not_run}, stopped (why
                    a memory budget stopped the job), scored_from (predictions=PATH),
                    objective (why the objective has its value)
    metrics         aggregate metrics (catalogue names)
    metric_info     the catalogue entry of every metric (sam_bench.metrics.catalogue)
    figures         [{path, caption}]: figures the task drew for this job (paths relative to
                    the job directory); the sweep report shows them
    item_errors     [{image_id, path, error}]
    outputs         [{name, kind, path, description, when}]: the files the job wrote, each
                    with its kind (sam_bench.layout); task_spec.outputs lists every file the
                    task may write
    item_files      {item id: file stem} for the items whose per-item files are not named by
                    the id as it is (sam_bench.layout.item_stem)

Version 1 records (``image_errors``, no catalogue snapshot) and version 2 records (no
``outputs``: :func:`sam_bench.layout.declared_outputs` knows what they wrote) are still read.

Readers (summary, plots, reports) use these files only, never model code.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sam_bench import SCHEMA_VERSION
from sam_bench.layout import RESULT_FILE

_UMASK = os.umask(0)
os.umask(_UMASK)


def _jsonable(value: Any) -> Any:
    """NaN/inf become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("ascii")
    return value


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; records are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Strict JSON (NaN written as null), indented, atomically."""
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def new_record() -> dict[str, Any]:
    """An empty result record with every top-level key present."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "error": None,
        "task": None,
        "task_spec": {},
        "config_id": None,
        "config_identity": {},
        "job": {},
        "overrides": [],
        "config": {},
        "environment": {},
        "weights": {},
        "untrained": None,
        "banner": None,
        "dataset": {},
        "task_info": {},
        "metrics": {},
        "metric_info": {},
        "figures": [],
        "item_errors": [],
        "outputs": [],
        "item_files": {},
    }


def write_rows_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Rows as CSV (columns in first-seen order; NaN and None as empty cells), atomically."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)

    def cell(v: Any) -> Any:
        v = _jsonable(v)
        if isinstance(v, list | dict):
            return json.dumps(v)
        return "" if v is None else v

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON file holding an object; ``None`` when it is missing, unreadable, not JSON or not
    an object (a record being looked for, not one that must exist)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_record(job_dir: Path) -> dict[str, Any]:
    """Load a job's ``result.json``."""
    return json.loads((job_dir / RESULT_FILE).read_text(encoding="utf-8"))
