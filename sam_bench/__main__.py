"""Command line: ``python -m sam_bench [-m] key=value ...`` (a Hydra app).

Thin on purpose: composition and sweeps are Hydra's, the job is :func:`sam_bench.run.run_job`,
the sweep summary is :class:`sam_bench.sweep_end.SweepSummaryCallback`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # ``python -m sam_bench``: before Hydra is imported (~0.3 s)
    from sam_bench.quiet import quiet_mlflow
    from sam_bench.tracking.worker import prestart

    quiet_mlflow()  # its environment variable, which the helper inherits
    prestart(sys.argv[1:])  # a single run's MLflow helper process, when one is expected

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sam_bench import heap
from sam_bench.config import register_configs
from sam_bench.ending import end_process
from sam_bench.quiet import quiet_mlflow

register_configs()
quiet_mlflow()  # MLflow's INFO lines only with MLFLOW_LOGGING_LEVEL=INFO


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float:
    """One job. Returns its finite objective (``objective.*`` settings) for sweepers."""
    from sam_bench.remote import concurrent_jobs
    from sam_bench.report.console import print_job
    from sam_bench.run import run_job
    from sam_bench.tracking import required

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    _SINGLE_RUN[0] = not multirun
    record = run_job(
        cfg,
        Path(hc.runtime.output_dir),
        overrides=list(hc.overrides.task),
        job_num=hc.job.num if multirun else None,
        base_dir=Path(hc.runtime.cwd),
        sweep_dir=Path(hc.sweep.dir) if multirun else None,
        concurrent_jobs=concurrent_jobs(hc) if multirun else 1,
        process_ends=not multirun,
    )
    if not multirun:
        # The process ends after this job (:func:`sam_bench.ending.end_process`); where it
        # ends the usual way (a thread still running), the shutdown skips the settled heap.
        heap.settle()
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


#: Whether the command ran a single job (set by :func:`app`): its process may end at once.
_SINGLE_RUN = [False]


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where the command is (as Ctrl-C raises KeyboardInterrupt)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def main() -> None:
    """Console-script entry point (``sam-bench``). Ctrl-C or SIGTERM stop it cleanly: the item
    in flight is abandoned (finished items stay in the job's journal), the sweep's tracking
    ends as killed, one line says how to resume, and the exit status is 130. After a single
    run the process ends at once (:func:`sam_bench.ending.end_process`): call it as a
    command, not from code that goes on afterwards."""
    import signal

    from sam_bench.tracking.worker import prestart

    prestart(sys.argv[1:])  # the console script (``python -m`` started it above)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except KeyboardInterrupt as e:
        from sam_bench.sweep_end import interrupted

        sys.exit(interrupted("SIGTERM" if isinstance(e, Interrupted) else "SIGINT"))
    except SystemExit as e:
        if not _SINGLE_RUN[0] or not isinstance(e.code, int | None):
            raise
        end_process(e.code or 0)
    if _SINGLE_RUN[0]:
        end_process(0)


if __name__ == "__main__":
    main()
