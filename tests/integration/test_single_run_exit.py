"""A single run ends its process with its heap settled (:mod:`sam_bench.heap`) and without
the interpreter's shutdown (``sam_bench.__main__``; tests/unit/test_process_end.py): what the
run writes at its end (record, MLflow run) must all be there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fresh import fresh_python, printed

#: Runs the command as ``python -m sam_bench`` does, and prints, from the last atexit handler
#: to run, how many objects are settled and how many the shutdown's collections will walk.
CODE = """
import atexit, gc, runpy, sys
atexit.register(
    lambda: print(f"EXIT settled={gc.get_freeze_count()} walked={len(gc.get_objects())}")
)
sys.argv = ["sam_bench", *sys.argv[1:]]
runpy.run_module("sam_bench", run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.parametrize("background", ["true", "false"])
def test_a_single_run_exits_settled_and_its_mlflow_run_is_complete(
    tmp_path: Path, background: str
) -> None:
    """With the MLflow helper process (``tracking.background=true``) and without it."""
    db = tmp_path / "mlflow.db"
    args = ["dataset.limit=1", "amg.points_per_side=2", "model.weights=random", "progress=false",
            f"tracking.uri=sqlite:///{db}", f"tracking.background={background}",
            f"hydra.run.dir={tmp_path / 'job'}",
            "hydra.verbose=[sam_bench.tracking.worker]"]  # fmt: skip
    proc = fresh_python(CODE, *args, cwd=tmp_path)
    # the helper the command started before Hydra's import is the one that logged (Hydra's
    # console log handler writes to stdout)
    taken = "taking over the one started early" in proc.stdout
    assert taken is (background == "true"), proc.stdout[-3000:]
    assert "started early" not in proc.stdout or taken, proc.stdout[-3000:]
    line = printed(proc, "EXIT ")
    counts = dict(kv.split("=") for kv in line.split())
    settled, walked = int(counts["settled"]), int(counts["walked"])
    assert settled > 100_000 and settled > 10 * walked, line  # torch & co. are settled
    record = json.loads((tmp_path / "job" / "result.json").read_text())
    assert record["status"] == "ok"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    assert set(record["metrics"]) & set(run.data.metrics)  # the metrics reached the store
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "result.json" in artifacts
