"""One job: validate the config, build dataset and model, run the task, write the record.

Failures are caught here, never re-raised into Hydra: Hydra re-raises a job's exception after
the batch and then skips ``on_multirun_end``, which would lose the sweep summary. A failed job
is a ``result.json`` with ``status: failed`` and its error; the summary callback reports it and
makes the command exit non-zero.
"""

from __future__ import annotations

import logging
import math
import random
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sam_bench.config import Config, to_typed
from sam_bench.errors import SamBenchError
from sam_bench.record import PER_IMAGE_FILE, RESULT_FILE, new_record, write_json, write_rows_csv

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_job(cfg: Config, overrides: list[str], n_images: int | None) -> str:
    """One line describing a job (used by ``dry_run``)."""
    a = cfg.amg
    grid = f"{a.points_per_side}x{a.points_per_side}" if a.points_per_side else "custom grid"
    imgs = "?" if n_images is None else str(n_images)
    return (
        f"model={cfg.model.name} weights={cfg.model.weights} amg={a.name} ({grid}, "
        f"{a.crop_n_layers} crop layers) dataset={cfg.dataset.name} ({imgs} images) "
        f"preprocess={cfg.preprocess.name} device={cfg.device} dtype={cfg.dtype} "
        f"| overrides: {' '.join(overrides) or '(none)'}"
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


#: Outcomes computed ahead of their jobs by the grouping launcher, keyed by job directory.
_PRECOMPUTED: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}


def _key(job_dir: Path) -> str:
    return str(Path(job_dir).resolve())


def precompute_group(specs: list[JobSpec], base_dir: Path) -> None:
    """Run jobs that share everything but AMG post-processing as one group (image by image,
    one encoder + decoder pass), and keep each outcome until :func:`run_job` of that job
    writes it. Used by the grouping launcher (``hydra_plugins.sam_bench_launcher``)."""
    for spec, outcome in zip(specs, _run_specs(specs, base_dir), strict=True):
        _PRECOMPUTED[_key(spec.job_dir)] = outcome


def run_job(
    cfg_node: DictConfig,
    job_dir: Path,
    *,
    overrides: list[str],
    job_num: int | None = None,
    base_dir: Path | None = None,
    sweep_dir: Path | None = None,
    concurrent_jobs: int = 1,
) -> dict[str, Any]:
    """Run one configuration and write ``result.json`` + ``per_image.csv`` into ``job_dir``.

    Returns the record (also on failure; ``record["status"]`` tells). ``dry_run`` prints the
    job and writes nothing. A job the grouping launcher computed ahead only writes its outcome.
    """
    from sam_bench.tracking import build_tracker, safely

    spec = JobSpec(cfg_node, job_dir, list(overrides), job_num, sweep_dir, concurrent_jobs)
    pre = _PRECOMPUTED.pop(_key(job_dir), None)
    record, rows = pre if pre is not None else _run_specs([spec], base_dir or Path.cwd())[0]
    if record["status"] == "dry_run":
        return record
    value, why = objective(record, cfg_node)
    record["metrics"]["objective"] = value
    record["task_info"]["objective"] = why
    write_json(job_dir / RESULT_FILE, record)
    write_rows_csv(job_dir / PER_IMAGE_FILE, rows or [{"image_id": None, "error": None}])
    tracker = build_tracker(cfg_node.get("tracking"))
    safely("logging the job", tracker.job_end, record, job_dir, sweep_dir)
    return record


def objective(record: dict[str, Any], cfg: DictConfig) -> tuple[float, str]:
    """The job's finite objective (see :class:`sam_bench.config.ObjectiveConfig`) and why."""
    obj = cfg.get("objective") or {}
    metric = str(obj.get("metric", "miou"))
    penalty = float(obj.get("penalty", -1.0))
    budget = obj.get("latency_budget_ms")
    metrics = record.get("metrics") or {}
    if record.get("status") not in ("ok", "partial"):
        return penalty, "failed"
    value = metrics.get(metric)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return penalty, f"{metric} is not a number"
    latency = metrics.get("latency_ms_p50")
    if budget is not None and isinstance(latency, int | float) and latency > float(budget):
        return penalty, f"latency_ms_p50 {latency:.0f} > budget {float(budget):.0f} ms"
    return float(value), metric


def _new_record(spec: JobSpec) -> dict[str, Any]:
    record = new_record()
    record["overrides"] = list(spec.overrides)
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
    (job_dir / "traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
    log.exception("job failed")


def _run_specs(
    specs: list[JobSpec], base_dir: Path
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Validate, build and run jobs as one group; returns (record, rows) per job."""
    from sam_bench.data.registry import build_dataset
    from sam_bench.engines.encoder_cache import resolve_dir

    started = time.time()
    records = [_new_record(s) for s in specs]
    rows: list[list[dict[str, Any]]] = [[] for _ in specs]
    live: list[tuple[int, Config]] = []
    cache_dirs: dict[int, Path | None] = {}
    for i, spec in enumerate(specs):
        try:
            cfg = to_typed(spec.cfg_node)  # range checks, before anything is built
            records[i]["task"] = cfg.task.name
            if not cfg.dry_run:  # the cache folder is created here, before any model work
                cache_dirs[i] = resolve_dir(cfg.cache, base_dir)
            live.append((i, cfg))
        except Exception as e:
            _fail(records[i], e, spec.job_dir)
    if live:
        try:
            lead = live[0][1]
            dataset = build_dataset(lead.dataset, base_dir)
            refs = dataset.refs()
            if lead.dry_run:
                for i, cfg in live:
                    num = specs[i].job_num
                    prefix = "[dry run]" if num is None else f"[dry run] #{num}"
                    print(
                        f"{prefix} {describe_job(cfg, specs[i].overrides, len(refs))}", flush=True
                    )
                    records[i]["status"] = "dry_run"
            else:
                outs = _execute(
                    [cfg for _, cfg in live],
                    dataset,
                    refs,
                    [specs[i] for i, _ in live],
                    [records[i] for i, _ in live],
                    [cache_dirs.get(i) for i, _ in live],
                )
                for (i, _), r in zip(live, outs, strict=True):
                    rows[i] = r
        except Exception as e:
            for i, _ in live:
                _fail(records[i], e, specs[i].job_dir)
    for record in records:
        record["job"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["job"]["duration_s"] = time.time() - started
    return list(zip(records, rows, strict=True))


def _execute(
    cfgs: list[Config],
    dataset: Any,
    refs: list[Any],
    specs: list[JobSpec],
    records: list[dict[str, Any]],
    cache_dirs: list[Path | None],
) -> list[list[dict[str, Any]]]:
    """Build the model once, run the task for every job, fill the records; returns rows."""
    from sam_bench import environment
    from sam_bench.metrics.cost import PeakRSS
    from sam_bench.models.build import UNTRAINED_BANNER, build_model
    from sam_bench.tasks import JobContext, get_task

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
    }
    for record, spec in zip(records, specs, strict=True):
        record["environment"] = {**env, "concurrent_jobs": spec.concurrent_jobs}
        record["dataset"] = dict(data_info)
    task_cls = get_task(lead.task.name)
    rss = PeakRSS().start()
    seed_everything(lead.seed)
    t0 = time.perf_counter()
    model, weights = build_model(lead.model, device, lead.seed, progress=lead.progress)
    build_s = time.perf_counter() - t0
    if weights.untrained:
        log.warning("%s", UNTRAINED_BANNER)
    ctxs = [
        JobContext(
            cfg=cfg, device=device, model=model, weights=weights, dataset=dataset, refs=refs,
            job_dir=spec.job_dir, cache_dir=cache_dir,
        )
        for cfg, spec, cache_dir in zip(cfgs, specs, cache_dirs, strict=True)
    ]  # fmt: skip
    run_group = getattr(task_cls, "run_group", None)
    results = [task_cls(ctxs[0]).run()] if run_group is None or len(ctxs) == 1 else run_group(ctxs)
    peak_rss = rss.stop()
    group = [s.job_num for s in specs] if len(specs) > 1 else None
    for record, result in zip(records, results, strict=True):
        _fill(record, result, weights, build_s, peak_rss, rss.method, group)
    return [r.rows for r in results]


def _fill(
    record: dict[str, Any],
    result: Any,
    weights: Any,
    build_s: float,
    peak_rss: float,
    rss_method: str,
    group: list[int | None] | None,
) -> None:
    """Record one job's outcome (status from its images)."""
    from sam_bench.models.build import UNTRAINED_BANNER

    record["weights"] = {
        "kind": weights.kind,
        "label": weights.label,
        "sha256": weights.sha256,
        "state_dict_hash": weights.state_dict_hash,
        "requested": weights.requested,
        "checkpoint_path": weights.checkpoint_path,
        "fallback_reason": weights.fallback_reason,
    }
    record["untrained"] = weights.untrained
    record["banner"] = UNTRAINED_BANNER if weights.untrained else None
    metrics = dict(result.metrics)
    metrics["peak_rss_mb"] = peak_rss  # of the whole group when jobs ran grouped
    metrics["model_build_s"] = build_s
    record["environment"]["peak_rss_method"] = rss_method
    record["metrics"] = metrics
    record["task_info"] = {**result.info, "grouped_with_jobs": group}
    record["image_errors"] = result.image_errors
    n_ok = sum(1 for r in result.rows if r.get("error") is None)
    if n_ok == 0:
        first = result.image_errors[0]["error"] if result.image_errors else "?"
        record["status"] = "failed"
        record["error"] = f"all {len(result.rows)} images failed; first: {first}"
    else:
        record["status"] = "partial" if result.image_errors else "ok"
