"""Command line: ``python -m sam_bench [-m] key=value ...`` (a Hydra app).

Thin on purpose: composition and sweeps are Hydra's, the job is :func:`sam_bench.run.run_job`,
the sweep summary is :class:`sam_bench.sweep_end.SweepSummaryCallback`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sam_bench.config import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """One job. Returns its finite objective (``objective.*`` settings) for sweepers."""
    from sam_bench.report.console import print_job
    from sam_bench.run import run_job
    from sam_bench.tracking import required

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    record = run_job(
        cfg,
        Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        job_num=hc.job.num if multirun else None,
        base_dir=Path(hc.runtime.cwd),
        sweep_dir=Path(hc.sweep.dir) if multirun else None,
        concurrent_jobs=concurrent_jobs(hc) if multirun else 1,
    )
    if record["status"] == "dry_run":
        return 0.0
    if not multirun:
        print_job(record)
        if record["status"] != "ok":
            sys.exit(1)
        if record.get("tracking_error") and required(cfg.get("tracking")):
            print(f"error: tracking: {record['tracking_error']} (the record is complete; "
                  "tracking.required=false makes this a warning)", file=sys.stderr)  # fmt: skip
            sys.exit(1)
    return float(record["metrics"]["objective"])


def concurrent_jobs(hc: Any) -> int:
    """How many jobs the launcher runs at once on one machine (jobs sharing a machine disturb
    each other's timings): joblib's ``n_jobs``; Hydra's Ray launcher: how many jobs'
    ``ray.remote`` resources fit on a node; Hydra's submitit launcher on SLURM: 1 (each job has
    its own allocation); 1 for the basic launcher."""
    import os

    launcher = hc.get("launcher")
    target = str(launcher.get("_target_") or "") if launcher is not None else ""
    if target.endswith("RayLauncher"):
        return _ray_jobs_per_node(launcher)
    if target.endswith("SlurmLauncher"):
        return 1
    n = launcher.get("n_jobs", 1) if launcher is not None else 1
    try:
        n = int(n)
    except (TypeError, ValueError):
        return 1
    return (os.cpu_count() or 1) + 1 + n if n < 0 else max(n, 1)  # joblib: -1 = all cores


def _ray_jobs_per_node(launcher: Any) -> int:
    """Jobs of Hydra's Ray launcher that fit on one node at once: the nodes of the Ray instance
    this job runs in (else the launcher's ``ray.init`` numbers, else this machine's CPUs) and
    one job's ``ray.remote`` resources (Ray's default: 1 CPU)."""
    import os

    from sam_bench.remote import units_per_node

    settings = launcher.get("ray") or {}
    remote, init = settings.get("remote") or {}, settings.get("init") or {}
    nodes: list[dict[str, float]] = []
    try:
        import ray

        if ray.is_initialized():
            nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
    except Exception:  # no Ray here, or the instance cannot be asked
        nodes = []
    if not nodes:
        cpus = init.get("num_cpus") or os.cpu_count() or 1
        nodes = [{"CPU": float(cpus), "GPU": float(init.get("num_gpus") or 0)}]
    cpu, gpu = float(remote.get("num_cpus") or 1), float(remote.get("num_gpus") or 0)
    return units_per_node(nodes, cpu, gpu, n_units=sys.maxsize)


def main() -> None:
    """Console-script entry point (``sam-bench``)."""
    app()


if __name__ == "__main__":
    main()
