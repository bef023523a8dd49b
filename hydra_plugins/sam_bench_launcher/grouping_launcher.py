"""A launcher that shares work between jobs, then runs each job as Hydra does.

Before running anything it composes every job's config and asks :mod:`sam_bench.sweep_groups`
which jobs their task can compute together (AMG with ``engine=fast``: jobs differing only in
post-processing; prompted: only in prompt settings...): those are computed as one group, item
by item, with the shared stages once; every other job is a unit of its own.
Each job keeps its own directory, ``.hydra/`` files, log, record, summary row and tracking run.

Where the computation runs is ``hydra.launcher.backend``:

* ``local`` (default): in this process, like Hydra's basic launcher, one job after the other;
* ``ray``: each unit (a whole group, or a job alone) is one Ray task (``hydra.launcher.ray.*``);
* ``submitit``: each unit is one submitit job, on SLURM or, for tests, local processes
  (``hydra.launcher.submitit.*``).

Remote units write their jobs' records into the (shared) sweep folder exactly as the local
path does; this process then runs Hydra's per-job bookkeeping (``run_job``: ``.hydra/``,
logging, MLflow tracking) for each job as its unit finishes. See :mod:`sam_bench.remote`.
"""

# No `from __future__ import annotations` here: Hydra executes plugin modules without
# registering them in sys.modules, and @dataclass then cannot resolve string annotations.
# (Annotations inside functions are never evaluated, so `X | None` is fine there.)
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class RayBackendConf:
    """``hydra.launcher.backend=ray``: one Ray task per unit of work."""

    address: str | None = None
    """Where Ray runs. ``null``: start a Ray instance on this machine (``ray.init()``), or use
    the one this process already started; ``auto``: the cluster this machine is part of
    (started with ``ray start``); ``ray://HEAD:10001``: a remote cluster through Ray Client
    (the sweep folder must still be shared with its nodes)."""
    init: dict[str, Any] = field(default_factory=dict)
    """Other ``ray.init`` arguments, e.g. ``+hydra.launcher.ray.init.num_cpus=2``,
    ``+hydra.launcher.ray.init.include_dashboard=false``, ``runtime_env``. A Ray instance
    started here gets a 75 MB object store unless ``object_store_memory`` is given (units
    return only their records)."""
    num_cpus: float = 1
    """CPUs reserved per unit (Ray also sets the unit's thread count, ``OMP_NUM_THREADS``, to
    it, which changes CPU latency figures)."""
    num_gpus: Any = "auto"
    """GPUs reserved per unit. ``auto``: from the device of the unit's jobs -- ``device=cpu``
    none, ``cuda`` / ``cuda:N`` ``gpus_per_job``, ``auto`` ``gpus_per_job`` when the Ray
    instance has a GPU, else none; a number: that many for every unit. Ray sets the unit's
    ``CUDA_VISIBLE_DEVICES`` to the GPUs it reserved (none: every GPU hidden)."""
    gpus_per_job: float = 1
    """GPUs of a unit on CUDA when ``num_gpus=auto``: ``1`` a GPU of its own, ``0.5`` two
    units share one, ``0.25`` four (their timings then depend on each other)."""
    remote: dict[str, Any] = field(default_factory=dict)
    """Other ``ray.remote`` options per unit, e.g. ``+hydra.launcher.ray.remote.memory=8e9``,
    ``max_retries`` (Ray's default 3 reruns a unit whose worker died), ``resources``."""


@dataclass
class SubmititBackendConf:
    """``hydra.launcher.backend=submitit``: one submitit job per unit of work."""

    cluster: str = "slurm"
    """``slurm`` (needs ``sbatch``), ``local`` (processes on this machine: tests, one box) or
    ``auto`` (submitit's choice: SLURM when available)."""
    folder: str = "${hydra.sweep.dir}/.submitit/%j"
    """Where submitit keeps each job's pickles and logs (``%j``: the job id). It must be on the
    shared filesystem for SLURM."""
    partition: str | None = None
    """SLURM partition (``--partition``)."""
    account: str | None = None
    """SLURM account (``--account``)."""
    qos: str | None = None
    """SLURM quality of service (``--qos``)."""
    constraint: str | None = None
    """SLURM node constraint (``--constraint``, e.g. ``a100``)."""
    gpus_per_node: Any = "auto"
    """GPUs per unit (``--gpus-per-node``). ``auto``: from the device of the unit's jobs --
    ``cpu`` none, ``cuda`` / ``cuda:N`` 1, ``auto`` 1 on SLURM and, with ``cluster=local``, 1
    when this machine can use CUDA; a number: that many for every unit; ``null``: none
    requested (submitit hides every GPU from a local job without one)."""
    cpus_per_task: int | None = None
    """CPUs per unit (``--cpus-per-task``); ``null``: the cluster's default."""
    mem_gb: int | None = None
    """Memory per unit in GB (``--mem``); ``null``: the cluster's default."""
    timeout_min: int = 60
    """Time limit of one unit in minutes (``--time``): a group's limit covers all its jobs."""
    array_parallelism: int = 256
    """At most this many units of the sweep's job array run at once (``--array=...%N``)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before each unit (``module load cuda``, ``source .venv/bin/activate``)."""
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    """Other ``sbatch`` options (``{mail-type: END}``)."""
    poll_s: float = 5.0
    """How often (seconds) this process checks for finished units."""


@dataclass
class GroupingLauncherConf:
    _target_: str = "hydra_plugins.sam_bench_launcher.grouping_launcher.GroupingLauncher"
    backend: str = "local"
    """Where units of work run: ``local`` (this process), ``ray`` or ``submitit``."""
    ray: RayBackendConf = field(default_factory=RayBackendConf)
    """Settings of ``backend=ray``."""
    submitit: SubmititBackendConf = field(default_factory=SubmititBackendConf)
    """Settings of ``backend=submitit``."""


ConfigStore.instance().store(
    group="hydra/launcher", name="sam_bench", node=GroupingLauncherConf, provider="sam_bench"
)


class GroupingLauncher(Launcher):
    """Hydra's basic launcher plus sam_bench's sharing of encoder / decoder work, running the
    units of work here or on Ray / submitit."""

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings = settings
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from sam_bench.sweep_compose import compose_once

        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        compose_once(hydra_context.config_loader, config)  # not again after the sweeper's check

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from sam_bench.remote import launcher_settings

        setup_globals()
        assert self.hydra_context is not None
        assert self.config is not None
        assert self.task_function is not None
        settings = launcher_settings(self.config.hydra.launcher)  # fails before any job
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        where = "locally" if settings["backend"] == "local" else f"on {settings['backend']}"
        log.info(f"Launching {len(job_overrides)} jobs {where}")
        jobs = []
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            jobs.append((idx, overrides, sweep_config))
        if settings["backend"] != "local":
            return self._launch_remote(jobs, settings)

        from sam_bench import progress
        from sam_bench.sweep_groups import job_dir, plan, precompute_shared, share_encoder

        configs = [cfg for _, _, cfg in jobs]
        dirs = [job_dir(cfg) for cfg in configs]
        shown = bool(configs) and all(
            bool(cfg.get("progress", True)) and not cfg.get("dry_run") for cfg in configs
        )
        # a sweeper that launches in batches (Optuna: n_jobs trials at a time) keeps one bar
        # over its n_trials jobs
        planned = OmegaConf.select(self.config, "hydra.sweeper.n_trials", default=None)
        sweep_bar = progress.current_sweep()
        if sweep_bar is None or initial_job_idx == 0:
            total = planned if isinstance(planned, int) else None
            sweep_bar = progress.start_sweep(dirs, enabled=shown, total=total)
        else:
            sweep_bar.add(dirs)
        try:
            units = None  # each optimisation plans again if planning failed here
            try:
                units = plan(configs)
                share_encoder(configs, Path(str(self.config.hydra.sweep.dir)), units)
            except Exception as e:  # an optimisation: never lose a sweep to it
                log.warning("no in-sweep encoder cache (%s: %s)", type(e).__name__, e)
            try:
                precompute_shared(configs, Path(os.getcwd()), units)
            except Exception as e:  # never lose a sweep to the optimisation: jobs run alone
                log.warning(
                    "sharing work between jobs failed (%s: %s); jobs run alone",
                    type(e).__name__,
                    e,
                )
            returns = []
            for job, folder in zip(jobs, dirs, strict=True):
                returns.append(self._run(job))
                sweep_bar.finish(folder)
            return returns
        finally:
            if sweep_bar.complete or sys.exc_info()[0] is not None:
                progress.end_sweep()

    def _run(self, job: tuple[int, Sequence[str], DictConfig]) -> JobReturn:
        """Hydra's per-job part: directory, ``.hydra/``, logging, the task function (which
        only tracks a job computed ahead), callbacks."""
        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        idx, overrides, sweep_config = job
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        ret = run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=sweep_config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _launch_remote(
        self, jobs: list[tuple[int, Sequence[str], DictConfig]], settings: dict[str, Any]
    ) -> list[JobReturn]:
        """Send every unit of work to the backend, then do each job's bookkeeping here as its
        unit finishes. ``dry_run`` jobs only list themselves, here."""
        from sam_bench import remote
        from sam_bench.sweep_groups import job_spec, plan

        configs = [cfg for _, _, cfg in jobs]
        units = [u for u in plan(configs) if not configs[u[0]].get("dry_run")]
        returns: dict[int, JobReturn] = {}
        for i, cfg in enumerate(configs):
            if cfg.get("dry_run"):
                returns[i] = self._run(jobs[i])
        if not units:
            return [returns[i] for i in range(len(jobs))]
        backend = remote.make_backend(settings)
        try:
            backend.start([remote.unit_devices(configs[i] for i in unit) for unit in units])
            concurrent = backend.concurrency(len(units))
        except Exception as e:  # every job gets a failed record with the reason
            log.error("%s could not start: %s: %s", settings["backend"], type(e).__name__, e)
            failure = remote.RemoteError(f"{settings['backend']} could not start: {e}")
            for unit in units:
                for i in unit:
                    remote.adopt(remote.detached(job_spec(configs[i])), failure, 0)
                    returns[i] = self._run(jobs[i])
            return [returns[i] for i in range(len(jobs))]
        work = [
            remote.Unit(
                specs=[remote.detached(job_spec(configs[i], concurrent)) for i in unit],
                base_dir=os.getcwd(),
            )
            for unit in units
        ]
        for piece in work:
            log.info("%s -> %s", piece.label(), backend.describe())
        try:
            backend.submit(work)
            for k, outcome in backend.completed():
                for pos, i in enumerate(units[k]):
                    remote.adopt(work[k].specs[pos], outcome, pos)
                    returns[i] = self._run(jobs[i])
        except BaseException:
            backend.cancel()
            raise
        return [returns[i] for i in range(len(jobs))]
