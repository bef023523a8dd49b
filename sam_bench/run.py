"""One job: validate the config, build dataset and model, run the task, write the record.

Failures are caught here, never re-raised into Hydra: Hydra re-raises a job's exception after
the batch and then skips ``on_multirun_end``, which would lose the sweep summary. A failed job
is a ``result.json`` with ``status: failed`` and its error; the summary callback reports it and
makes the command exit non-zero.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
import warnings
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
    job and writes nothing. ``sweep_dir`` is the multirun's directory (``None`` for a single
    run); trackers use it to find the sweep's parent run. ``concurrent_jobs`` (how many jobs
    share the machine) is recorded so latency measured under contention can be flagged.
    """
    from sam_bench.data.registry import build_dataset
    from sam_bench.tracking import build_tracker, safely

    base_dir = base_dir or Path.cwd()
    record = new_record()
    record["overrides"] = list(overrides)
    record["job"] = {"num": job_num, "dir": str(job_dir)}
    record["config"] = OmegaConf.to_container(cfg_node, resolve=True)
    started = time.time()
    record["job"]["started"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows: list[dict[str, Any]] = []
    try:
        cfg = to_typed(cfg_node)  # range checks, before anything is built
        record["task"] = cfg.task.name
        dataset = build_dataset(cfg.dataset, base_dir)
        refs = dataset.refs()
        if cfg.dry_run:
            prefix = f"[dry run] #{job_num}" if job_num is not None else "[dry run]"
            print(f"{prefix} {describe_job(cfg, overrides, len(refs))}", flush=True)
            record["status"] = "dry_run"
            return record
        rows = _execute(cfg, dataset, refs, job_dir, record, concurrent_jobs)
    except SamBenchError as e:
        record["status"], record["error"] = "failed", str(e)
        log.error("%s", e)
    except Exception as e:  # unexpected: keep the traceback next to the record
        record["status"], record["error"] = "failed", f"{type(e).__name__}: {e}"
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
        log.exception("job failed")
    finally:
        if record["status"] != "dry_run":
            record["job"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            record["job"]["duration_s"] = time.time() - started
            write_json(job_dir / RESULT_FILE, record)
            write_rows_csv(job_dir / PER_IMAGE_FILE, rows or [{"image_id": None, "error": None}])
            tracker = build_tracker(cfg_node.get("tracking"))
            safely("logging the job", tracker.job_end, record, job_dir, sweep_dir)
    return record


def _execute(
    cfg: Config,
    dataset: Any,
    refs: list[Any],
    job_dir: Path,
    record: dict[str, Any],
    concurrent_jobs: int,
) -> list[dict[str, Any]]:
    """Build the model, run the task, fill ``record``; returns the per-image rows."""
    from sam_bench import environment
    from sam_bench.metrics.cost import PeakRSS
    from sam_bench.models.build import UNTRAINED_BANNER, build_model
    from sam_bench.tasks import JobContext, get_task

    # sam2 modules call torch.jit.script at import; torch >= 2.10 warns about it on every job.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")
    if not refs:
        raise SamBenchError(f"dataset {cfg.dataset.name!r} has no images")
    device = environment.resolve_device(cfg.device)
    record["environment"] = environment.describe(device, cfg.dtype)
    record["environment"]["concurrent_jobs"] = concurrent_jobs
    record["dataset"] = {
        "name": cfg.dataset.name,
        "format": cfg.dataset.format,
        "n_images": len(refs),
        "fingerprint": dataset.fingerprint(),
    }
    task_cls = get_task(cfg.task.name)
    rss = PeakRSS().start()
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    model, weights = build_model(cfg.model, device, cfg.seed, progress=cfg.progress)
    build_s = time.perf_counter() - t0
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
    if weights.untrained:
        record["banner"] = UNTRAINED_BANNER
        log.warning("%s", UNTRAINED_BANNER)
    ctx = JobContext(
        cfg=cfg,
        device=device,
        model=model,
        weights=weights,
        dataset=dataset,
        refs=refs,
        job_dir=job_dir,
    )
    result = task_cls(ctx).run()
    metrics = dict(result.metrics)
    metrics["peak_rss_mb"] = rss.stop()
    metrics["model_build_s"] = build_s
    record["environment"]["peak_rss_method"] = rss.method
    record["metrics"] = metrics
    record["task_info"] = result.info
    record["image_errors"] = result.image_errors
    n_ok = sum(1 for r in result.rows if r.get("error") is None)
    if n_ok == 0:
        record["status"] = "failed"
        record["error"] = f"all {len(result.rows)} images failed; first: " + (
            result.image_errors[0]["error"] if result.image_errors else "?"
        )
    else:
        record["status"] = "partial" if result.image_errors else "ok"
    return result.rows
