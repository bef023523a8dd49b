"""An MLflow run as one side of a comparison: a sweep's parent run stands for its child runs
(one per job); each child's ``result.json`` and ``per_image.csv`` artifacts, then the
prediction outputs its record declares (:func:`sam_bench.layout.declared_outputs`; logged for
jobs run with ``save_predictions=true``), are downloaded into a scratch folder and read like
a sweep directory's job folders, so outputs are compared as for sweep directories. A child without a
``result.json`` artifact is described by its tags and metrics. ``mlflow`` is imported only
here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sam_bench.compare.declared import declared_predictions
from sam_bench.compare.jobs import CompareError, Job, Side, parse_bool, read_json
from sam_bench.layout import PER_ITEM_FILE as PER_IMAGE_FILE
from sam_bench.layout import RESULT_FILE


def default_tracking_uri(configured: str | None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
    working directory (as :mod:`sam_bench.tracking.mlflow` resolves it)."""
    from sam_bench.tracking.mlflow import resolve_uri

    return resolve_uri(configured, Path.cwd())


def load_mlflow(
    run_id: str,
    role: str,
    spec: str,
    tracking_uri: str | None,
    scratch: Path | None,
    progress: bool,
) -> Side:
    """A sweep's MLflow parent run (its child runs are the jobs), or one job's run."""
    from sam_bench.tracking.mlflow import sqlite_db_path

    uri = default_tracking_uri(tracking_uri)
    db = sqlite_db_path(uri)
    if db is not None and not db.is_file():
        raise CompareError(
            f"{role} {spec!r}: no MLflow store at {db} (set --tracking-uri, or "
            "MLFLOW_TRACKING_URI, to where the runs are)"
        )
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise CompareError(f"{role} {spec!r}: reading MLflow runs needs mlflow installed") from None
    if scratch is None:
        raise ValueError("an MLflow side needs a scratch folder")
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise CompareError(
            f"{role} {spec!r}: MLflow run {run_id} not found in {uri} ({e})"
        ) from None
    children = _child_runs(client, run)
    runs = children or [run]
    dest_root = scratch / role
    jobs = []
    with_masks = 0
    from tqdm.auto import tqdm

    for i, child in enumerate(tqdm(runs, desc=f"{role}: MLflow runs", disable=not progress)):
        tags = child.data.tags
        name = str(tags.get("job_num") or child.info.run_name or child.info.run_id)
        dest = dest_root / f"{i:04d}"
        dest.mkdir(parents=True, exist_ok=True)
        got = _download(client, child.info.run_id, (RESULT_FILE, PER_IMAGE_FILE), dest)
        record: dict[str, Any] | None = None
        if RESULT_FILE in got:
            try:
                record = read_json(dest / RESULT_FILE)
            except (OSError, ValueError):
                record = None
        if record is None:
            record = _run_record(child)
        else:
            with_masks += bool(_download(client, child.info.run_id, _predictions(record), dest))
        jobs.append(Job(record, name, dest, "mlflow"))
    what = f"parent run with {len(children)} child runs" if children else "a single run"
    masks = (
        f"{with_masks} of {len(runs)} with saved predictions"
        if with_masks
        else "no saved predictions (run with save_predictions=true to compare masks)"
    )
    notes = [f"MLflow {what} in {uri}; {masks}"]
    return Side(role, spec, "mlflow", f"runs:/{run_id} ({uri})", jobs, notes, [], None)


def _predictions(record: dict[str, Any]) -> list[str]:
    """The artifact names of the prediction outputs the record declares."""
    return [o.path.rstrip("/") for o in declared_predictions(record)[0]]


def _child_runs(client: Any, run: Any) -> list[Any]:
    out: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
            max_results=1000,
            page_token=token,
        )
        out.extend(page)
        token = getattr(page, "token", None)
        if not token:
            break

    def key(r: Any) -> tuple[int, str]:
        num = r.data.tags.get("job_num")
        return (int(num), "") if str(num).isdigit() else (1 << 30, str(r.info.run_name))

    return sorted(out, key=key)


def _download(client: Any, run_id: str, names: Iterable[str], dest: Path) -> set[str]:
    """Download the run's artifacts among ``names`` (files or folders) into ``dest``;
    returns those found."""
    present = {a.path for a in client.list_artifacts(run_id)}
    got = set()
    for name in names:
        if name not in present:
            continue
        local = Path(client.download_artifacts(run_id, name, str(dest)))
        if local != dest / name:
            os.replace(local, dest / name)
        got.add(name)
    return got


def _run_record(run: Any) -> dict[str, Any]:
    """What a run's tags and metrics say of a job whose ``result.json`` was not logged."""
    tags = run.data.tags
    return {
        "status": tags.get("status") or ("failed" if run.info.status == "FAILED" else "ok"),
        "error": tags.get("error"),
        "task": tags.get("task"),
        "config_id": tags.get("config_id"),
        "overrides": (tags.get("overrides") or "").split(),
        "metrics": dict(run.data.metrics),
        "weights": {
            "label": tags.get("weights"),
            "hash": tags.get("weights_hash"),
            "kind": tags.get("weights_kind"),
        },
        "dataset": {"fingerprint": tags.get("dataset_fingerprint")},
        "environment": {
            k: tags.get(t)
            for k, t in (
                ("device", "device"),
                ("dtype", "dtype"),
                ("torch", "torch_version"),
                ("sam2", "sam2_version"),
                ("git_commit", "git_commit"),
                ("cpu_model", "cpu_model"),
                ("device_name", "device_name"),
            )
        },
        "config": {"model": {"name": tags.get("model")}},
        "untrained": parse_bool(tags.get("untrained") or ""),
    }
