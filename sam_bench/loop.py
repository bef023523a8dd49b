"""The shared per-item loop every task runs in.

For a group of jobs computed together (one :class:`~sam_bench.tasks.base.Task` object), per
item: load it (not timed), convert it (``preprocess``), reset the GPU peak, ask the task for one
prediction per job (the task fills its stages; a task computing several jobs together sets
each job's own GPU peak, :func:`~sam_bench.metrics.cost.combine_peaks`, else the group's
applies; the allocator's reserved peak is the group's), then per job score it (``metrics``),
save what the task saves and compute the time the job added to the sweep (``marginal_ms``). A
bad item is recorded with its path and reason and the loop goes on. Before timing, one untimed
warm-up pass runs on the first item that works; a warm-up that raises moves on to the next item
(up to :data:`WARMUP_TRIES`) and is recorded in ``task_info.warmup``.

Memory (:mod:`sam_bench.limits`): the job's ``limits`` are current while the loop runs, so
prompt batches that run out of memory are retried smaller (recorded per item as
``oom_retries`` / ``oom_batch`` and in ``task_info.memory``), and the RSS budget
(``limits.max_rss_gb``) is checked before every item, every prompt batch and the scoring of
every item: over it, the item in flight is an error, the items after it are not run, the job
fails with the reason (``task_info.stopped``) and the items it finished stay recorded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from sam_bench import progress as bars
from sam_bench.data.base import ImageRef, Sample
from sam_bench.errors import SampleError
from sam_bench.limits import MemoryBudgetExceeded, is_out_of_memory, job_limits
from sam_bench.metrics.base import Evaluator
from sam_bench.metrics.cost import Clock, GpuPeak, StageTimes, cost_summary
from sam_bench.resume import ItemLog
from sam_bench.tasks.base import Task, TaskResult, Writer

log = logging.getLogger(__name__)

WARMUP_TRIES = 3
"""Items tried for the warm-up pass before timing goes on without one."""


def reason_of(e: BaseException) -> str:
    """The reason recorded for a failed item."""
    if isinstance(e, SampleError):
        return e.reason
    return str(e) if isinstance(e, MemoryBudgetExceeded) else f"{type(e).__name__}: {e}"


@dataclass
class _Job:
    """One job's state in the loop."""

    evaluator: Evaluator
    writer: Writer
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    saved: int = 0

    def fail(self, row: dict[str, Any], ref: ImageRef, reason: str) -> None:
        row["error"] = reason
        self.errors.append({"image_id": ref.image_id, "path": str(ref.path), "error": reason})
        self.rows.append(row)


def _load(task: Task, ref: ImageRef) -> Sample:
    return task.lead.dataset.load(ref)


def error_kind(e: BaseException) -> str:
    """``data`` for an item whose file or annotation is bad (it fails again on a rerun),
    ``memory`` for an allocation failure or the RSS budget, ``runtime`` for anything else."""
    if isinstance(e, SampleError):
        return "data"
    oom = is_out_of_memory(e) or (e.__cause__ is not None and is_out_of_memory(e.__cause__))
    return "memory" if oom or isinstance(e, MemoryBudgetExceeded) else "runtime"


def _reuse(task: Task, jobs: list[_Job], logs: list[ItemLog], ref: ImageRef) -> bool:
    """Take an item from the earlier run when every job of the group finished it there (its
    prediction is scored again by the evaluator, its row keeps the earlier timing)."""
    entries = [lg.reusable(ref.image_id) for lg in logs]
    if not all(entries):
        return False
    ok = [e for e in entries if e is not None and (e.get("row") or {}).get("error") is None]
    try:
        sample = _load(task, ref) if ok else None
        predictions = [
            job.writer.decode(e["prediction"]) if e and e["row"].get("error") is None else None
            for job, e in zip(jobs, entries, strict=True)
        ]
    except Exception as e:  # the earlier run's data no longer loads: compute it again
        log.warning("resume: cannot reuse %s (%s); computing it again", ref.image_id, e)
        return False
    for j, (job, entry) in enumerate(zip(jobs, entries, strict=True)):
        assert entry is not None
        row = dict(entry["row"])
        if row.get("error") is not None:  # a data error stays an error
            job.fail(row, ref, str(row["error"]))
            continue
        assert sample is not None
        row.update(job.evaluator.process(sample, predictions[j]))
        job.writer.restore(sample, predictions[j])
        job.saved += int(bool(entry.get("saved")))
        job.rows.append(row)
    return True


def warm_up(task: Task, refs: list[ImageRef]) -> dict[str, Any]:
    """Run the task's untimed warm-up on the first item where it works (at most
    :data:`WARMUP_TRIES` items); returns what happened (``task_info.warmup``), with
    ``seconds``: the wall time of every try (items loaded, prepared and warmed up)."""
    failed: list[dict[str, str]] = []
    clock = Clock(task.lead.device)
    start = clock.now()
    for ref in refs:
        if len(failed) >= WARMUP_TRIES:
            break
        try:
            sample = _load(task, ref)
            inputs, _ = task.prepare(sample)
            said = task.warmup(sample, inputs)
        except MemoryBudgetExceeded:
            raise  # the job stops (run_items)
        except Exception as e:
            reason = reason_of(e)
            log.warning("warm-up on %s failed (%s); trying the next item", ref.image_id, reason)
            failed.append({"image_id": ref.image_id, "error": reason})
            continue
        return {**(said or {}), "item": ref.image_id, "failed": failed,
                "seconds": clock.now() - start}  # fmt: skip
    if failed:
        log.warning("no warm-up pass succeeded: the first timed item includes warm-up costs")
    return {"item": None, "failed": failed, "seconds": clock.now() - start}


def run_items(
    task: Task, *, warmup: bool, progress: bool, logs: list[ItemLog] | None = None
) -> list[TaskResult]:
    """Run ``task``'s jobs over their items; returns one result per job (see module doc).

    ``logs``: one per-item log per job (:mod:`sam_bench.resume`). Every finished item is
    appended to it at once; an item every job of the group finished in an earlier run is
    reused from it instead of computed (its prediction scored again, its timing kept).
    """
    lead = task.lead
    refs = lead.refs
    clock, gpu = Clock(lead.device), GpuPeak(lead.device)
    spec = task.spec
    jobs = [_Job(task.evaluator(j), task.make_writer(j)) for j in range(len(task.jobs))]
    input_warnings: dict[str, list[str]] = {}
    warm: dict[str, Any] = {"item": None, "failed": [], "disabled": not warmup}
    warmed = not warmup
    reused = computed = 0
    unit = "video" if spec.needs == "video" else "img"
    desc = f"{spec.name} {unit}s" + ("" if len(jobs) == 1 else f" ({len(jobs)} jobs)")
    bars.configure(progress)
    job_dirs = [ctx.job_dir for ctx in task.jobs]
    bar = tqdm(refs, desc=desc, unit=unit, total=len(refs), disable=not progress, leave=False)
    with job_limits(getattr(lead.cfg, "limits", None)) as limits:
        for ref in bar:
            bars.report_items(job_dirs, reused + computed, len(refs))
            if logs is not None and _reuse(task, jobs, logs, ref):
                reused += 1
                continue
            try:
                limits.check(f"before item {ref.image_id}")
                if not warmed:
                    warm, warmed = warm_up(task, refs), True
            except MemoryBudgetExceeded:
                break  # nothing of this item ran: it is not run, like the items after it
            computed += 1
            base: dict[str, Any] = {"image_id": ref.image_id, "path": str(ref.path)}
            times = [StageTimes.of(spec.stages) for _ in jobs]
            limits.begin_item(ref.image_id)
            try:
                sample = _load(task, ref)
                t0 = clock.now()
                inputs, steps = task.prepare(sample)
                for t in times:
                    t.add("preprocess", clock.now() - t0)
                base.update(task.describe_input(sample, inputs))
                notes = list(sample.raw.notes) if sample.raw is not None else []
                base["conversion"] = "; ".join([*notes, *steps])
                _note_input_warnings(input_warnings, ref, [*notes, *steps])
                gpu.start_item()
                predictions = task.predict(sample, inputs, times)
                if task.measures_cost:
                    base["gpu_peak_mb"] = gpu.peak_mb()
                    base["gpu_reserved_mb"] = gpu.reserved_mb()
                limits.check(f"after the prediction of item {ref.image_id}")  # before scoring
                base.update(limits.end_item())
            except Exception as e:  # one item never sinks the job (the RSS budget stops it)
                reason = reason_of(e)
                stop = isinstance(e, MemoryBudgetExceeded)
                if not stop:
                    log.error("item %s (%s) failed: %s", ref.image_id, ref.path, reason)
                base.update(limits.end_item())
                for j, job in enumerate(jobs):
                    row = dict(base, error_kind=error_kind(e))
                    job.fail(row, ref, reason)
                    if logs is not None:
                        logs[j].append(ref.image_id, row, None, False)
                if stop:
                    break
                continue
            for j, (job, t) in enumerate(zip(jobs, times, strict=True)):
                row = dict(base)
                try:
                    with t.measure("metrics", clock):
                        row.update(job.evaluator.process(sample, predictions[j]))
                    saved = job.writer.item(sample, inputs, predictions[j], job.saved)
                    job.saved += int(saved)
                except Exception as e:
                    job.fail(row, ref, reason_of(e))
                    row["error_kind"] = error_kind(e)
                    if logs is not None:
                        logs[j].append(ref.image_id, row, None, False)
                    continue
                if task.measures_cost:
                    row.update(t.ms())
                    if math.isfinite(t.peak_mb):  # the engine knows this job's own peak
                        row["gpu_peak_mb"] = t.peak_mb
                    # the time this job added: shared stages count for the group's first job
                    # only (as spent: an encoder-cache hit counts its load, not the stored
                    # seconds)
                    own = sum(t.seconds.get(s, 0.0) for s in spec.own_stages)
                    shared = t.shared_seconds(spec.own_stages)
                    row["marginal_ms"] = (own + (shared if j == 0 else 0.0)) * 1000.0
                row["error"] = None
                job.rows.append(row)
                if logs is not None:
                    logs[j].append(ref.image_id, row, job.writer.encode(predictions[j]), saved)
    bars.report_items(job_dirs, reused + computed, len(refs))
    extra: dict[str, Any] = {"input_warnings": _warnings_summary(input_warnings)}
    extra["memory"] = limits.info(not_run=len(refs) - reused - computed)
    if limits.stopped is not None:
        done = sum(1 for r in jobs[0].rows if r.get("error") is None)
        extra["stopped"] = (
            f"{limits.stopped}. The job stopped with {done} of {len(refs)} items finished "
            "(resume=true reuses them)"
        )
        log.error("%s", extra["stopped"])
    if logs is not None:
        extra["resume"] = {"reused_images": reused, "computed_images": computed}
    return [_result(task, j, job, warm, extra) for j, job in enumerate(jobs)]


#: Prefix of a conversion step or reader note that is a warning about the input.
WARNING_PREFIX = "warning: "
MAX_EXAMPLES = 5


def _note_input_warnings(seen: dict[str, list[str]], ref: ImageRef, steps: list[str]) -> None:
    """Collect the item's input warnings; log each kind of warning once per job."""
    for step in steps:
        if not step.startswith(WARNING_PREFIX):
            continue
        kind = step[len(WARNING_PREFIX) :].split(":")[0].split("(")[0].strip()
        if kind not in seen:
            log.warning("%s (%s): %s (said once per job)", ref.image_id, ref.path, step)
        seen.setdefault(kind, []).append(ref.image_id)


def _warnings_summary(seen: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [
        {"warning": kind, "count": len(ids), "examples": ids[:MAX_EXAMPLES]}
        for kind, ids in seen.items()
    ]


def _result(
    task: Task, j: int, job: _Job, warm: dict[str, Any], extra: dict[str, Any]
) -> TaskResult:
    """Aggregate one job: its evaluator's metrics and the cost metrics of its ok rows."""
    ok = [r for r in job.rows if r.get("error") is None]
    metrics: dict[str, float] = job.evaluator.evaluate() if ok else {}
    if task.measures_cost:
        metrics.update(cost_summary(ok, task.spec.stages, task.spec.per_s))
    metrics["n_items_ok"] = len(ok)
    metrics["n_item_errors"] = len(job.errors)
    info = {**job.writer.finish(job.evaluator), "warmup": warm, **extra}
    figures = job.writer.figures(job.evaluator)
    return TaskResult(
        rows=job.rows, metrics=metrics, item_errors=job.errors, info=info, figures=figures
    )
