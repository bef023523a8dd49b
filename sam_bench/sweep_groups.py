"""Which jobs of a sweep can share work, and computing them together.

Per-job output settings (:data:`PER_JOB_KEYS`, ``task.save_masks``) never prevent sharing; what
else may differ is the task's decision (:meth:`sam_bench.tasks.base.Task.group_key`): for AMG
with ``engine=fast``, the post-processing settings. Jobs with equal keys are computed as one
group, one item at a time (memory holds one item's intermediate results, not a dataset's); each
job keeps its own directory, record and summary row, and its latency counts the shared stages
in full.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sam_bench.run import JobSpec, precompute_group

log = logging.getLogger(__name__)

#: Top-level keys that only decide what a job writes or how fast, not what it computes. The
#: encoder cache (``cache``) never changes results or ``latency_ms_*``: jobs differing only
#: in ``cache.*`` are grouped and use the first job's cache that sets ``cache.dir``
#: (:func:`sam_bench.tasks.amg.task.open_encoder_cache`).
PER_JOB_KEYS = ("save_predictions", "tracking", "cache", "resume")


def task_config(sweep_config: DictConfig) -> DictConfig:
    """The job's config as its task function sees it (without the ``hydra`` node)."""
    cfg = copy.deepcopy(sweep_config)  # as hydra.core.utils.run_job does: keeps the schema
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def group_key(cfg: DictConfig) -> str | None:
    """Equal keys can be computed together; ``None``: the job runs alone."""
    from sam_bench import registry
    from sam_bench.tasks import get_task

    try:
        c: Any = OmegaConf.to_container(cfg, resolve=True)
        registry.import_plugins(c.get("plugins"))
        task_cls = get_task(str((c.get("task") or {}).get("name")))
    except Exception:  # broken interpolation, unknown task...: the job reports it itself
        return None
    if c.get("dry_run") or c.get("predictions"):
        return None
    for key in PER_JOB_KEYS:
        c.pop(key, None)
    c.get("task", {}).pop("save_masks", None)
    reduced = task_cls.group_key(c)
    return None if reduced is None else json.dumps(reduced, sort_keys=True, default=str)


def plan(sweep_configs: list[DictConfig]) -> list[list[int]]:
    """The sweep's units of work, as indices into ``sweep_configs``: each group of jobs with
    equal :func:`group_key` (computed together), and each other job alone. Units are ordered
    by their first job; a group's jobs keep their order."""
    groups: dict[str, list[int]] = defaultdict(list)
    units: list[list[int]] = []
    for i, sc in enumerate(sweep_configs):
        key = group_key(task_config(sc))
        if key is None:
            units.append([i])
        else:
            if key not in groups:
                units.append(groups[key])  # the same list: later members join it
            groups[key].append(i)
    return units


def job_spec(sweep_config: DictConfig, concurrent_jobs: int = 1) -> JobSpec:
    """The job as :func:`sam_bench.run.precompute_group` takes it. Its directory is
    ``hydra.sweep.dir`` / ``hydra.sweep.subdir`` made absolute, as Hydra's ``run_job`` makes
    ``hydra.runtime.output_dir`` (a job's ``job.dir`` is the same however it ran, and a remote
    worker needs no working directory to find it)."""
    sc = sweep_config
    sweep_dir = Path(str(sc.hydra.sweep.dir)).absolute()
    return JobSpec(
        cfg_node=task_config(sc),
        job_dir=job_dir(sc),
        overrides=list(sc.hydra.overrides.task),
        job_num=int(sc.hydra.job.num),
        sweep_dir=sweep_dir,
        concurrent_jobs=concurrent_jobs,
    )


def job_dir(sweep_config: DictConfig) -> Path:
    """The job's directory, as :func:`job_spec` gives it (without copying the config)."""
    hydra = sweep_config.hydra
    return Path(str(hydra.sweep.dir)).absolute() / str(hydra.sweep.subdir)


def _encoder_key(cfg: DictConfig) -> str | None:
    """What decides a job's encoder outputs (model, preprocessing, dataset, dtype, device), or
    ``None`` when the job cannot use the in-sweep encoder cache."""
    from sam_bench import registry
    from sam_bench.tasks import get_task

    try:
        c: Any = OmegaConf.to_container(cfg, resolve=True)
        registry.import_plugins(c.get("plugins"))
        spec = get_task(str((c.get("task") or {}).get("name"))).spec
    except Exception:  # the job reports it itself
        return None
    cache = c.get("cache") or {}
    if c.get("dry_run") or c.get("predictions") or not spec.encoder_cache:
        return None
    if cache.get("dir") is not None or not cache.get("in_sweep", True):
        return None
    if spec.uses_engine and c.get("engine") != "fast":
        return None
    keys = ("model", "preprocess", "dataset", "dtype", "device", "seed", "plugins")
    return json.dumps({k: c.get(k) for k in keys}, sort_keys=True, default=str)


def share_encoder(
    sweep_configs: list[DictConfig], sweep_dir: Path, units: list[list[int]] | None = None
) -> list[int]:
    """``cache.in_sweep``: units of work (groups, lone jobs) that encode the same images with
    the same model get ``cache.dir`` = the sweep's :data:`~sam_bench.layout.SWEEP_ENCODER_CACHE`,
    so the sweep pays one encoder pass per image instead of one per unit (results and
    ``latency_ms_*`` unchanged: see :mod:`sam_bench.engines.encoder_cache`). ``units``: the
    sweep's :func:`plan` when the caller has it (``cache.dir`` is no part of a group key, so
    the plan is the same before and after). Returns the jobs given the cache."""
    from sam_bench.layout import SWEEP_ENCODER_CACHE

    by_key: dict[str, list[list[int]]] = defaultdict(list)
    for unit in plan(sweep_configs) if units is None else units:
        key = _encoder_key(task_config(sweep_configs[unit[0]]))
        if key is not None:
            by_key[key].append(unit)
    shared = sorted(i for units in by_key.values() if len(units) > 1 for u in units for i in u)
    folder = str(sweep_dir.absolute() / SWEEP_ENCODER_CACHE)
    for i in shared:
        with open_dict(sweep_configs[i]):
            sweep_configs[i].cache.dir = folder
    if shared:
        log.info(
            "jobs %s encode the same images: one encoder pass per image through %s "
            "(removed at the sweep's end; cache.in_sweep=false to turn off)",
            ", ".join(
                f"#{OmegaConf.select(sweep_configs[i], 'hydra.job.num', default=i)}" for i in shared
            ),
            folder,
        )
    return shared


def precompute_shared(
    sweep_configs: list[DictConfig], base_dir: Path, units: list[list[int]] | None = None
) -> None:
    """Compute every group of two or more jobs ahead of Hydra running them (``units``: the
    sweep's :func:`plan`, when the caller has it)."""
    for unit in plan(sweep_configs) if units is None else units:
        if len(unit) < 2:
            continue
        specs = [job_spec(sweep_configs[i]) for i in unit]
        nums = ", ".join(f"#{s.job_num}" for s in specs)
        log.info("jobs %s share computation (their task computes them together)", nums)
        with quiet_root_logger():
            precompute_group(specs, base_dir)


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """sam2 logs every ``set_image`` at INFO on the root logger; jobs silence it through their
    logging config, the launcher's shared pass does it here (sam_bench's own INFO stays)."""
    root, ours = logging.getLogger(), logging.getLogger("sam_bench")
    levels = root.level, ours.level
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
