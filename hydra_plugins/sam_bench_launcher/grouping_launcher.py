"""A local launcher that shares AMG work between jobs, then runs each job as Hydra does.

Like Hydra's basic launcher it runs the jobs of a batch one after the other in this process,
each with its own directory, ``.hydra/`` files, log and callbacks. Before that it composes
every job's config and asks :mod:`sam_bench.sweep_groups` to compute, image by image, the jobs
that differ only in AMG post-processing (``engine=fast``) with one encoder + decoder pass; each
of those jobs then only writes its outcome. Anything the grouping cannot handle runs alone.
"""

# No `from __future__ import annotations` here: Hydra executes plugin modules without
# registering them in sys.modules, and @dataclass then cannot resolve string annotations.
# (Annotations inside functions are never evaluated, so `X | None` is fine there.)
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class GroupingLauncherConf:
    _target_: str = "hydra_plugins.sam_bench_launcher.grouping_launcher.GroupingLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="sam_bench", node=GroupingLauncherConf, provider="sam_bench"
)


class GroupingLauncher(Launcher):
    """Hydra's basic launcher plus sam_bench's sharing of encoder / decoder work."""

    def __init__(self) -> None:
        super().__init__()
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        setup_globals()
        assert self.hydra_context is not None
        assert self.config is not None
        assert self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally")
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

        from sam_bench.sweep_groups import precompute_shared

        try:
            precompute_shared([cfg for _, _, cfg in jobs], Path(os.getcwd()))
        except Exception as e:  # never lose a sweep to the optimisation: jobs run alone
            log.warning(
                "sharing work between jobs failed (%s: %s); jobs run alone", type(e).__name__, e
            )

        runs: list[JobReturn] = []
        for idx, overrides, sweep_config in jobs:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            runs.append(
                run_job(
                    hydra_context=self.hydra_context,
                    task_function=self.task_function,
                    config=sweep_config,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
            )
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs
