"""Sweeps beyond one machine: sam_bench's launcher sends each **unit of work** -- a group of
jobs that share an encoder / decoder pass (:func:`sam_bench.sweep_groups.plan`), or a job that
runs alone -- to Ray (one task per unit) or submitit (one SLURM job per unit), so a sweep on a
cluster still costs only its unique computation (``hydra.launcher.backend=ray|submitit``).

**Worker** (:func:`run_group`): computes its unit exactly as the local launcher does
(:func:`sam_bench.run.precompute_group`: item by item, per-item logs that survive a kill,
``resume=true`` reuse, each job's ``result.json`` and ``per_image.csv`` written atomically into
its directory of the sweep folder as soon as the group is done) and returns the records.

**Launching process** (:func:`adopt`, then Hydra's ``run_job``): as each unit finishes, checks
that its records are visible here, hands them to :func:`sam_bench.run.run_job`, which only
tracks them (MLflow child runs are created here, under the parent run of the sweep), and runs
Hydra's per-job bookkeeping. A unit whose worker failed or died gives each of its jobs a
failed record with the reason, so the summary names it and nothing is counted twice.

What remote workers need:

* the **sweep folder on a filesystem shared** with the launching process, at the same path
  (and the launch folder too when paths in the config -- datasets, ``cache.dir``, the sweep
  folder itself -- are relative to it);
* the same environment: sam_bench and the modules of ``plugins=[...]`` importable;
* **no MLflow access**: with this launcher, tracking stays in the launching process, so a local
  SQLite store works. Hydra's stock launchers (``hydra/launcher=ray`` on a cluster,
  ``submitit_slurm``) run the whole job, tracking included, on the worker: they need an MLflow
  server URI (:func:`tracking_store_warning`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from sam_bench.errors import ConfigError
from sam_bench.run import JobSpec

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray", "submitit")
SUBMITIT_CLUSTERS = ("slurm", "local", "auto")
#: Object store of a Ray instance started by the launcher (units return only records).
RAY_OBJECT_STORE_BYTES = 75 * 2**20
INSTALL_HINT = "pip install 'sam_bench[scale]' (make install-scale)"

# ---------------------------------------------------------------------------------------------
# settings


def _number(key: str, value: Any, low: float, *, strict: bool = False, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if value < low or (strict and value == low):
        raise ConfigError(key, f"must be {'>' if strict else '>='} {low:g}, got {value!r}")
    return value


def _mapping(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping of options, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _gpus_setting(key: str, value: Any, *, optional: bool = False) -> Any:
    """``auto`` (GPUs follow the device of a unit's jobs) or a number >= 0."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise ConfigError(key, f"must be auto or a number, got {value!r}")
    return _number(key, value, 0, optional=optional)


def launcher_settings(launcher_cfg: Any) -> dict[str, Any]:
    """``hydra.launcher`` of sam_bench's launcher as plain, checked settings:
    ``{"backend", "ray": {...}, "submitit": {...}}``. Raises :class:`ConfigError` naming the
    key (unknown backend, out-of-range value, option in the wrong place, engine not installed,
    ``cluster=slurm`` without ``sbatch``)."""
    raw = (
        OmegaConf.to_container(launcher_cfg, resolve=True)
        if isinstance(launcher_cfg, DictConfig)
        else copy.deepcopy(dict(launcher_cfg or {}))
    )
    assert isinstance(raw, dict)
    backend = raw.get("backend", "local")
    if backend not in BACKENDS:
        raise ConfigError(
            "hydra.launcher.backend", f"must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    out: dict[str, Any] = {"backend": backend}
    ray_cfg = _mapping("hydra.launcher.ray", raw.get("ray"))
    ray: dict[str, Any] = {
        "address": ray_cfg.get("address"),
        "init": _mapping("hydra.launcher.ray.init", ray_cfg.get("init")),
        "num_cpus": _number("hydra.launcher.ray.num_cpus", ray_cfg.get("num_cpus", 1), 0),
        "num_gpus": _gpus_setting("hydra.launcher.ray.num_gpus", ray_cfg.get("num_gpus", "auto")),
        "gpus_per_job": _number(
            "hydra.launcher.ray.gpus_per_job", ray_cfg.get("gpus_per_job", 1), 0, strict=True
        ),
        "remote": _mapping("hydra.launcher.ray.remote", ray_cfg.get("remote")),
    }
    if "address" in ray["init"]:
        raise ConfigError("hydra.launcher.ray.init.address", "use hydra.launcher.ray.address")
    for key in ("num_cpus", "num_gpus"):
        if key in ray["remote"]:
            raise ConfigError(f"hydra.launcher.ray.remote.{key}", f"use hydra.launcher.ray.{key}")
    out["ray"] = ray
    sub_cfg = _mapping("hydra.launcher.submitit", raw.get("submitit"))
    key = "hydra.launcher.submitit"
    sub: dict[str, Any] = {
        "cluster": sub_cfg.get("cluster", "slurm"),
        "folder": str(sub_cfg.get("folder") or ""),
        "partition": sub_cfg.get("partition"),
        "account": sub_cfg.get("account"),
        "qos": sub_cfg.get("qos"),
        "constraint": sub_cfg.get("constraint"),
        "gpus_per_node": _gpus_setting(f"{key}.gpus_per_node",
                                       sub_cfg.get("gpus_per_node", "auto"), optional=True),
        "cpus_per_task": _number(f"{key}.cpus_per_task", sub_cfg.get("cpus_per_task"), 1,
                                 optional=True),
        "mem_gb": _number(f"{key}.mem_gb", sub_cfg.get("mem_gb"), 0, strict=True, optional=True),
        "timeout_min": _number(f"{key}.timeout_min", sub_cfg.get("timeout_min", 60), 0,
                               strict=True),
        "array_parallelism": _number(f"{key}.array_parallelism",
                                     sub_cfg.get("array_parallelism", 256), 1),
        "setup": [str(line) for line in sub_cfg.get("setup") or []],
        "additional_parameters": _mapping(f"{key}.additional_parameters",
                                          sub_cfg.get("additional_parameters")),
        "poll_s": _number(f"{key}.poll_s", sub_cfg.get("poll_s", 5.0), 0, strict=True),
    }  # fmt: skip
    if sub["cluster"] not in SUBMITIT_CLUSTERS:
        raise ConfigError(
            f"{key}.cluster",
            f"must be one of {', '.join(SUBMITIT_CLUSTERS)}, got {sub['cluster']!r}",
        )
    out["submitit"] = sub
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("hydra.launcher.backend", f"ray is not installed: {INSTALL_HINT}")
    if backend == "submitit":
        if importlib.util.find_spec("submitit") is None:
            raise ConfigError(
                "hydra.launcher.backend", f"submitit is not installed: {INSTALL_HINT}"
            )
        if not sub["folder"]:
            raise ConfigError(f"{key}.folder", "must name a folder")
        if sub["cluster"] == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError(
                f"{key}.cluster",
                "slurm needs SLURM's sbatch on PATH, which this machine does not have; on one "
                "machine use hydra.launcher.submitit.cluster=local (or hydra.launcher.backend="
                "local)",
            )
    return out


# ---------------------------------------------------------------------------------------------
# the worker side


class RemoteError(Exception):
    """Remote execution failed for a reason its message alone explains."""


@dataclass
class Unit:
    """One unit of work as a worker receives it: the jobs of a group (or one job alone)."""

    specs: list[JobSpec]
    base_dir: str
    """The launching process's working directory (relative paths are taken from it)."""

    def label(self) -> str:
        nums = ", ".join(f"#{s.job_num}" for s in self.specs)
        return f"jobs {nums} (computed together)" if len(self.specs) > 1 else f"job {nums}"


@dataclass
class Outcome:
    """What a worker returns: each job's record (``None`` if it produced none), and where."""

    records: list[dict[str, Any] | None]
    host: str
    pid: int
    seconds: float
    errors: list[str] = field(default_factory=list)


def detached(spec: JobSpec) -> JobSpec:
    """``spec`` with its config resolved here (interpolations that need Hydra's state, such as
    ``${hydra:...}``, cannot be resolved on a worker). A config that fails to resolve is sent
    as it is: the job then reports the error itself."""
    cfg = copy.deepcopy(spec.cfg_node)
    with contextlib.suppress(Exception):
        OmegaConf.resolve(cfg)
    return JobSpec(
        cfg, spec.job_dir, list(spec.overrides), spec.job_num, spec.sweep_dir,
        spec.concurrent_jobs,
    )  # fmt: skip


def _worker_logging() -> None:
    """sam_bench's INFO messages to the worker's stderr (Ray forwards it to the launching
    terminal; submitit keeps it in its log folder), once per worker process."""
    ours = logging.getLogger("sam_bench")
    if any(getattr(h, "_sam_bench_worker", False) for h in ours.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    handler._sam_bench_worker = True  # type: ignore[attr-defined]
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


@contextlib.contextmanager
def _working_dir(unit: Unit) -> Iterator[None]:
    """Run in the launch folder when this host has it (relative paths mean the same); without
    it only absolute job folders can be reached."""
    base = Path(unit.base_dir)
    if not base.is_dir():
        relative = [str(s.job_dir) for s in unit.specs if not Path(s.job_dir).is_absolute()]
        if relative:
            raise FileNotFoundError(
                f"the launch folder {base} does not exist on {socket.gethostname()}, and the job "
                f"folder {relative[0]} is relative to it: run from a folder shared with the "
                "workers, or give an absolute hydra.sweep.dir on the shared filesystem"
            )
        yield
        return
    before = os.getcwd()
    os.chdir(base)
    try:
        yield
    finally:
        os.chdir(before)


def run_group(unit: Unit) -> Outcome:
    """The worker: compute the unit's jobs together and write their records into their
    folders, as the local launcher does; return the records. Runs in a Ray task or a submitit
    job (any process that can import sam_bench and the config's plugins)."""
    from sam_bench.run import precompute_group, take_precomputed
    from sam_bench.sweep_groups import quiet_root_logger

    _worker_logging()
    started = time.monotonic()
    host = socket.gethostname()
    with _working_dir(unit):
        log.info("%s: computing on %s (pid %d)", unit.label(), host, os.getpid())
        with quiet_root_logger():
            precompute_group(unit.specs, Path(unit.base_dir))
        records = [take_precomputed(s.job_dir) for s in unit.specs]
    return Outcome(records, host, os.getpid(), time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# the launching side


def failed_record(spec: JobSpec, error: str) -> dict[str, Any]:
    """A failed job's record, shaped as :func:`sam_bench.run.run_job` writes one for a job that
    failed before it started (config, overrides, job, status, error)."""
    from sam_bench.record import new_record
    from sam_bench.run import RUN_ONLY_OVERRIDES

    record = new_record()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["overrides"] = [
        o for o in spec.overrides if o.split("=", 1)[0].lstrip("+~") not in RUN_ONLY_OVERRIDES
    ]
    record["job"] = {"num": spec.job_num, "dir": str(spec.job_dir), "started": now,
                     "finished": now}  # fmt: skip
    try:
        record["config"] = OmegaConf.to_container(spec.cfg_node, resolve=True)
    except Exception:
        record["config"] = OmegaConf.to_container(spec.cfg_node, resolve=False)
    record["task"] = (record["config"].get("task") or {}).get("name")
    record["status"], record["error"] = "failed", error
    return record


def adopt(spec: JobSpec, outcome: Outcome | BaseException, position: int) -> dict[str, Any]:
    """Take one job's result from its unit's outcome and hand it to
    :func:`sam_bench.run.run_job` (called next, by Hydra), which then only tracks it.

    The record must be visible here, in the job's folder (the worker wrote it there). A job
    without one -- its worker failed or died, or the sweep folder is not shared -- gets a
    failed record written here, naming the reason. Returns the record."""
    from sam_bench.layout import RESULT_FILE
    from sam_bench.record import read_json_object
    from sam_bench.resume import FINISHED
    from sam_bench.run import put_precomputed, write_outcome

    job_dir = Path(spec.job_dir)
    on_disk = read_json_object(job_dir / RESULT_FILE)
    if isinstance(outcome, BaseException):
        why = (
            str(outcome)
            if isinstance(outcome, RemoteError)
            else f"the remote unit failed: {type(outcome).__name__}: {_first_lines(outcome)}"
        )
        if on_disk is not None and on_disk.get("status") in FINISHED:
            log.warning("job #%s: %s; its record was written before, kept", spec.job_num, why)
            put_precomputed(job_dir, on_disk)
            return on_disk
        record = failed_record(spec, why)
    else:
        found = outcome.records[position] if position < len(outcome.records) else None
        if found is not None and on_disk is not None:
            put_precomputed(job_dir, found)
            return found
        if found is None:
            why = f"the worker on {outcome.host} returned no record for this job"
        else:
            why = (
                f"the worker on {outcome.host} wrote {job_dir / RESULT_FILE}, which the launching "
                f"process on {socket.gethostname()} cannot see: the sweep folder must be on a "
                "filesystem shared with the workers, at the same path"
            )
        record = failed_record(spec, why)
    log.error("job #%s failed: %s", spec.job_num, record["error"])
    write_outcome(spec, record, [])
    put_precomputed(job_dir, record)
    return record


def _first_lines(error: BaseException, n: int = 6) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "(no message)"


class Backend(Protocol):
    """Runs units of work somewhere and reports them as they finish."""

    def start(self, devices: Sequence[Sequence[str]] = ()) -> None: ...
    def describe(self) -> str: ...
    def concurrency(self, n_units: int) -> int: ...
    def submit(self, units: list[Unit]) -> None: ...
    def completed(self) -> Iterator[tuple[int, Outcome | BaseException]]: ...
    def cancel(self) -> None: ...


def make_backend(settings: Mapping[str, Any]) -> Backend:
    """The backend of checked :func:`launcher_settings`."""
    if settings["backend"] == "ray":
        return RayBackend(settings["ray"])
    if settings["backend"] == "submitit":
        return SubmititBackend(settings["submitit"])
    raise ValueError(f"no remote backend for {settings['backend']!r}")


def unit_devices(configs: Iterator[Any] | Sequence[Any]) -> list[str]:
    """The ``device`` settings of a unit's job configs (distinct, in order)."""
    found = [str(OmegaConf.select(cfg, "device", default="auto") or "auto") for cfg in configs]
    return list(dict.fromkeys(found))


def unit_gpus(setting: Any, devices: Sequence[str], per_job: float, auto_uses_gpu: bool) -> float:
    """GPUs one unit reserves: a number ``setting`` as it is; ``auto``: what its jobs' devices
    need (:func:`sam_bench.environment.gpus_for_device`, the most of them; ``auto`` for a unit
    with no jobs listed)."""
    from sam_bench.environment import gpus_for_device

    if setting != "auto":
        return 0 if setting is None else setting
    return max(gpus_for_device(d, per_job, auto_uses_gpu) for d in (devices or ["auto"]))


def fits(resources: Mapping[str, float], num_cpus: float, num_gpus: float) -> bool:
    """Whether one unit (``num_cpus``, ``num_gpus``) fits on a node with ``resources``."""
    return all(
        float(resources.get(name, 0)) + 1e-9 >= need
        for name, need in (("CPU", num_cpus), ("GPU", num_gpus))
    )


def units_per_node(
    nodes: Sequence[Mapping[str, float]], num_cpus: float, num_gpus: float, n_units: int
) -> int:
    """How many units can run at once on one node (the busiest), given each node's resources
    (``{"CPU": 8, "GPU": 2}``) and what a unit reserves; at most ``n_units``, at least 1. This
    is the ``concurrent_jobs`` each record carries (jobs sharing a machine disturb each other's
    timings)."""
    best = 0
    for res in nodes:
        fits = [
            math.floor(float(res.get(name, 0)) / need + 1e-9)
            for name, need in (("CPU", num_cpus), ("GPU", num_gpus))
            if need > 0
        ]
        best = max(best, min(fits) if fits else n_units)
    return max(1, min(best, n_units))


class RayBackend:
    """One Ray task per unit (``ray.remote(run_group)``), collected with ``ray.wait``."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self._refs: dict[Any, int] = {}
        self._pending: list[Any] = []
        self._gpus: list[float] = []
        self._tasks: dict[float, Any] = {}

    def start(self, devices: Sequence[Sequence[str]] = ()) -> None:
        """Start (or join) Ray, and decide each unit's GPUs from ``devices`` (the devices of
        each unit's jobs, in submission order)."""
        import ray

        if not ray.is_initialized():
            address = self.settings["address"]
            init = dict(self.settings["init"])
            if address in (None, "local"):
                init.setdefault("object_store_memory", RAY_OBJECT_STORE_BYTES)
            log.info("starting Ray (address=%s, %s)", address, init or "defaults")
            ray.init(address=address, **init)
        nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
        has_gpu = any(float(res.get("GPU", 0)) > 0 for res in nodes)
        self._gpus = [
            unit_gpus(self.settings["num_gpus"], d, self.settings["gpus_per_job"], has_gpu)
            for d in (devices or [["auto"]])
        ]
        for gpus, unit_devs in dict(zip(self._gpus, devices or [["auto"]], strict=True)).items():
            self._check_fits(nodes, gpus, unit_devs)
            options = {"num_cpus": self.settings["num_cpus"], "num_gpus": gpus,
                       **self.settings["remote"]}  # fmt: skip
            self._tasks[gpus] = ray.remote(run_group).options(**options)

    def _check_fits(
        self, nodes: list[Mapping[str, float]], gpus: float, devices: Sequence[str]
    ) -> None:
        """A unit that fits on no node would wait forever: an error on a Ray instance started
        here (it cannot grow), a warning on a cluster (an autoscaler may add a node)."""
        cpus = self.settings["num_cpus"]
        if any(fits(res, cpus, gpus) for res in nodes):
            return
        have = "; ".join(f"{res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU" for res in nodes)
        key = "num_gpus" if gpus > 0 and all(fits(r, cpus, 0) for r in nodes) else "num_cpus"
        why = ""
        if key == "num_gpus" and self.settings["num_gpus"] == "auto":
            why = f" (device={', '.join(devices)}: a GPU per unit, gpus_per_job={gpus:g})"
        text = (
            f"one unit needs {cpus:g} CPU and {gpus:g} GPU{why}, and no node of the Ray cluster "
            f"has that (nodes: {have or 'none'})"
        )
        if self.settings["address"] in (None, "local"):
            raise ConfigError(f"hydra.launcher.ray.{key}", text)
        log.warning("ray: %s; units wait until the cluster has such a node", text)

    def describe(self) -> str:
        gpus = "/".join(f"{g:g}" for g in sorted(set(self._gpus)))
        return f"one Ray task ({self.settings['num_cpus']:g} CPU, {gpus} GPU)"

    def unit_gpus(self, index: int) -> float:
        """GPUs reserved for the unit at ``index`` (decided in :meth:`start`)."""
        return self._gpus[index] if index < len(self._gpus) else self._gpus[-1]

    def concurrency(self, n_units: int) -> int:
        import ray

        nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]
        return units_per_node(nodes, self.settings["num_cpus"], max(self._gpus), n_units)

    def submit(self, units: list[Unit]) -> None:
        for i, unit in enumerate(units):
            ref = self._tasks[self.unit_gpus(i)].remote(unit)
            self._refs[ref] = i
            self._pending.append(ref)

    def completed(self) -> Iterator[tuple[int, Outcome | BaseException]]:
        import ray

        while self._pending:
            done, self._pending = ray.wait(self._pending, num_returns=1)
            for ref in done:
                try:
                    result: Outcome | BaseException = ray.get(ref)
                except Exception as e:  # RayTaskError, WorkerCrashedError, ...
                    result = e
                yield self._refs[ref], result

    def cancel(self) -> None:
        import ray

        for ref in self._pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self._pending = []


class SubmititBackend:
    """One submitit job per unit, submitted as one job array (``map_array``)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self._jobs: list[Any] = []
        self._gpus: list[int] = []

    def parameters(self, gpus_per_node: int | None = None) -> dict[str, Any]:
        """``AutoExecutor.update_parameters`` arguments (``None``: not set) for units with
        ``gpus_per_node`` GPUs (0 or ``None``: none requested)."""
        s = self.settings
        params: dict[str, Any] = {
            "name": "sam_bench",
            "timeout_min": int(s["timeout_min"]),
            "gpus_per_node": gpus_per_node or None,
            "cpus_per_task": s["cpus_per_task"],
            "mem_gb": s["mem_gb"],
            "slurm_partition": s["partition"],
            "slurm_account": s["account"],
            "slurm_qos": s["qos"],
            "slurm_constraint": s["constraint"],
            "slurm_array_parallelism": int(s["array_parallelism"]),
            "slurm_additional_parameters": s["additional_parameters"] or None,
            "slurm_setup": s["setup"] or None,
            "local_setup": s["setup"] or None,
        }
        return {k: v for k, v in params.items() if v is not None}

    def start(self, devices: Sequence[Sequence[str]] = ()) -> None:
        """Create the executor, and decide each unit's GPUs from ``devices`` (the devices of
        each unit's jobs, in submission order): ``device=auto`` asks for a GPU on SLURM and,
        on this machine (``cluster=local``), when CUDA is usable here."""
        import submitit

        from sam_bench.environment import cuda_status

        cluster = None if self.settings["cluster"] == "auto" else self.settings["cluster"]
        self._executor = submitit.AutoExecutor(folder=self.settings["folder"], cluster=cluster)
        auto_gpu = self._executor.cluster != "local" or cuda_status().available
        setting = self.settings["gpus_per_node"]
        self._gpus = [int(unit_gpus(setting, d, 1, auto_gpu)) for d in (devices or [["auto"]])]
        self._executor.update_parameters(**self.parameters(self._gpus[0]))

    def describe(self) -> str:
        return f"one submitit job ({self._executor.cluster})"

    def concurrency(self, n_units: int) -> int:
        # local: every unit is a process on this machine at once; SLURM: each unit has its
        # own allocation (jobs on one node do not share its reserved CPUs / GPUs)
        return n_units if self._executor.cluster == "local" else 1

    def unit_gpus(self, index: int) -> int:
        """GPUs requested for the unit at ``index`` (decided in :meth:`start`)."""
        return self._gpus[index] if index < len(self._gpus) else self._gpus[-1]

    def submit(self, units: list[Unit]) -> None:
        """One job array per GPU count (SLURM's options hold for a whole array)."""
        jobs: list[Any] = [None] * len(units)
        for gpus in dict.fromkeys(self.unit_gpus(i) for i in range(len(units))):
            picked = [i for i in range(len(units)) if self.unit_gpus(i) == gpus]
            self._executor.update_parameters(**self.parameters(gpus))
            for i, job in zip(
                picked, self._executor.map_array(run_group, [units[i] for i in picked]), strict=True
            ):
                jobs[i] = job
        self._jobs = jobs
        log.info(
            "submitit: %d job(s) submitted; their logs: %s (%%j: the job id)",
            len(self._jobs),
            self.settings["folder"],
        )

    def completed(self) -> Iterator[tuple[int, Outcome | BaseException]]:
        import submitit

        index = {id(job): i for i, job in enumerate(self._jobs)}
        for job in submitit.helpers.as_completed(
            self._jobs, poll_frequency=self.settings["poll_s"]
        ):
            try:
                result: Outcome | BaseException = job.result()
            except Exception as e:  # FailedJobError / UncompletedJobError carry the log tail
                result = RuntimeError(f"submitit job {job.job_id} (logs: {job.paths.stderr}): {e}")
            yield index[id(job)], result

    def cancel(self) -> None:
        for job in self._jobs:
            with contextlib.suppress(Exception):
                if not job.done():
                    job.cancel(check=False)


# ---------------------------------------------------------------------------------------------
# tracking stores and stock launchers


def _loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def remote_jobs_reason(launcher_cfg: Mapping[str, Any]) -> str | None:
    """Why the jobs of this launcher may run, with their tracking, on other machines (Hydra's
    stock Ray launcher with a cluster address, Ray on AWS, SLURM), or ``None``. sam_bench's
    own launcher keeps tracking in the launching process whatever its backend."""
    target = str(launcher_cfg.get("_target_") or "")
    if target.endswith("SlurmLauncher"):
        return "hydra/launcher=submitit_slurm runs each job on a SLURM node"
    if target.endswith("RayAWSLauncher"):
        return "hydra/launcher=ray_aws runs each job on an AWS node"
    if target.endswith("hydra_ray_launcher.ray_launcher.RayLauncher"):
        ray_cfg = launcher_cfg.get("ray") or {}
        address = (ray_cfg.get("init") or {}).get("address")
        if address not in (None, "", "local") and not _loopback(str(address)):
            return f"hydra/launcher=ray with address {address} may run jobs on other nodes"
    return None


def local_store(uri: str) -> bool:
    """Whether an MLflow tracking URI is a file on this machine (SQLite, a folder)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def tracking_store_warning(config: Any) -> str | None:
    """The warning for a multirun whose jobs log to MLflow from other machines while the store
    is a local file (``None`` when there is nothing to say)."""
    from sam_bench.tracking.mlflow import resolve_uri

    tracking = OmegaConf.select(config, "tracking", default=None)
    if tracking is None or tracking.get("name") != "mlflow":
        return None
    launcher: Any = OmegaConf.to_container(config.hydra.launcher, resolve=False)
    reason = remote_jobs_reason(launcher)
    if reason is None:
        return None
    base = Path(str(OmegaConf.select(config, "hydra.runtime.cwd", default=None) or os.getcwd()))
    uri = resolve_uri(tracking.get("uri"), base)
    if not local_store(uri):
        return None
    return (
        f"tracking: {reason} and logs to MLflow from there, but the store {uri} is a file "
        "on this machine: other nodes see it only through a shared filesystem, where SQLite's "
        "locking is unreliable. Use an MLflow server (`mlflow server --host 0.0.0.0 "
        "--backend-store-uri sqlite:///mlflow.db`, then tracking.uri=http://HOST:5000), or "
        "sam_bench's launcher (hydra/launcher=sam_bench hydra.launcher.backend=ray|submitit), "
        "which tracks from the launching process"
    )


try:  # Hydra is a dependency; the callback is registered in conf/config.yaml
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]


def check_output_dir(path: str) -> None:
    """Exit with status 2 and one line naming ``path`` and the reason when the output folder
    cannot be created or written, before any job runs (else Hydra's own traceback)."""
    import tempfile

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sam_bench-write-check-"):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        print(f"error: cannot write the output folder {folder}: {reason}", file=sys.stderr)
        sys.exit(2)


class LauncherChecks(Callback):  # type: ignore[misc,valid-type]
    """Once per run or multirun, before the sweep's tracking starts: check that the output
    folder can be written, and sam_bench's launcher settings (either failing exits with status
    2 and one line, before any parent run or job exists), and warn when jobs would log to a
    local MLflow file from other machines."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_output_dir(str(config.hydra.sweep.dir))
        launcher = config.hydra.launcher
        if str(launcher.get("_target_") or "").endswith("GroupingLauncher"):
            try:
                settings = launcher_settings(launcher)
            except ConfigError as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)
            if settings["backend"] != "local" and not config.get("dry_run"):
                log.info(
                    "hydra.launcher.backend=%s: units of work run on %s and write their records "
                    "into %s (a folder the workers must share); tracking stays in this process",
                    settings["backend"], settings["backend"], config.hydra.sweep.dir,
                )  # fmt: skip
        text = tracking_store_warning(config)
        if text:
            log.warning("%s", text)


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
