"""Work that survives a kill: a job's append-only per-item log, and reusing finished work
(``resume=true``).

**Per-item log.** While a job runs, every finished item is appended to
``<job dir>/.items.jsonl`` (:class:`ItemLog`): its per-image row and, for tasks that can
encode their predictions (:meth:`sam_bench.tasks.base.Task.encode`), the prediction. A kill
loses at most the items in flight. When the job's record is written the log is removed.

**Resume.** With ``resume=true`` a job first looks at its own directory:

* a ``result.json`` of a finished configuration (status ``ok`` or ``partial``) with the same
  identity -- the ``config_identity`` of :mod:`sam_bench.identity` without the weights hash,
  the same weights request (``random`` with the same seed, or a checkpoint with the same
  sha256) -- is reused as it is (:func:`finished_record`); a failed job runs again;
* otherwise a per-item log with the same identity gives back its items: items that finished
  (or failed for a data reason, which would fail again) are reused, the others computed
  (:func:`open_item_log`). ``task_info.resume`` records how many of each.

Identity is never a file path: a job is matched by what it measures, and the dataset by its
fingerprint.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam_bench.layout import JOURNAL_FILE, RESULT_FILE
from sam_bench.record import read_json_object

log = logging.getLogger(__name__)

ITEM_LOG = JOURNAL_FILE
#: Statuses of a record whose configuration counts as finished.
FINISHED = ("ok", "partial")


def comparable(identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """An identity without the weights hash (known only once the model is built)."""
    if not isinstance(identity, dict):
        return None
    return {k: v for k, v in identity.items() if k != "weights"}


def weights_request(config: dict[str, Any]) -> dict[str, Any]:
    """What decides the weights before they are loaded: ``model.weights`` and the seed (random
    weights are deterministic from it), or the checkpoint named."""
    model = config.get("model") or {}
    return {
        "weights": model.get("weights"),
        "checkpoint": model.get("checkpoint"),
        "seed": config.get("seed"),
        "predictions": config.get("predictions"),
    }


def finished_record(
    job_dir: Path, identity: dict[str, Any], config: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The job directory's record if it is a finished run of the same configuration, and why
    (or why not)."""
    record = read_json_object(Path(job_dir) / RESULT_FILE)
    if record is None:
        return None, "no record"
    if record.get("status") not in FINISHED:
        return None, f"the earlier run ended {record.get('status')}"
    if comparable(record.get("config_identity")) != comparable(identity):
        return None, "the earlier run measured another configuration"
    if weights_request(record.get("config") or {}) != weights_request(config):
        return None, "the earlier run asked for other weights"
    return record, "finished earlier"


def conflict(job_dir: Path, identity: dict[str, Any], config: dict[str, Any]) -> str | None:
    """Why ``resume=true`` must not run this job in ``job_dir``: the folder holds the finished
    record of another configuration (rewriting it would lose that result); ``None`` when it
    holds none, a failed one, or one of this configuration."""
    record = read_json_object(Path(job_dir) / RESULT_FILE)
    if record is None or record.get("status") not in FINISHED:
        return None
    earlier, now = comparable(record.get("config_identity")), comparable(identity)
    if earlier == now and weights_request(record.get("config") or {}) == weights_request(config):
        return None
    differ = sorted(_differences(earlier or {}, now or {}))
    if weights_request(record.get("config") or {}) != weights_request(config):
        differ.append("model weights")
    return (
        f"resume=true: {job_dir} holds the finished record of another configuration "
        f"(config_id {record.get('config_id')}; differs in {', '.join(differ) or 'identity'}); "
        "it is kept as it is. Resume with the overrides of that sweep, or start a fresh sweep "
        "with another hydra.sweep.dir"
    )


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two identity documents."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted({*a, *b}, key=str):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def planned_overrides(task_overrides: list[str]) -> list[list[str]] | None:
    """The overrides of each job Hydra's basic sweeper makes of ``task_overrides`` (job
    ``i`` is item ``i``); ``None`` when they cannot be known before the sweep (a sweep the
    parser cannot expand, e.g. Optuna's ranges)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(task_overrides)
        batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except Exception:
        return None
    return [list(job) for batch in batches for job in batch]


def recorded_overrides(job_dir: Path) -> list[str] | None:
    """The overrides a job folder's record (or Hydra's ``overrides.yaml``) holds."""
    record = read_json_object(Path(job_dir) / RESULT_FILE)
    if record is not None and isinstance(record.get("overrides"), list):
        return [str(o) for o in record["overrides"]]
    try:
        import yaml

        found = yaml.safe_load((Path(job_dir) / ".hydra" / "overrides.yaml").read_text())
    except Exception:
        return None
    return [str(o) for o in found] if isinstance(found, list) else None


#: Settings that say how a job runs, never what it measures (none enters ``config_id``): a
#: sweep may be resumed with other values of them (``limits.max_rss_gb=null`` after a budget
#: stop, ``progress=false``...).
RUN_ONLY = ("resume", "progress", "limits", "tracking", "cache", "objective", "dry_run", "plugins")


def _measured(overrides: list[str]) -> set[str]:
    """The overrides that may change what a job measures (not :data:`RUN_ONLY`)."""
    return {
        o for o in overrides
        if o.split("=", 1)[0].lstrip("+~").split(".")[0] not in RUN_ONLY
    }  # fmt: skip


def mismatched_jobs(sweep_dir: Path, task_overrides: list[str]) -> list[str]:
    """``resume=true`` in a folder whose jobs were other configurations: one line per job
    folder (``<sweep>/<num>``) whose recorded overrides differ from those the sweep now gives
    job ``num``, naming the settings that differ (settings of :data:`RUN_ONLY` may differ).
    Empty when every job matches (or the jobs cannot be known before the sweep: each job then
    checks its own folder, :func:`conflict`)."""
    planned = planned_overrides(without_resume(task_overrides))
    if planned is None:
        return []
    lines = []
    for num, overrides in enumerate(planned):
        earlier = recorded_overrides(Path(sweep_dir) / str(num))
        if earlier is None:
            continue
        old, new = _measured(earlier), _measured(overrides)
        if old != new:
            gone = " ".join(sorted(old - new)) or "-"
            came = " ".join(sorted(new - old)) or "-"
            lines.append(f"job {num}: ran {gone}, would now run {came}")
    return lines


@dataclass
class ItemLog:
    """The append-only per-item log of one job (see the module docstring)."""

    path: Path
    header: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Items of an earlier run that may be reused: image id -> {row, prediction, saved}."""
    _file: Any = None

    def reusable(self, image_id: str) -> dict[str, Any] | None:
        """An earlier entry that needs no recomputation: finished, or failed for a data reason
        (a bad file fails again); ``None`` otherwise."""
        entry = self.entries.get(image_id)
        if entry is None:
            return None
        row = entry.get("row") or {}
        if row.get("error") is None:
            return entry if entry.get("prediction") is not None else None
        return entry if row.get("error_kind") == "data" else None

    def append(self, image_id: str, row: dict[str, Any], prediction: Any, saved: bool) -> None:
        """Add one finished item (flushed at once: a kill loses only items in flight)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
            if self._file.tell() == 0:
                self._file.write(json.dumps({"header": self.header}) + "\n")
        line = {"image_id": image_id, "row": row, "prediction": prediction, "saved": saved}
        self._file.write(json.dumps(line, default=_jsonable) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the log (the job's record now holds everything)."""
        self.close()
        self.path.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("ascii")
    return str(value)


def open_item_log(job_dir: Path, header: dict[str, Any], reuse: bool) -> ItemLog:
    """The job's item log. With ``reuse``, the entries of an earlier run whose header equals
    ``header`` are kept; a line that is not a whole entry (a kill mid-write truncates the last
    one; a hand edit may break any) is reported with the file and line number and skipped, so
    its item is computed again. Without ``reuse`` any earlier log is discarded."""
    path = Path(job_dir) / ITEM_LOG
    item_log = ItemLog(path, header)
    if not path.is_file():
        return item_log
    if reuse:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        first = _loads(lines[0]) if lines else None
        if first is not None and first.get("header") == header:
            for number, line in enumerate(lines[1:], start=2):
                entry = _loads(line)
                why = _invalid(entry)
                if why is None:
                    assert entry is not None
                    item_log.entries[entry["image_id"]] = entry
                elif line.strip():
                    log.warning(
                        "resume: %s line %d is not a journal entry (%s); its item is computed "
                        "again", path, number, why,
                    )  # fmt: skip
            _rewrite(path, header, item_log.entries)
            return item_log
        log.info("resume: the item log in %s is of another configuration; starting over", job_dir)
    path.unlink(missing_ok=True)
    return item_log


def _loads(line: str) -> dict[str, Any] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _invalid(entry: dict[str, Any] | None) -> str | None:
    """Why ``entry`` is not an entry :meth:`ItemLog.append` writes, or ``None``."""
    if entry is None:
        return "not a JSON object"
    if not isinstance(entry.get("image_id"), str):
        return "no image_id"
    if not isinstance(entry.get("row"), dict):
        return "no row"
    if not isinstance(entry.get("saved", False), bool):
        return "saved is not true or false"
    return None


def _rewrite(path: Path, header: dict[str, Any], entries: dict[str, dict[str, Any]]) -> None:
    """Keep only whole lines (an interrupted append leaves a partial one)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"header": header}) + "\n")
        for entry in entries.values():
            f.write(json.dumps(entry, default=_jsonable) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# sweep folders


def job_records(sweep_dir: Path) -> list[Path]:
    """``result.json`` files of the jobs in a sweep folder."""
    return sorted(Path(sweep_dir).glob(f"*/{RESULT_FILE}")) if Path(sweep_dir).is_dir() else []


def unfinished_logs(sweep_dir: Path) -> list[Path]:
    """Per-item logs of jobs a kill interrupted (their finished items are reusable)."""
    return sorted(Path(sweep_dir).glob(f"*/{ITEM_LOG}")) if Path(sweep_dir).is_dir() else []


def _task_overrides(multirun_yaml: Path) -> list[str] | None:
    try:
        import yaml

        data = yaml.safe_load(multirun_yaml.read_text(encoding="utf-8"))
        found = data["hydra"]["overrides"]["task"]
    except Exception:
        return None
    return [str(o) for o in found] if isinstance(found, list) else None


def without_resume(overrides: list[str]) -> list[str]:
    """Overrides that say what a sweep is (``resume=...`` only says how to run it)."""
    return sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "resume")


def find_sweep_to_resume(root: Path, overrides: list[str]) -> Path | None:
    """The most recent sweep folder under ``root`` (found by its ``multirun.yaml``) whose
    recorded task overrides equal ``overrides`` (``resume`` aside), or ``None``."""
    wanted = without_resume(overrides)
    best: tuple[float, Path] | None = None
    if not Path(root).is_dir():
        return None
    for path in Path(root).rglob("multirun.yaml"):
        recorded = _task_overrides(path)
        if recorded is None or without_resume(recorded) != wanted:
            continue
        stamp = path.stat().st_mtime
        if best is None or stamp > best[0]:
            best = (stamp, path.parent)
    return None if best is None else best[1]


def search_root(unresolved_dir: str, base: Path) -> Path:
    """Where sweep folders of a pattern like ``multirun/${now:...}/${now:...}`` live: the
    part before the first interpolation (``multirun/``)."""
    head = unresolved_dir.split("${", 1)[0]
    head = head if head.endswith("/") else str(Path(head).parent) + "/"
    root = Path(head)
    return root if root.is_absolute() else Path(base) / root
