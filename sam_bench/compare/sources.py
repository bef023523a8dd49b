"""One side of a comparison: the jobs of a sweep directory, a ``summary.csv`` or an MLflow run.

* **sweep directory**: every ``<job>/result.json`` (a single run's output folder, holding
  ``result.json`` itself, is one job). Without job records, its ``summary.csv`` is read.
* **summary.csv**: metrics, status and identity come from the file; the job folders beside
  it (``<folder of the csv>/<job>/``), when present, add ``per_image.csv`` (timing is judged
  from it), declared outputs and the record's catalogue entries and environment.
* **MLflow**: ``runs:/<run id>`` or a bare run id (32 hex digits), in ``--tracking-uri`` (else
  ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory). A sweep's
  parent run stands for its child runs; each child's ``result.json`` and ``per_image.csv``
  artifacts, and its declared prediction outputs where the job logged them
  (``save_predictions=true``), are downloaded (:mod:`.mlflow_source`).

Anything that makes a side unreadable raises :class:`CompareError` (exit status 2) with a
message naming the path and the reason.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from sam_bench.compare.jobs import CompareError, Job, Side, parse_bool, read_json
from sam_bench.layout import RESULT_FILE, SUMMARY_FILE
from sam_bench.report.summary import find_records, override_dict

#: ``summary.csv`` columns that are not metrics (besides the override columns).
SUMMARY_BOOKKEEPING = (
    "job", "overrides", "config_id", "task", "model", "weights", "weights_hash",
    "dataset_fingerprint", "untrained", "device", "dtype", "engine", "status", "error",
    "job_dir",
)  # fmt: skip
SUMMARY_REQUIRED = ("config_id", "status")
RUN_ID = re.compile(r"[0-9a-f]{32}")


# --------------------------------------------------------------------------------------------
# entry point


def load_side(
    spec: str,
    role: str,
    *,
    tracking_uri: str | None = None,
    scratch: Path | None = None,
    progress: bool = False,
) -> Side:
    """Read ``spec`` (see the module docstring). ``scratch``: a folder for downloaded MLflow
    artifacts (required for MLflow sides)."""
    text = str(spec).strip()
    if not text:
        raise CompareError(f"{role}: empty argument")
    if text.startswith("runs:/"):
        run_id = text[len("runs:/") :].strip("/").split("/")[0]
        if not run_id:
            raise CompareError(f"{role} {text!r}: no run id after runs:/")
        return _mlflow(run_id, role, text, tracking_uri, scratch, progress)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_dir(path, role, text)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return load_summary(path, role, text)
        if path.name == RESULT_FILE:
            return load_dir(path.parent, role, text)
        raise CompareError(
            f"{role} {text!r} is a file but neither a summary.csv nor a result.json (expected "
            "a sweep directory, a summary.csv, runs:/<run id> or an MLflow run id)"
        )
    if RUN_ID.fullmatch(text):
        return _mlflow(text, role, text, tracking_uri, scratch, progress)
    raise CompareError(
        f"{role} {text!r}: no such file or directory (expected a sweep directory, a "
        "summary.csv, runs:/<run id> or an MLflow run id)"
    )


def _mlflow(*args: Any) -> Side:
    from sam_bench.compare.mlflow_source import load_mlflow  # mlflow: only when asked for

    return load_mlflow(*args)


# --------------------------------------------------------------------------------------------
# sweep directories


def load_dir(folder: Path, role: str, spec: str) -> Side:
    """A sweep directory (or a single run's folder)."""
    notes: list[str] = []
    dirs = [folder] if (folder / RESULT_FILE).is_file() else find_records(folder)
    if not dirs:
        summary = folder / SUMMARY_FILE
        if summary.is_file():
            side = load_summary(summary, role, spec)
            side.notes.insert(0, f"no job records in {folder}: read {summary}")
            return side
        raise CompareError(
            f"{role} {spec!r}: no job record ({folder}/<job>/{RESULT_FILE}) and no "
            f"{SUMMARY_FILE} in {folder}"
        )
    jobs = []
    for job_dir in dirs:
        try:
            record = read_json(job_dir / RESULT_FILE)
        except (OSError, ValueError) as e:
            notes.append(f"{job_dir / RESULT_FILE} is unreadable ({e}): counted as a failed job")
            record = {"status": "failed", "error": f"unreadable {RESULT_FILE}: {e}"}
        jobs.append(Job(record, job_dir.name, job_dir, "record"))
    warnings = _summary_disagreements(folder, jobs)
    return Side(role, spec, "sweep_dir", str(folder.resolve()), jobs, notes, warnings, folder)


def _summary_disagreements(folder: Path, jobs: list[Job]) -> list[str]:
    """A note when the folder's ``summary.csv`` holds other metric values than the records
    (someone edited one of them): the records are used."""
    path = folder / SUMMARY_FILE
    if not path.is_file():
        return []
    try:
        rows = _parse_summary(path)
    except CompareError:
        return [f"{path} is unreadable; the job records were used"]
    by_job = {j.name: j for j in jobs}
    diffs = []
    for row in rows:
        job = by_job.get(row.get("job", ""))
        if job is None:
            continue
        for name, value in _summary_metrics(row, path, 0).items():
            rec = job.metrics.get(name)
            if not _same_number(value, rec):
                diffs.append(f"job {job.name} {name}: summary.csv {value} vs result.json {rec}")
    if not diffs:
        return []
    more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
    return [
        f"{path} disagrees with the job records ({'; '.join(diffs[:3])}{more}): the records "
        f"were used; pass {path} itself to compare its values"
    ]


def _same_number(a: Any, b: Any) -> bool:
    fa, fb = _num(a), _num(b)
    if fa is None or fb is None:
        return fa is None and fb is None
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-12)


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# summary.csv


def _parse_summary(path: Path) -> list[dict[str, str]]:
    """Rows of a ``summary.csv``, checked for shape (clear errors for malformed files)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CompareError(f"{path}: not a text CSV file ({e})") from None
    except OSError as e:
        raise CompareError(f"{path}: cannot read it ({e})") from None
    if not text.strip():
        raise CompareError(f"{path}: the file is empty")
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise CompareError(f"{path}: malformed CSV ({e})") from None
    header, body = table[0], [r for r in table[1:] if r]
    missing = [c for c in SUMMARY_REQUIRED if c not in header]
    if missing:
        raise CompareError(
            f"{path}: malformed summary: no column {', '.join(missing)} (a sam_bench "
            f"summary.csv has them; columns found: {', '.join(header[:8]) or 'none'})"
        )
    if len(set(header)) != len(header):
        raise CompareError(f"{path}: malformed summary: repeated column names")
    rows = []
    for i, cells in enumerate(body, start=2):
        if len(cells) != len(header):
            raise CompareError(
                f"{path}: malformed CSV: line {i} has {len(cells)} fields, the header has "
                f"{len(header)}"
            )
        rows.append(dict(zip(header, cells, strict=True)))
    if not rows:
        raise CompareError(f"{path}: no job rows")
    return rows


def _summary_metrics(row: dict[str, str], path: Path, line: int) -> dict[str, float | None]:
    skip = set(SUMMARY_BOOKKEEPING) | set(override_dict(row.get("overrides", "").split()))
    out: dict[str, float | None] = {}
    for col, value in row.items():
        if col in skip:
            continue
        text = value.strip()
        if text == "" or text.lower() in ("nan", "none", "null"):
            out[col] = None
            continue
        try:
            out[col] = float(text)
        except ValueError:
            where = f"line {line}, " if line else ""
            raise CompareError(
                f"{path}: malformed summary: {where}column {col!r}: {value!r} is not a number"
            ) from None
    return out


def _summary_record(row: dict[str, str], metrics: dict[str, float | None]) -> dict[str, Any]:
    weights = row.get("weights") or None
    kind = None
    if weights == "random":
        kind = "random"
    elif weights and weights.startswith("predictions:"):
        kind = "predictions"
    elif weights:
        kind = "checkpoint"
    return {
        "status": row.get("status") or "unknown",
        "error": row.get("error") or None,
        "task": row.get("task") or None,
        "config_id": row.get("config_id") or None,
        "overrides": row.get("overrides", "").split(),
        "metrics": metrics,
        "weights": {"label": weights, "hash": row.get("weights_hash") or None, "kind": kind},
        "dataset": {"fingerprint": row.get("dataset_fingerprint") or None},
        "environment": {"device": row.get("device") or None, "dtype": row.get("dtype") or None},
        "config": {
            "model": {"name": row.get("model") or None},
            "engine": row.get("engine") or None,
            "dtype": row.get("dtype") or None,
        },
        "untrained": parse_bool(row.get("untrained", "")),
    }


def load_summary(path: Path, role: str, spec: str) -> Side:
    """A ``summary.csv``: metrics from the file; per-image rows, predictions, catalogue entries
    and environment from the job folders beside it when present."""
    rows = _parse_summary(path)
    jobs = []
    beside = 0
    for line, row in enumerate(rows, start=2):
        metrics = _summary_metrics(row, path, line)
        record = _summary_record(row, metrics)
        name = row.get("job") or f"row {line}"
        job_dir = path.parent / row["job"] if row.get("job") else None
        if job_dir is not None and not job_dir.is_dir():
            job_dir = None
        if job_dir is not None:
            beside += 1
            try:
                full = read_json(job_dir / RESULT_FILE)
            except (OSError, ValueError):
                full = None
            if full is not None:  # the file's values win; the record adds what it lacks
                full.update({k: record[k] for k in ("metrics", "status", "error", "config_id")})
                record = full
        jobs.append(Job(record, name, job_dir, "summary"))
    notes = [f"metrics read from {path}"]
    if beside < len(jobs):
        notes.append(
            f"{len(jobs) - beside} of {len(jobs)} jobs have no folder beside {path.name}: "
            "their timing is not judged (no per-image figures)"
        )
    return Side(role, spec, "summary_csv", str(path.resolve()), jobs, notes, [], path.parent)
