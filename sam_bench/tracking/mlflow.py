"""``tracking=mlflow``: a parent run per multirun, a child run per job.

Layout in the store:

* one **experiment** per sweep preset: ``tracking.experiment``, else the preset's name
  (``sweep_name``), else ``sam_bench``; tagged ``mlflow.experimentKind=custom_model_development``
  (MLflow 3 UIs that read it open it on its runs, not on the GenAI view; 3.17's UI decides by
  its own GenAI / model-training switch, which :func:`runs_page` sets in the address printed at
  the sweep's end) and with the sweep's objective as primary metric
  (``mlflow.experiment.primaryMetric.name`` / ``.greaterIsBetter``).
* one **parent run** per multirun, created by :meth:`MlflowTracker.sweep_start` in the
  launching process before the first job, named after what the sweep varies and when it
  started (:func:`parent_run_name`), the swept settings as params (``amg.points_per_side`` =
  ``8,16``). Its id, the resolved tracking URI and the experiment id are written to
  ``SWEEP/.sam_bench_tracking.json`` (:data:`STATE_FILE`), so every job, in whatever process
  the launcher runs it (joblib workers included), logs into the same store and links to the
  same parent. :meth:`~MlflowTracker.sweep_end` logs the best value of each headline metric
  (``best/<metric>``, and the job that has it: ``best/<metric>/job``), a description, the
  summary, plots and report to it and ends it.
* one **child run** per job, created by :meth:`~MlflowTracker.job_end` with the tag
  ``mlflow.parentRunId``; it carries the flattened resolved config as params (dotted keys),
  the job's aggregate metrics, environment tags and the job's files as artifacts (its saved
  predictions too, with ``save_predictions=true``), and ends
  ``FINISHED``, or ``FAILED`` (with the error as tag ``error``) when the job failed.
* a single (non-multirun) run is one plain run.

Store: ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
directory the command was launched from (one store per sweep, never one per job directory).
SQLite and concurrent jobs: MLflow already sets a busy timeout on each session; on top of
that every store operation is retried with jittered exponential backoff while the store
reports itself busy ("database is locked"), for up to ``tracking.retry_timeout_s``.

``mlflow`` is imported lazily, so ``tracking=none`` never needs it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sam_bench.tracking import Objective, SweepOutcome

log = logging.getLogger(__name__)

T = TypeVar("T")

STATE_FILE = ".sam_bench_tracking.json"
"""In the sweep directory: ``{uri, experiment_id, experiment, parent_run_id, swept_keys}``
(or ``{error}`` when the parent run could not be created)."""

DEFAULT_DB = "mlflow.db"
DEFAULT_EXPERIMENT = "sam_bench"

# MLflow's limits (mlflow.utils.validation), repeated so this module imports without mlflow.
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_KEY_LENGTH = 250
MAX_RUN_NAME_LENGTH = 250

#: MLflow 3's UI opens an experiment of this kind on its runs (not the GenAI traces view).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: The experiment's primary metric (mlflow.utils.mlflow_tags), set to the sweep's objective.
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"
GREATER_IS_BETTER_TAG = "mlflow.experiment.primaryMetric.greaterIsBetter"
#: A run's description in MLflow's UI.
NOTE_TAG = "mlflow.note.content"
#: Parent metrics: ``best/<metric>`` and ``best/<metric>/job`` (the job's number).
BEST_PREFIX = "best/"

HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
#: Kinds of declared outputs (:mod:`sam_bench.layout`) not logged as artifacts: the journal
#: is gone once a job finishes; example masks follow ``tracking.log_masks``.
NOT_LOGGED = ("journal",)
EXAMPLE_KINDS = ("instance_examples",)

_TRANSIENT = re.compile(
    r"database is locked|database table is locked|database is busy|SQLITE_BUSY", re.IGNORECASE
)
_DUPLICATE = re.compile(
    r"UNIQUE constraint|IntegrityError|Duplicate entry|duplicate key", re.IGNORECASE
)
_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /:]")


# --------------------------------------------------------------------------------------------
# pure helpers (no mlflow)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b.c": leaf}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    elif prefix:
        out[prefix] = data
    return out


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with ``...`` when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def clean_key(key: str) -> str:
    """A valid MLflow param / metric / tag key (unsupported characters become ``_``)."""
    return truncate(_KEY_BAD_CHARS.sub("_", key), MAX_KEY_LENGTH)


def param_value(value: Any) -> str:
    """A param value as MLflow stores it: a string of at most ``MAX_PARAM_VAL_LENGTH``."""
    text = json.dumps(value, default=str) if isinstance(value, list | tuple | dict) else str(value)
    return truncate(text, MAX_PARAM_VAL_LENGTH)


def params_of(config: Mapping[str, Any]) -> dict[str, str]:
    """The flattened resolved config with dotted keys (``amg.points_per_side``, ...)."""
    return {clean_key(k): param_value(v) for k, v in flatten(config).items()}


def metrics_of(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every finite numeric aggregate metric (NaN, inf, null and non-numbers are skipped)."""
    out: dict[str, float] = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[clean_key(key)] = float(value)
    return out


def tags_of(record: Mapping[str, Any]) -> dict[str, str]:
    """Provenance tags of a job: git commit, versions, device, dtype, weights, CUDA extension,
    concurrent jobs, status and error."""
    env = record.get("environment") or {}
    weights = record.get("weights") or {}
    job = record.get("job") or {}
    dataset = record.get("dataset") or {}
    config = record.get("config") or {}
    model_cfg = config.get("model") or {}
    label = weights.get("label") or (
        "random" if weights.get("kind") == "random" else weights.get("sha256")
    )
    if label is None and model_cfg.get("weights") == "random":
        label = "random"  # failed before the model was built
    tags: dict[str, Any] = {
        "status": record.get("status"),
        "error": record.get("error"),
        "task": record.get("task"),
        "config_id": record.get("config_id"),
        "job_num": job.get("num"),
        "job_dir": job.get("dir"),
        "overrides": " ".join(record.get("overrides") or []),
        "weights": label,
        "weights_kind": weights.get("kind"),
        "weights_hash": weights.get("hash"),
        "untrained": record.get("untrained"),
        "model": model_cfg.get("name"),
        "dataset": dataset.get("name") or (config.get("dataset") or {}).get("name"),
        "dataset_fingerprint": dataset.get("fingerprint"),
        "git_commit": env.get("git_commit"),
        "git_dirty": env.get("git_dirty"),
        "sam_bench_version": env.get("sam_bench"),
        "python_version": env.get("python"),
        "torch_version": env.get("torch"),
        "torchvision_version": env.get("torchvision"),
        "sam2_version": env.get("sam2"),
        "numpy_version": env.get("numpy"),
        "device": env.get("device"),
        "device_name": env.get("device_name"),
        "cuda_version": env.get("cuda_version"),
        "cpu_model": env.get("cpu_model"),
        "torch_threads": env.get("torch_threads"),
        "dtype": env.get("dtype") or config.get("dtype"),
        "cuda_extension": env.get("cuda_extension"),
        "concurrent_jobs": env.get("concurrent_jobs"),
    }
    for k, v in (record.get("task_info") or {}).items():
        if isinstance(v, str | int | float | bool):
            tags[f"task_info.{k}"] = v
    if env.get("git_commit"):
        tags["mlflow.source.git.commit"] = env["git_commit"]
    return {
        clean_key(k): truncate(str(v), MAX_TAG_VAL_LENGTH) for k, v in tags.items() if v is not None
    }


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def absolute_uri(uri: str, base_dir: Path) -> str:
    """``uri`` with a relative SQLite database path (or a bare local path) made absolute
    against ``base_dir``, so processes with other working directories use the same store."""
    if uri.startswith("sqlite:///"):
        rest = uri[len("sqlite:///") :]
        path, sep, query = rest.partition("?")
        if path in ("", ":memory:") or path.startswith("/"):
            return uri
        return f"sqlite:///{(base_dir / path).resolve()}{sep}{query}"
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        return str((base_dir / uri).resolve())
    return uri


def resolve_uri(configured: str | None, base_dir: Path) -> str:
    """``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in
    ``base_dir`` (the launching directory); always absolute for local stores."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"
    return absolute_uri(uri, base_dir)


def experiment_name(configured: str | None, sweep_name: str | None) -> str:
    """``tracking.experiment``, else the sweep preset's name, else ``sam_bench``."""
    return configured or sweep_name or DEFAULT_EXPERIMENT


def sqlite_db_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].partition("?")[0]
    return None if path in ("", ":memory:") else Path(path)


@contextlib.contextmanager
def store_lock(db: Path) -> Iterator[None]:
    """An exclusive lock (``fcntl.flock``) on ``<db>.lock`` while the store is opened; where
    file locks are not available the store is opened without one."""
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` means "the store is busy, try again" (SQLite locking)."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if _TRANSIENT.search(str(e)):
            return True
        if getattr(e, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            return True
        e = e.__cause__ or e.__context__
    return False


def retry(
    fn: Callable[..., T],
    *args: Any,
    timeout_s: float = 120.0,
    first_delay_s: float = 0.05,
    max_delay_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, retried with jittered exponential backoff while it raises a
    transient (busy store) error, for up to ``timeout_s``; other errors propagate at once."""
    deadline = time.monotonic() + timeout_s
    delay = first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not is_transient(e) or time.monotonic() + delay > deadline:
                raise
            log.debug("tracking: store busy (%s), retry %d in %.2fs", e, attempt, delay)
            sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, max_delay_s)


def launch_dir() -> Path:
    """The directory the command was launched from (Hydra's ``runtime.cwd``, else cwd)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except Exception:
        pass
    return Path.cwd()


def read_state(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's tracking state written by ``sweep_start`` (``None`` when absent)."""
    path = Path(sweep_dir) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_state(sweep_dir: Path, state: Mapping[str, Any]) -> None:
    from sam_bench.record import write_json

    write_json(Path(sweep_dir) / STATE_FILE, state)


def swept_keys(task_overrides: list[str]) -> list[str]:
    """Keys the sweep varies (``a=1,2``, ``glob(...)``, ``range(...)``)."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(list(task_overrides))
        return [o.get_key_element() for o in parsed if o.is_sweep_override()]
    except Exception:
        return [o.split("=", 1)[0] for o in task_overrides if "," in o.partition("=")[2]]


def swept_settings(
    task_overrides: list[str], sweeper_params: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """What a sweep varies, key -> the values as written (``{"amg.points_per_side": "8,16"}``):
    the sweeper's ``params`` (a preset's, Optuna's ``choice(...)`` / ``interval(...)``), then
    the command line's sweep overrides, which replace them; a plain command-line value of a
    preset's key fixes it (no longer swept)."""
    out = {str(k): str(v) for k, v in (sweeper_params or {}).items()}
    swept = set(swept_keys(task_overrides))
    for item in task_overrides:
        key, _, value = item.partition("=")
        bare = key.lstrip("+~")
        if key in swept or bare in swept:
            out.pop(bare, None)
            out[bare] = value
        else:
            out.pop(bare, None)
    return out


def parent_run_name(sweep_name: str | None, swept: Mapping[str, str], started: datetime) -> str:
    """``quickstart 2026-12-06 18:40:01: amg.points_per_side=8,16 amg.pred_iou_thresh=0.0,0.5``:
    the preset (or ``sweep``), when it started (local time), and what it varies."""
    what = " ".join(f"{k}={v}" for k, v in swept.items()) or "nothing swept"
    head = f"{sweep_name or 'sweep'} {started.strftime('%Y-%m-%d %H:%M:%S')}: "
    return truncate(head + what, MAX_RUN_NAME_LENGTH)


def runs_page(experiment_id: str) -> str:
    """The experiment's runs page, relative to the MLflow server's root. MLflow 3.17's UI has
    a GenAI / model-training switch (default GenAI, kept in the browser) that decides the view
    over the experiment's kind tag: ``workflowType=machine_learning`` selects the runs."""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def best_metrics(outcome: SweepOutcome) -> dict[str, float]:
    """Parent metrics: ``best/<metric>`` (its best value) and ``best/<metric>/job`` (the job's
    number, when the job folder is one)."""
    out: dict[str, float] = {}
    for b in outcome.best:
        if not math.isfinite(b.value):
            continue
        out[clean_key(f"{BEST_PREFIX}{b.metric}")] = float(b.value)
        if b.job.isdigit():
            out[clean_key(f"{BEST_PREFIX}{b.metric}/job")] = float(b.job)
    return out


def parent_note(
    swept: Mapping[str, str], rows: list[dict[str, Any]], outcome: SweepOutcome | None
) -> str:
    """The parent run's description (Markdown): what was swept, how the jobs ended, the
    random-weights warning, and the best job of each headline metric."""
    n_ok = sum(str(r.get("status")) == "ok" for r in rows)
    what = ", ".join(f"`{k}={v}`" for k, v in swept.items()) or "one configuration"
    counts = f"{len(rows)} job(s), {n_ok} ok" + (
        f", {len(rows) - n_ok} not ok" if len(rows) > n_ok else ""
    )
    lines = [f"sam_bench sweep of {what}: " + (counts if rows else "running") + "."]
    if outcome is not None and outcome.untrained:
        lines.append("")
        lines.append("**UNTRAINED MODEL (random weights): accuracy figures are meaningless.**")
    if outcome is not None and outcome.best:
        lines.append("")
        lines.append("Best job per metric:")
        lines.append("")
        for b in outcome.best:
            goal = "higher" if b.greater_is_better else "lower"
            lines.append(f"- `{b.metric}` ({goal} is better): {b.value:.6g}, job {b.label}")
    if outcome is not None and outcome.objective is not None:
        lines.append("")
        lines.append(f"Objective: `{outcome.objective.metric}`.")
    return truncate("\n".join(lines), MAX_TAG_VAL_LENGTH)


def child_run_name(record: Mapping[str, Any], keys: list[str] | None) -> str:
    """``#<num> key=value ...`` with the swept overrides of a sweep's job (``keys``: the swept
    keys); ``run key=value ...`` with all overrides of a single run (``keys`` ``None``)."""
    num = (record.get("job") or {}).get("num")
    overrides = list(record.get("overrides") or [])
    if keys is not None:
        wanted = {k.lstrip("+~") for k in keys}
        overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in wanted]
    name = " ".join([f"#{num}" if num is not None else "run", *overrides])
    return truncate(name, MAX_RUN_NAME_LENGTH)


def _millis(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


# --------------------------------------------------------------------------------------------
# the tracker


class MlflowTracker:
    """Logs sweeps and jobs to MLflow (see the module docstring)."""

    def __init__(self, tracking_cfg: Any) -> None:
        get = (
            tracking_cfg.get
            if isinstance(tracking_cfg, Mapping) or hasattr(tracking_cfg, "get")
            else lambda k, d=None: getattr(tracking_cfg, k, d)
        )
        self.uri_cfg: str | None = get("uri", None)
        self.experiment_cfg: str | None = get("experiment", None)
        self.log_masks: bool = bool(get("log_masks", True))
        self.retry_timeout_s: float = float(get("retry_timeout_s", 120.0))

    # -- mlflow plumbing

    def _client(self, uri: str) -> Any:
        from mlflow.tracking import MlflowClient

        db = sqlite_db_path(uri)
        if db is None:
            return MlflowClient(tracking_uri=uri)
        # Opening the store creates a new SQLite file's tables and runs its migrations. Two
        # processes doing that at once race (the loser logs nothing), so every process opens
        # the store under a lock file beside the database.
        with store_lock(db):
            client = MlflowClient(tracking_uri=uri)
            self._retry(client.search_experiments, max_results=1)
        return client

    def open_store(self, uri: str) -> None:
        """Import MLflow and open the store at ``uri`` (MLflow keeps it open for the process:
        the logging that follows does not open it again). Raises what opening raises."""
        self._client(uri)

    def _retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return retry(fn, *args, timeout_s=self.retry_timeout_s, **kwargs)

    def _experiment_id(self, client: Any, uri: str, name: str) -> str:
        """Id of the experiment ``name``, created when missing (race-safe)."""
        exp = self._retry(client.get_experiment_by_name, name)
        if exp is None:
            location = None
            db = sqlite_db_path(uri)
            if db is not None:  # artifacts next to the database, not in the cwd
                location = (db.parent / "mlruns" / _slug(name)).as_uri()
            try:
                return str(self._retry(client.create_experiment, name, artifact_location=location))
            except Exception as e:
                if "RESOURCE_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                    raise
                exp = self._retry(client.get_experiment_by_name, name)  # created concurrently
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            raise RuntimeError(
                f"MLflow experiment {name!r} is deleted; restore it "
                f"(`mlflow experiments restore --experiment-id {exp.experiment_id}`) or set "
                "tracking.experiment"
            )
        return str(exp.experiment_id)

    def _log_batch(
        self,
        client: Any,
        run_id: str,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params, metrics, tags = params or {}, metrics or {}, tags or {}
        now = int(time.time() * 1000)
        param_list = [Param(k, v) for k, v in params.items()]
        for p_batch in chunks(param_list, MAX_PARAMS_TAGS_PER_BATCH):
            self._retry(client.log_batch, run_id, params=p_batch)
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        for t_batch in chunks(tag_list, MAX_PARAMS_TAGS_PER_BATCH):
            self._retry(client.log_batch, run_id, tags=t_batch)
        metric_list = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for m_batch in chunks(metric_list, MAX_METRICS_PER_BATCH):
            self._retry(client.log_batch, run_id, metrics=m_batch)

    def _log_path(self, client: Any, run_id: str, path: Path, artifact_path: str | None) -> None:
        if path.is_dir():
            if any(path.iterdir()):
                self._retry(client.log_artifacts, run_id, str(path), artifact_path)
        elif path.is_file():
            self._retry(client.log_artifact, run_id, str(path), artifact_path)

    @staticmethod
    def _base_tags() -> dict[str, str]:
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return {
            "mlflow.user": user,
            "mlflow.source.name": "sam_bench",
            "mlflow.source.type": "LOCAL",
        }

    # -- Tracker protocol

    def _tag_experiment(
        self, client: Any, uri: str, exp_id: str, objective: Objective | None
    ) -> None:
        """MLflow 3's UI opens the experiment on its runs; the sweep's objective is its
        primary metric (MLflow's own tag values: ``True`` / ``False``). Only tags that differ
        are written, under the store's lock for SQLite. MLflow writes an experiment tag by
        reading then inserting it: two sweeps starting at once on a server's database could
        both insert; such a unique-key collision is read again and retried."""
        wanted = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        if objective is not None:
            wanted[PRIMARY_METRIC_TAG] = objective.metric
            wanted[GREATER_IS_BETTER_TAG] = str(bool(objective.greater_is_better))
        db = sqlite_db_path(uri)
        with store_lock(db) if db is not None else contextlib.nullcontext():
            for attempt in range(3):
                tags = self._retry(client.get_experiment, exp_id).tags or {}
                try:
                    for key, value in wanted.items():
                        if tags.get(key) != value:
                            self._retry(client.set_experiment_tag, exp_id, key, value)
                    return
                except Exception as e:
                    if attempt == 2 or not _DUPLICATE.search(str(e)):
                        raise
                    log.debug("tracking: experiment tag written concurrently (%s), again", e)

    def sweep_start(self, sweep_dir: Path, config: Any, objective: Objective | None = None) -> None:
        """Create the parent run and write ``SWEEP/.sam_bench_tracking.json``."""
        from omegaconf import OmegaConf

        if OmegaConf.select(config, "dry_run", default=False):
            return
        sweep_dir = Path(sweep_dir)
        resume = OmegaConf.select(config, "resume", default=False)
        if resume and self._resume_parent(sweep_dir, objective):
            return
        base = Path(OmegaConf.select(config, "hydra.runtime.cwd", default=None) or launch_dir())
        uri = resolve_uri(self.uri_cfg, base)
        name = experiment_name(self.experiment_cfg, OmegaConf.select(config, "sweep_name"))
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=None) or [])
        swept = swept_settings(overrides, _sweeper_params(config))
        try:
            client = self._client(uri)
            exp_id = self._experiment_id(client, uri, name)
            self._tag_experiment(client, uri, exp_id, objective)
            sweep_name = OmegaConf.select(config, "sweep_name", default=None)
            tags = {
                **self._base_tags(),
                "sam_bench.role": "sweep",
                "sweep_dir": str(sweep_dir.resolve()),
                "sweep_name": sweep_name or "",
                "overrides": " ".join(overrides),
                "swept": " ".join(swept),
                "launcher": str(OmegaConf.select(config, "hydra.launcher._target_") or ""),
                "concurrent_jobs": str(_concurrent_jobs(config)),
                NOTE_TAG: parent_note(swept, [], None),
            }
            tags = {k: truncate(v, MAX_TAG_VAL_LENGTH) for k, v in tags.items() if v != ""}
            run = self._retry(
                client.create_run,
                exp_id,
                run_name=parent_run_name(sweep_name, swept, datetime.now()),
                tags=tags,
            )
            params = {clean_key(k): truncate(v, MAX_PARAM_VAL_LENGTH) for k, v in swept.items()}
            self._log_batch(client, run.info.run_id, params=params)
        except Exception as e:
            # Jobs read this and skip MLflow quickly instead of each failing slowly.
            write_state(sweep_dir, {"uri": uri, "error": f"{type(e).__name__}: {e}"})
            raise
        write_state(
            sweep_dir,
            {
                "uri": uri,
                "experiment": name,
                "experiment_id": exp_id,
                "parent_run_id": run.info.run_id,
                "parent_run_name": run.info.run_name,
                "swept_keys": list(swept),
                "swept": swept,
            },
        )
        hint = f"; view: mlflow ui --backend-store-uri {uri}" if sqlite_db_path(uri) else ""
        log.info("tracking: MLflow parent run %s in %s (%s)%s", run.info.run_id, name, uri, hint)

    def _resume_parent(self, sweep_dir: Path, objective: Objective | None = None) -> bool:
        """``resume=true``: keep the sweep's parent run (running again), and mark the child
        runs a kill left RUNNING as KILLED. ``False`` when there is no parent to resume."""
        state = read_state(sweep_dir)
        if not state or state.get("error") or not state.get("parent_run_id"):
            return False
        client = self._client(state["uri"])
        parent = state["parent_run_id"]
        try:
            self._retry(client.get_run, parent)
        except Exception as e:
            log.warning("tracking: the sweep's parent run %s is gone (%s); a new one", parent, e)
            return False
        self._retry(client.update_run, parent, status="RUNNING")
        self._tag_experiment(client, state["uri"], state["experiment_id"], objective)
        query = f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'"
        stale = self._retry(client.search_runs, [state["experiment_id"]], query)
        for run in stale:
            self._retry(client.set_terminated, run.info.run_id, "KILLED")
        log.info(
            "tracking: resuming MLflow parent run %s (%d interrupted child run(s) marked KILLED)",
            parent,
            len(stale),
        )
        return True

    def _already_logged(self, client: Any, state: dict[str, Any], record: dict[str, Any],
                        job_dir: Path) -> bool:  # fmt: skip
        """Whether this configuration already has a FINISHED child run (a resumed sweep)."""
        query = (
            f"tags.mlflow.parentRunId = '{state['parent_run_id']}' and "
            f"tags.job_dir = '{job_dir}' and attributes.status = 'FINISHED'"
        )
        runs = self._retry(client.search_runs, [state["experiment_id"]], query)
        return any(r.data.tags.get("config_id") == record.get("config_id") for r in runs)

    def job_end(self, record: dict[str, Any], job_dir: Path, sweep_dir: Path | None) -> None:
        """One child run (or a plain run for a single run) with params, metrics, tags,
        artifacts; FAILED with the error as tag when the job failed. A configuration reused by
        ``resume=true`` that already has its FINISHED child run is not logged twice."""
        from mlflow.entities import RunStatus

        job_dir = Path(job_dir)
        state = read_state(sweep_dir) if sweep_dir is not None else None
        if state is not None and state.get("error"):
            log.warning("tracking: MLflow disabled for this sweep: %s", state["error"])
            return
        reused = bool((record.get("job") or {}).get("reused"))
        if (
            state is not None
            and reused
            and self._already_logged(self._client(state["uri"]), state, record, job_dir)
        ):
            return
        config = record.get("config") or {}
        tags = {**self._base_tags(), "sam_bench.role": "job", **tags_of(record)}
        if state is not None:
            uri, exp_id = state["uri"], state["experiment_id"]
            client = self._client(uri)
            tags["mlflow.parentRunId"] = state["parent_run_id"]
            tags["sweep_dir"] = str(Path(sweep_dir).resolve())  # type: ignore[arg-type]
            run_name = child_run_name(record, state.get("swept_keys") or [])
        else:  # single run, or a sweep whose parent could not be recorded
            uri = resolve_uri(self.uri_cfg, launch_dir())
            client = self._client(uri)
            exp_id = self._experiment_id(
                client, uri, experiment_name(self.experiment_cfg, config.get("sweep_name"))
            )
            if sweep_dir is not None:
                tags["sweep_dir"] = str(Path(sweep_dir).resolve())
            run_name = child_run_name(record, None if sweep_dir is None else [])
        job = record.get("job") or {}
        run = self._retry(
            client.create_run,
            exp_id,
            start_time=_millis(job.get("started")),
            tags=tags,
            run_name=run_name,
        )
        run_id = run.info.run_id
        try:
            metrics = metrics_of(record.get("metrics") or {})
            if isinstance(job.get("duration_s"), int | float):
                metrics.setdefault("job_duration_s", float(job["duration_s"]))
            self._log_batch(client, run_id, params=params_of(config), metrics=metrics)
            for rel, folder in artifact_paths(record, log_masks=self.log_masks):
                self._log_path(client, run_id, job_dir / rel, folder)
            for name in HYDRA_FILES:
                self._log_path(client, run_id, job_dir / ".hydra" / name, "hydra")
        except BaseException as e:
            self._fail(client, run_id, f"tracking: {type(e).__name__}: {e}")
            raise
        failed = record.get("status") == "failed"
        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        end = _millis(job.get("finished"))
        self._retry(client.set_terminated, run_id, status, end_time=end)

    def _fail(self, client: Any, run_id: str, why: str) -> None:
        """End ``run_id`` FAILED with ``why`` as tag ``tracking_error`` (best effort)."""
        try:
            self._retry(client.set_tag, run_id, "tracking_error", truncate(why, MAX_TAG_VAL_LENGTH))
            self._retry(client.set_terminated, run_id, "FAILED")
        except Exception as e:
            log.warning("tracking: could not mark run %s failed: %s", run_id, e)

    def sweep_end(
        self,
        sweep_dir: Path,
        rows: list[dict[str, Any]],
        files: list[Path],
        outcome: SweepOutcome | None = None,
    ) -> None:
        """Log the best value of each headline metric (``best/<metric>``, ``best/<metric>/job``),
        counts, a description, the summary files (and ``multirun.yaml``) to the parent run and
        end it; the objective of the records becomes the experiment's primary metric."""
        from mlflow.entities import RunStatus

        sweep_dir = Path(sweep_dir)
        state = read_state(sweep_dir)
        if state is None or state.get("error") or not state.get("parent_run_id"):
            return
        client = self._client(state["uri"])
        run_id = state["parent_run_id"]
        statuses = [str(r.get("status")) for r in rows]
        swept = state.get("swept") or {k: "" for k in state.get("swept_keys") or []}
        tags = {
            "n_jobs": str(len(rows)),
            "n_ok": str(statuses.count("ok")),
            "n_failed": str(statuses.count("failed")),
            "n_partial": str(statuses.count("partial")),
            NOTE_TAG: parent_note(swept, rows, outcome),
        }
        metrics: dict[str, float] = {}
        if outcome is not None:
            tags["untrained"] = str(outcome.untrained)
            metrics = best_metrics(outcome)
            for b in outcome.best:
                tags[clean_key(f"{BEST_PREFIX}{b.metric}")] = truncate(b.label, MAX_TAG_VAL_LENGTH)
        try:
            self._log_batch(client, run_id, metrics=metrics, tags=tags)
            if outcome is not None and outcome.objective is not None:
                self._tag_experiment(
                    client, state["uri"], state["experiment_id"], outcome.objective
                )
            for path in [*files, sweep_dir / "multirun.yaml"]:
                self._log_path(client, run_id, Path(path), _folder_in(sweep_dir, Path(path)))
        except BaseException as e:
            self._fail(client, run_id, f"tracking: {type(e).__name__}: {e}")
            raise
        self._retry(client.set_terminated, run_id, RunStatus.to_string(RunStatus.FINISHED))

    def where(self, sweep_dir: Path) -> list[str]:
        """Where the sweep's parent run is and how to open it (``mlflow ui`` for a local
        store, the run's page for a server)."""
        state = read_state(Path(sweep_dir))
        if state is None or state.get("error") or not state.get("parent_run_id"):
            return []
        uri, exp_id, run_id = state["uri"], state["experiment_id"], state["parent_run_id"]
        page = runs_page(exp_id)
        head = f"MLflow: experiment {state.get('experiment')!r}, parent run {run_id}"
        if state.get("parent_run_name"):
            head += f" {state['parent_run_name']!r}"
        if uri.startswith(("http://", "https://")):
            return [head, f"  open: {uri.rstrip('/')}/{page}"]
        return [
            f"{head} in {uri}",
            f"  open: mlflow ui --backend-store-uri {uri}  then  http://127.0.0.1:5000/{page}",
        ]

    def sweep_interrupted(self, sweep_dir: Path) -> None:
        """End the parent run as KILLED (``resume=true`` sets it running again)."""
        state = read_state(Path(sweep_dir))
        if state is None or state.get("error") or not state.get("parent_run_id"):
            return
        client = self._client(state["uri"])
        self._retry(client.set_terminated, state["parent_run_id"], "KILLED")


def artifact_paths(record: dict[str, Any], *, log_masks: bool) -> list[tuple[Path, str | None]]:
    """What a child run logs: every output the record declares (its kind says what it is:
    :func:`sam_bench.layout.declared_outputs`; example masks only with ``log_masks``), the
    traceback of a crashed job, and the figures the record names; each as (path relative to
    the job folder, artifact folder or ``None`` for the run's root)."""
    from sam_bench.layout import RUNNER_OUTPUTS, TRACEBACK_FILE, declared_outputs

    outputs = [*RUNNER_OUTPUTS[:2], *declared_outputs(record)]
    found: list[tuple[Path, str | None]] = [(Path(TRACEBACK_FILE), None)]
    for o in outputs:
        if o.kind in NOT_LOGGED or (o.kind in EXAMPLE_KINDS and not log_masks):
            continue
        rel = Path(o.path.rstrip("/"))
        parent = rel.parent.as_posix()
        folder = rel.as_posix() if o.is_dir else (None if parent == "." else parent)
        found.append((rel, folder))
    for rel in figure_paths(record):
        parent = rel.parent.as_posix()
        found.append((rel, None if parent == "." else parent))
    return list(dict.fromkeys(found))


def figure_paths(record: dict[str, Any]) -> list[Path]:
    """The figures a job's record names (``figures``: paths relative to the job directory;
    anything absolute or leading out of it is ignored)."""
    out = []
    for fig in record.get("figures") or []:
        rel = Path(str(fig.get("path") or "")) if isinstance(fig, dict) else Path()
        if rel.parts and not rel.is_absolute() and ".." not in rel.parts:
            out.append(rel)
    return out


def _sweeper_params(config: Any) -> dict[str, str]:
    """What a sweep preset varies through ``hydra.sweeper.params`` (key -> values as written)."""
    from omegaconf import OmegaConf

    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    return {str(k): str(v) for k, v in params.items()} if params else {}


def _folder_in(sweep_dir: Path, path: Path) -> str | None:
    """The artifact folder of a sweep-level file: its folder inside the sweep directory
    (``plots``), ``None`` for the run's root."""
    try:
        parent = path.resolve().parent.relative_to(sweep_dir.resolve()).as_posix()
    except ValueError:
        return None
    return None if parent == "." else parent


def _concurrent_jobs(config: Any) -> int:
    """Jobs the launcher runs at once (joblib ``n_jobs``; 1 for the basic launcher)."""
    from omegaconf import OmegaConf

    n = OmegaConf.select(config, "hydra.launcher.n_jobs", default=1)
    try:
        n = int(n)
    except (TypeError, ValueError):
        return 1
    return (os.cpu_count() or 1) + 1 + n if n < 0 else max(n, 1)
