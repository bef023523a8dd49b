"""One job: validate the config, build dataset and model, run the task, write the record.

Failures are caught here, never re-raised into Hydra: Hydra re-raises a job's exception after
the batch and then skips ``on_multirun_end``, which would lose the sweep summary. A failed job
is a ``result.json`` with ``status: failed`` and its error; the summary callback reports it and
makes the command exit non-zero.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import random
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sam_bench import heap, registry
from sam_bench.config import Config, to_typed
from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.layout import PER_ITEM_FILE as PER_IMAGE_FILE
from sam_bench.layout import (
    RESULT_FILE,
    RUNNER_OUTPUTS,
    TRACEBACK_FILE,
    JobLayout,
    Output,
    renamed_items,
)
from sam_bench.metrics.catalogue import Metric
from sam_bench.record import new_record, write_json, write_rows_csv

if TYPE_CHECKING:
    from sam_bench.tasks.base import Task
    from sam_bench.tracking.worker import TrackingWorker

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_job(
    cfg: Config, overrides: list[str], n_images: int | None, task_text: str = ""
) -> str:
    """One line describing a job (used by ``dry_run``); ``task_text``: the task's own part."""
    imgs = "?" if n_images is None else str(n_images)
    return " ".join(
        p
        for p in (
            f"task={cfg.task.name} model={cfg.model.name} weights={cfg.model.weights}",
            task_text,
            f"dataset={cfg.dataset.name} ({imgs} items) preprocess={cfg.preprocess.name}",
            f"device={cfg.device} dtype={cfg.dtype}",
            f"| overrides: {' '.join(overrides) or '(none)'}",
        )
        if p
    )


@dataclass
class JobSpec:
    """One job as Hydra hands it over."""

    cfg_node: DictConfig
    job_dir: Path
    overrides: list[str]
    job_num: int | None = None
    sweep_dir: Path | None = None
    """The multirun's directory (``None`` for a single run); trackers find the parent run."""
    concurrent_jobs: int = 1
    """How many jobs share the machine (recorded so contended latency can be flagged)."""
    process_ends: bool = False
    """The process ends after this job (a single run from the command line): the full garbage
    collection that frees the job's model for the next job is skipped (~0.25 s)."""


#: Outcomes computed ahead of their jobs by the grouping launcher, keyed by job directory.
_PRECOMPUTED: dict[str, dict[str, Any]] = {}


def _key(job_dir: Path) -> str:
    return str(Path(job_dir).resolve())


def precompute_group(specs: list[JobSpec], base_dir: Path) -> None:
    """Run jobs that share computation as one group (item by item, shared stages once), and
    write each job's record as soon as the group is done, so a kill before Hydra runs the jobs
    loses nothing; :func:`run_job` of each then only tracks it. Used by the grouping launcher
    (``hydra_plugins.sam_bench_launcher``)."""
    for spec, (record, rows) in zip(specs, _run_specs(specs, base_dir), strict=True):
        if record["status"] != "dry_run":
            write_outcome(spec, record, rows)
        _PRECOMPUTED[_key(spec.job_dir)] = record


def take_precomputed(job_dir: Path) -> dict[str, Any] | None:
    """The record :func:`precompute_group` left for ``job_dir`` (removed; ``None`` if none).
    A remote worker (:mod:`sam_bench.remote`) returns it to the launching process."""
    return _PRECOMPUTED.pop(_key(job_dir), None)


def put_precomputed(job_dir: Path, record: dict[str, Any]) -> None:
    """Hand :func:`run_job` a record computed and written elsewhere (a remote worker wrote it
    into the shared sweep folder): the job is then only tracked."""
    _PRECOMPUTED[_key(job_dir)] = record


def write_outcome(spec: JobSpec, record: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The job's objective, then ``result.json`` and ``per_image.csv`` (atomically), then the
    per-item log is dropped once the job finished (status ``ok`` or ``partial``); a job that
    failed keeps it, so ``resume=true`` reuses the items it finished. A record reused by
    ``resume=true`` is already on disk."""
    from sam_bench.resume import FINISHED, ITEM_LOG

    if record.get("job", {}).get("reused") or record.get("job", {}).get("refused"):
        return  # on disk already / another configuration's record, kept as it is
    value, why = objective(record, spec.cfg_node)
    record["metrics"]["objective"] = value
    record["task_info"]["objective"] = why
    write_rows_csv(spec.job_dir / PER_IMAGE_FILE, rows or [{"image_id": None, "error": None}])
    write_json(spec.job_dir / RESULT_FILE, record)
    if record.get("status") in FINISHED:
        (spec.job_dir / ITEM_LOG).unlink(missing_ok=True)


def run_job(
    cfg_node: DictConfig,
    job_dir: Path,
    *,
    overrides: list[str],
    job_num: int | None = None,
    base_dir: Path | None = None,
    sweep_dir: Path | None = None,
    concurrent_jobs: int = 1,
    process_ends: bool = False,
) -> dict[str, Any]:
    """Run one configuration and write ``result.json`` + ``per_image.csv`` into ``job_dir``,
    then log it to the tracker.

    Returns the record (also on failure; ``record["status"]`` tells). ``dry_run`` prints the
    job and writes nothing. A job the grouping launcher computed ahead is only tracked.
    ``process_ends``: nothing runs in this process after the job (see :class:`JobSpec`).
    """
    try:
        return _run_job(
            JobSpec(
                cfg_node, job_dir, list(overrides), job_num, sweep_dir, concurrent_jobs,
                process_ends,
            ),
            base_dir,
        )  # fmt: skip
    finally:
        heap.unsettle()  # the caller gets the garbage collector as it was


def _run_job(spec: JobSpec, base_dir: Path | None) -> dict[str, Any]:
    from sam_bench.tracking import note_failure

    job_dir, job_num, sweep_dir = spec.job_dir, spec.job_num, spec.sweep_dir
    heap.settle()  # the command's own imports (Hydra, the harness): full collections skip them
    record = _PRECOMPUTED.pop(_key(job_dir), None)
    worker = _tracking_worker(spec.cfg_node, sweep_dir) if record is None else None
    try:
        if record is None:
            ready = worker.wait_ready if worker is not None else None
            record, rows = _run_specs([spec], base_dir or Path.cwd(), before_build=ready)[0]
            if record["status"] != "dry_run":
                write_outcome(spec, record, rows)  # on disk before anything is tracked
        if record["status"] == "dry_run":
            return record
        error = _track(spec, record, worker)
    finally:
        if worker is not None:  # interrupted (Ctrl-C, SIGTERM) or raised: nothing to log
            worker.detach()  # (nothing to do once the helper logged the job)
    if error is not None:
        if sweep_dir is not None:
            note_failure(sweep_dir, f"job {job_num}: {error}")
        record["tracking_error"] = error  # not on disk: the single run's exit says it
    return record


def _track(spec: JobSpec, record: dict[str, Any], worker: TrackingWorker | None) -> str | None:
    """Log the job (its record is written) through the single run's MLflow helper when it
    is ready, else in this process; returns the error text (``safely``'s) or ``None``."""
    from sam_bench.tracking import build_tracker, safely

    if worker is not None and worker.wait_ready():
        error = worker.job_end(record, spec.job_dir)
        if error is not None:
            log.warning("tracking: %s", error)
        return error
    tracker = build_tracker(spec.cfg_node.get("tracking"))
    with heap.settling():  # the tracker's imports (MLflow and its store)
        return safely("logging the job", tracker.job_end, record, spec.job_dir, spec.sweep_dir)


def _tracking_worker(cfg_node: DictConfig, sweep_dir: Path | None) -> TrackingWorker | None:
    """A single run's MLflow helper process (:mod:`sam_bench.tracking.worker`), started now
    so that MLflow is imported and its store opened while the job imports torch and reads its
    data; ``None`` for sweeps, dry runs, other trackers, ``tracking.background=false`` (or
    ``null`` on a machine with no spare core) or when it cannot start."""
    from sam_bench.tracking import worker

    started = _start_worker(cfg_node, sweep_dir)
    if started is None:
        worker.discard_early()  # one the command started before its configuration was known
    return started


def _start_worker(cfg_node: DictConfig, sweep_dir: Path | None) -> TrackingWorker | None:
    tracking = cfg_node.get("tracking")
    if (
        sweep_dir is not None
        or cfg_node.get("dry_run")
        or tracking is None
        or tracking.get("name") != "mlflow"
        or tracking.get("background") is False
    ):
        return None
    from sam_bench.tracking.mlflow import launch_dir
    from sam_bench.tracking.worker import TrackingWorker, spare_core

    if tracking.get("background") is None and not spare_core():
        return None

    try:
        container = OmegaConf.to_container(tracking, resolve=True)
    except Exception:  # the job's validation says what is wrong, in one line
        return None
    assert isinstance(container, dict)
    return TrackingWorker.start({str(k): v for k, v in container.items()}, launch_dir())


def objective(record: dict[str, Any], cfg: DictConfig) -> tuple[float, str]:
    """The job's finite objective (see :class:`sam_bench.config.ObjectiveConfig`) and why.

    The metric is ``objective.metric``, else the task's default objective (recorded as
    ``task_spec.objective``), else ``miou``. The objective is maximised: a metric whose
    catalogue direction is ``lower`` is negated. The penalty defaults to -1 for a
    higher-is-better metric and -1e9 for a negated one.
    """
    from sam_bench.metrics.catalogue import CATALOGUE

    obj = cfg.get("objective") or {}
    spec = record.get("task_spec") or {}
    metric = str(obj.get("metric") or spec.get("objective") or "miou")
    entry = CATALOGUE.get(metric)
    if entry is None and isinstance((record.get("metric_info") or {}).get(metric), dict):
        entry = Metric.from_dict(record["metric_info"][metric])
    sign = -1.0 if entry is not None and entry.direction == "lower" else 1.0
    penalty = obj.get("penalty")
    penalty = float(penalty) if penalty is not None else (-1.0 if sign > 0 else -1e9)
    budget = obj.get("latency_budget_ms")
    metrics = record.get("metrics") or {}
    if record.get("status") not in ("ok", "partial"):
        return penalty, "failed"
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return penalty, f"{metric} is not a number"
    latency = metrics.get("latency_ms_p50")
    if budget is not None and isinstance(latency, int | float) and latency > float(budget):
        return penalty, f"latency_ms_p50 {latency:.0f} > budget {float(budget):.0f} ms"
    return sign * float(value), metric if sign > 0 else f"-{metric}"


#: Settings that only say how to run, never what (left out of a record's ``overrides``).
RUN_ONLY_OVERRIDES = ("resume",)


def _new_record(spec: JobSpec) -> dict[str, Any]:
    record = new_record()
    record["overrides"] = [
        o for o in spec.overrides if o.split("=", 1)[0].lstrip("+~") not in RUN_ONLY_OVERRIDES
    ]
    record["job"] = {
        "num": spec.job_num,
        "dir": str(spec.job_dir),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record["config"] = OmegaConf.to_container(spec.cfg_node, resolve=True)
    return record


def _fail(record: dict[str, Any], e: BaseException, job_dir: Path) -> None:
    if isinstance(e, SamBenchError):
        record["status"], record["error"] = "failed", str(e)
        log.error("%s", e)
        return
    record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}"
    job_dir.mkdir(parents=True, exist_ok=True)  # unexpected: keep the traceback
    (job_dir / TRACEBACK_FILE).write_text(traceback.format_exc(), encoding="utf-8")
    log.exception("job failed")


def validate(cfg_node: DictConfig) -> tuple[Config, type[Task]]:
    """Plugins imported, the config typed and range-checked, the task found and its objective
    metric checked against the catalogue: everything that can fail before data or model."""
    from sam_bench.metrics.catalogue import CATALOGUE
    from sam_bench.tasks import get_task

    registry.import_plugins(cfg_node.get("plugins") or [])
    cfg = to_typed(cfg_node)
    task_cls = get_task(cfg.task.name)
    task_cls.spec.check_catalogue()
    if cfg.objective.metric is not None:
        try:
            CATALOGUE.require(cfg.objective.metric, task=cfg.task.name)
        except KeyError as e:
            raise ConfigError("objective.metric", str(e.args[0])) from None
    return cfg, task_cls


def _run_specs(
    specs: list[JobSpec], base_dir: Path, *, before_build: Callable[[], object] | None = None
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Validate, build and run jobs as one group; returns (record, rows) per job.
    ``before_build`` is called right before the model is built (nothing measured runs
    before it)."""
    from sam_bench.data.registry import build_dataset
    from sam_bench.engines.encoder_cache import resolve_dir
    from sam_bench.metrics.catalogue import CATALOGUE

    started = time.time()
    records = [_new_record(s) for s in specs]
    rows: list[list[dict[str, Any]]] = [[] for _ in specs]
    live: list[tuple[int, Config]] = []
    task_cls: type[Task] | None = None
    cache_dirs: dict[int, Path | None] = {}
    for i, spec in enumerate(specs):
        try:
            cfg, task_cls = validate(spec.cfg_node)  # before anything is built
            records[i]["task"] = cfg.task.name
            records[i]["task_spec"] = task_cls.spec.to_dict()
            records[i]["metric_info"] = CATALOGUE.snapshot(task_cls.spec.catalogue_names())
            if not cfg.dry_run:  # the cache folder is created here, before any model work
                cache_dirs[i] = resolve_dir(cfg.cache, base_dir)
            live.append((i, cfg))
        except Exception as e:
            _fail(records[i], e, spec.job_dir)
    if live and task_cls is not None:
        try:
            lead = live[0][1]
            dataset = build_dataset(lead.dataset, base_dir, limits=lead.limits)
            refs = dataset.refs()
            for _, cfg in live:
                task_cls.check(cfg, dataset)
            if lead.dry_run:
                for i, cfg in live:
                    num = specs[i].job_num
                    prefix = "[dry run]" if num is None else f"[dry run] #{num}"
                    text = describe_job(cfg, specs[i].overrides, len(refs), task_cls.describe(cfg))
                    print(f"{prefix} {text}", flush=True)
                    records[i]["status"] = "dry_run"
            elif live := _reuse_finished(task_cls, live, specs, records, dataset):
                outs = _execute(
                    task_cls,
                    [cfg for _, cfg in live],
                    dataset,
                    refs,
                    [specs[i] for i, _ in live],
                    [records[i] for i, _ in live],
                    [cache_dirs.get(i) for i, _ in live],
                    base_dir,
                    before_build,
                )
                for (i, _), r in zip(live, outs, strict=True):
                    rows[i] = r
        except Exception as e:
            for i, _ in live:
                _fail(records[i], e, specs[i].job_dir)
                _failed_identity(records[i], task_cls)
    for record in records:
        if record.get("job", {}).get("reused"):
            continue
        record["job"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["job"]["duration_s"] = time.time() - started
    return list(zip(records, rows, strict=True))


def _identity(
    record: dict[str, Any], task_cls: type[Task], fingerprint: str | None, weights: str | None
) -> dict[str, Any]:
    return task_cls.identity(record.get("config") or {}, data=fingerprint, weights=weights)


def _failed_identity(record: dict[str, Any], task_cls: type[Task]) -> None:
    """A failed job's identity, by its task's rule, so the regression check can pair it from
    the record alone (its ``config_id`` stays unset: the job measured nothing)."""
    if record.get("config_identity"):
        return
    with contextlib.suppress(Exception):  # e.g. the input file whose absence failed the job
        record["config_identity"] = _identity(
            record, task_cls, (record.get("dataset") or {}).get("fingerprint"),
            (record.get("weights") or {}).get("hash"),
        )  # fmt: skip


def _reuse_finished(
    task_cls: type[Task],
    live: list[tuple[int, Config]],
    specs: list[JobSpec],
    records: list[dict[str, Any]],
    dataset: Any,
) -> list[tuple[int, Config]]:
    """With ``resume=true``, jobs whose directory holds a finished record of the same
    configuration take it (see :mod:`sam_bench.resume`); returns the jobs left to run."""
    from sam_bench.resume import conflict, finished_record

    if not any(cfg.resume for _, cfg in live):
        return live
    fingerprint = dataset.fingerprint()
    left = []
    for i, cfg in live:
        identity = _identity(records[i], task_cls, fingerprint, None)
        prior, why = (
            finished_record(specs[i].job_dir, identity, records[i]["config"])
            if cfg.resume
            else (None, "")
        )
        refused = conflict(specs[i].job_dir, identity, records[i]["config"]) if cfg.resume else None
        if refused is not None:  # never rewrite another configuration's finished record
            log.error("%s", refused)
            records[i].update(status="failed", error=refused)
            records[i]["job"]["refused"] = True
            continue
        if prior is None:
            if cfg.resume:
                log.info("resume: job %s runs (%s)", specs[i].job_num, why)
            left.append((i, cfg))
            continue
        log.info("resume: job %s reused (%s, %s)", specs[i].job_num, why, prior.get("config_id"))
        prior.setdefault("job", {})["reused"] = True
        prior.setdefault("task_info", {})["resume"] = {
            "reused_images": len(_read_rows(specs[i].job_dir)),
            "computed_images": 0,
            "record": "reused",
        }
        records[i] = prior
    return left


def _read_rows(job_dir: Path) -> list[dict[str, str]]:
    import csv

    try:
        with (job_dir / PER_IMAGE_FILE).open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _execute(
    task_cls: type[Task],
    cfgs: list[Config],
    dataset: Any,
    refs: list[Any],
    specs: list[JobSpec],
    records: list[dict[str, Any]],
    cache_dirs: list[Path | None],
    base_dir: Path,
    before_build: Callable[[], object] | None = None,
) -> list[list[dict[str, Any]]]:
    """Build the model once (or open the saved predictions), run the task's jobs through the
    shared loop, free the model, fill the records; returns the rows."""
    with heap.settling():  # torch and the harness (:mod:`sam_bench.heap`)
        from sam_bench import environment
        from sam_bench.loop import run_items
        from sam_bench.metrics.cost import Clock, PeakRSS
        from sam_bench.models.build import UNTRAINED_BANNER
        from sam_bench.tasks.base import JobContext
        from sam_bench.tasks.predictions import ReplayTask

    # sam2 modules call torch.jit.script at import; torch >= 2.10 warns about it on every job.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")
    lead = cfgs[0]
    if not refs:
        raise SamBenchError(f"dataset {lead.dataset.name!r} has no images")
    device = environment.resolve_device(lead.device)
    env = environment.describe(device, lead.dtype)
    data_info = {
        "name": lead.dataset.name,
        "format": lead.dataset.format,
        "n_images": len(refs),
        "fingerprint": dataset.fingerprint(),
        "warnings": dataset_warnings(dataset),
    }
    for record, spec in zip(records, specs, strict=True):
        record["environment"] = {**env, "concurrent_jobs": spec.concurrent_jobs}
        record["dataset"] = dict(data_info)
    rss = PeakRSS().start()
    source = None
    model = weights = None
    runtime: dict[str, Any] | None = None
    build_s = math.nan
    if lead.predictions:
        path = Path(lead.predictions).expanduser()
        source = task_cls.read_predictions(path if path.is_absolute() else base_dir / path, dataset)
    elif task_cls.spec.model:
        with heap.settling():  # what the task imports later, while nothing is measured
            for name in task_cls.preload(lead):
                importlib.import_module(name)
        if before_build is not None:
            before_build()
        seed_everything(lead.seed)
        clock = Clock(device)
        t0 = clock.now()
        model, weights = task_cls.build_model(lead, device)
        build_s = clock.now() - t0
        if weights.untrained:
            log.warning("%s", UNTRAINED_BANNER)
        model, runtime = _on_runtime(model, lead, device, weights)
        heap.settle()  # sam2 and the model: long-lived until the job's end
    ctxs = [
        JobContext(
            cfg=cfg, device=device, model=model, weights=weights, dataset=dataset, refs=refs,
            job_dir=spec.job_dir, cache_dir=cache_dir,
        )
        for cfg, spec, cache_dir in zip(cfgs, specs, cache_dirs, strict=True)
    ]  # fmt: skip
    from sam_bench.resume import comparable, open_item_log, weights_request

    logs = [
        open_item_log(
            spec.job_dir,
            {
                "identity": comparable(_identity(rec, task_cls, data_info["fingerprint"], None)),
                "weights": weights_request(rec["config"]),
            },
            reuse=cfg.resume,
        )
        for cfg, spec, rec in zip(cfgs, specs, records, strict=True)
    ]
    with heap.settling():  # the engine and its imports (sam2's; torchvision for sam2's predictor)
        task = ReplayTask(ctxs, task_cls, source) if source is not None else task_cls(ctxs)
    try:
        try:
            results = run_items(task, warmup=lead.warmup, progress=lead.progress, logs=logs)
        finally:
            for item_log in logs:
                item_log.close()
            task.close()
            del task, ctxs
        peak_rss = rss.stop()  # before the agreement pass: it is not part of the job's cost
        if runtime is not None and model is not None and weights is not None:
            _agree(runtime, task_cls, lead, device, model, weights, dataset, refs)
    finally:
        del model
        free_memory(device, collect=not all(s.process_ends for s in specs))
    group = [s.job_num for s in specs] if len(specs) > 1 else None
    for record, result in zip(records, results, strict=True):
        if runtime is not None:
            _add_runtime(result, runtime)
        _fill(record, result, task_cls, weights, source, build_s, peak_rss, rss.method, group)
    return [r.rows for r in results]


def _on_runtime(model: Any, cfg: Config, device: Any, weights: Any) -> tuple[Any, dict[str, Any]]:
    """``model`` on ``cfg.model.runtime`` (:mod:`sam_bench.models.runtimes`), and what the
    record says of it (``task_info.runtime``). Eager returns the model unchanged."""
    from sam_bench.models.runtimes.apply import prepare_runtime, runtime_info

    name = str(getattr(cfg.model, "runtime", "eager"))
    if name == "eager":
        return model, runtime_info(name, None)
    log.info("model.runtime=%s: preparing the model", name)
    prepared = prepare_runtime(model, cfg.model, device, weights.state_dict_hash)
    return prepared.model, runtime_info(name, prepared)


def _agree(
    runtime: dict[str, Any],
    task_cls: type[Task],
    cfg: Config,
    device: Any,
    model: Any,
    weights: Any,
    dataset: Any,
    refs: list[Any],
) -> None:
    """On a runtime other than eager: build the eager model again (same config, seed and
    weights) and compare it with the runtime's on the first ``model.agreement_items`` items
    (:mod:`sam_bench.models.agreement`); fills ``runtime["agreement"]`` (metrics, items,
    what was compared, the eager ``reference`` (holding the weights the runtime ran:
    :func:`sam_bench.models.runtimes.apply.eager_reference`), or the error). Building
    again, rather than keeping a deep copy from before the swap, keeps the copy out of the
    job's measured peak memory (RSS, GPU)."""
    from sam_bench.models.agreement import aggregate, compare_case
    from sam_bench.models.runtimes.apply import eager_reference

    n = int(cfg.model.agreement_items)
    if runtime["name"] == "eager" or n <= 0:
        return
    cases, compared, why, described = [], [], None, None
    try:
        seed_everything(cfg.seed)
        reference, ref_weights = task_cls.build_model(cfg, device)
        if ref_weights.state_dict_hash != weights.state_dict_hash:
            raise SamBenchError("the eager reference was built with other weights")
        described = eager_reference(
            reference, cfg.model, weights.state_dict_hash, runtime.get("weights")
        )
        for ref in refs[:n]:
            case = task_cls.agreement_case(cfg, dataset.load(ref))
            if case is None:
                continue
            cases.append(compare_case(reference, model, case))
            compared.append({"image_id": str(ref.image_id), "prompts": case.what})
        del reference
    except Exception as e:  # recorded; the job's own results stand
        why = f"{type(e).__name__}: {e}"
        log.warning(
            "model.runtime=%s: agreement with eager not measured (%s)", runtime["name"], why
        )
    metrics = aggregate(cases)
    runtime["agreement"] = {
        "items": compared, "metrics": metrics, "error": why, "reference": described,
    }  # fmt: skip


def _add_runtime(result: Any, runtime: dict[str, Any]) -> None:
    """``task_info.runtime``, and on a runtime other than eager the ``prepare_s`` and
    ``agreement_*`` metrics (eager jobs record none of them)."""
    result.info = {**(result.info or {}), "runtime": runtime}
    if runtime["name"] == "eager":
        return
    result.metrics = {**result.metrics, "prepare_s": float(runtime["prepare_s"])}
    agreement = runtime.get("agreement")
    if agreement is not None:
        result.metrics.update(agreement["metrics"])


def dataset_warnings(dataset: Any) -> list[dict[str, Any]]:
    """What the loader found suspicious (``dataset.warnings()``: orphan labels, annotations of
    unknown images, files outside the root...), logged once and recorded in ``result.json``."""
    get = getattr(dataset, "warnings", None)
    found = list(get()) if callable(get) else []
    for w in found:
        log.warning("dataset: %s", w.get("message") or w)
    return found


def free_memory(device: Any, *, collect: bool = True) -> None:
    """Collect garbage, the job's settled heap included (a job's model must not outlive it:
    :func:`sam_bench.heap.release`), and return cached CUDA memory. ``collect=False`` (the
    process ends after the job) skips the collection: the memory goes back at exit anyway."""
    import torch

    if collect:
        heap.release()
    if getattr(device, "type", None) == "cuda":
        torch.cuda.empty_cache()


def _weights_block(weights: Any, source: Any) -> dict[str, Any]:
    if source is None and weights is None:  # a task that builds no model
        return {"kind": "none", "label": "none", "hash": None, "sha256": None,
                "state_dict_hash": None, "requested": None, "checkpoint_path": None,
                "fallback_reason": None}  # fmt: skip
    if source is not None:
        info = source.info()
        sha = str(info.get("sha256"))
        return {"kind": "predictions", "label": f"predictions:{sha[:12]}", "hash": sha,
                "sha256": sha, "state_dict_hash": None, "requested": None,
                "checkpoint_path": None, "fallback_reason": None}  # fmt: skip
    return {
        "kind": weights.kind,
        "label": weights.label,
        "hash": weights.sha256 if weights.kind != "random" else weights.state_dict_hash,
        "sha256": weights.sha256,
        "state_dict_hash": weights.state_dict_hash,
        "requested": weights.requested,
        "checkpoint_path": weights.checkpoint_path,
        "fallback_reason": weights.fallback_reason,
    }


def _fill(
    record: dict[str, Any],
    result: Any,
    task_cls: type[Task],
    weights: Any,
    source: Any,
    build_s: float,
    peak_rss: float,
    rss_method: str,
    group: list[int | None] | None,
) -> None:
    """Record one job's outcome (status from its items). A task whose other networks ran
    with random weights lists them in ``task_info.untrained_models`` (e.g. ``["CLIP
    (open_clip ViT-B-32)"]``): the record is then ``untrained`` and its banner names them."""
    from sam_bench.identity import config_id
    from sam_bench.metrics.catalogue import CATALOGUE
    from sam_bench.models.build import UNTRAINED_BANNER
    from sam_bench.models.runtimes.apply import recorded_weights

    runtime = (result.info or {}).get("runtime")
    record["weights"] = recorded_weights(_weights_block(weights, source), runtime)
    untrained: bool | None
    if source is None and weights is None:
        untrained, banner = None, None
    elif source is None:
        untrained = bool(weights.untrained)
        banner = UNTRAINED_BANNER if untrained else None
    else:  # what the predictions' own header says (sam_bench writes it)
        flag = (source.info().get("source") or {}).get("untrained")
        untrained = flag if isinstance(flag, bool) else None
        banner = PREDICTIONS_UNTRAINED_BANNER if untrained else None
    others = [str(m) for m in (result.info or {}).get("untrained_models") or []]
    if others:  # the task's own networks with random weights (task_info.untrained_models)
        sam = [f"SAM 2 ({record['config'].get('model', {}).get('name')})"] if untrained else []
        untrained, banner = True, untrained_banner([*sam, *others])
    record["untrained"] = untrained
    record["banner"] = banner
    metrics = dict(result.metrics)
    if source is None:
        metrics["peak_rss_mb"] = peak_rss  # of the whole group when jobs ran grouped
        if weights is not None:
            metrics["model_build_s"] = build_s
    else:  # nothing ran: no cost was measured
        metrics = {
            k: v for k, v in metrics.items() if (m := CATALOGUE.get(k)) is None or m.kind != "cost"
        }
    record["environment"]["peak_rss_method"] = rss_method
    record["metrics"] = metrics
    record["metric_info"] = {
        **record.get("metric_info", {}),
        **CATALOGUE.snapshot([*metrics, "objective"]),
    }
    record["task_info"] = {**result.info, "grouped_with_jobs": group}
    record["figures"] = list(result.figures)
    record["item_errors"] = result.item_errors
    record["outputs"] = job_outputs(Path(record["job"]["dir"]), task_cls.spec.outputs)
    record["item_files"] = renamed_items(str(r.get("image_id")) for r in result.rows)
    identity = _identity(
        record, task_cls, record["dataset"].get("fingerprint"), record["weights"].get("hash")
    )
    record["config_identity"] = identity
    record["config_id"] = config_id(identity)
    n_ok = sum(1 for r in result.rows if r.get("error") is None)
    stopped = (result.info or {}).get("stopped")
    if stopped:  # the loop stopped early (RSS budget): the job failed, its items are kept
        record["status"] = "failed"
        record["error"] = str(stopped)
    elif n_ok == 0:
        first = result.item_errors[0]["error"] if result.item_errors else "?"
        record["status"] = "failed"
        record["error"] = f"all {len(result.rows)} items failed; first: {first}"
    else:
        record["status"] = "partial" if result.item_errors else "ok"


def job_outputs(job_dir: Path, declared: tuple[Output, ...]) -> list[dict[str, str]]:
    """The outputs a finished job wrote (``result.json`` ``outputs``): the record and the
    per-item table, then the task's declared outputs found in the job folder."""
    layout = JobLayout(job_dir)
    return [o.to_dict() for o in (*RUNNER_OUTPUTS[:2], *layout.written(declared))]


def untrained_banner(models: list[str]) -> str:
    """The banner of a job where ``models`` (e.g. ``["SAM 2 (...)", "CLIP (...)"]``) ran with
    random weights."""
    return (
        f"UNTRAINED MODEL: random weights (no checkpoint) in {' and '.join(models)}. Accuracy "
        "figures measure nothing but the harness; latency and memory are real."
    )


PREDICTIONS_UNTRAINED_BANNER = (
    "UNTRAINED MODEL: these predictions came from random weights (no checkpoint), as their "
    "file says. Accuracy figures measure nothing but the harness."
)
