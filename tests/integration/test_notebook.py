"""``notebooks/analysis.ipynb`` executed with nbclient on tiny real sweeps (CPU, random
weights): the golden sweep of every task (amg, prompted, video, semantic; shared with
``test_golden_tasks.py``), read from ``summary.csv``, shows that task's declared headline
metrics with values and plots its declared Pareto axes; an AMG sweep tracked in MLflow is read
from the store."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from golden.sweeps import TASKS, session_sweep

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two jobs (predicted-IoU threshold 0 / 0.5) on one image with a 2x2 grid, under
    ``multirun/`` of the launch directory; logged to a SQLite MLflow store when available."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = cwd / "multirun" / "tiny"
    proc = run_cli(
        ["-m", "model.weights=random", "amg.points_per_side=2", "amg.pred_iou_thresh=0.0,0.5",
         "amg.stability_score_thresh=0", "amg.box_nms_thresh=1.0", "dataset.limit=1",
         "warmup=false", "progress=false", f"tracking={'mlflow' if HAS_MLFLOW else 'none'}",
         f"hydra.sweep.dir={out}"],
        cwd, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "summary.csv").is_file()
    return cwd, out


def execute(cwd: Path) -> Any:
    """Run every cell in a fresh kernel started in ``cwd``; raises on a cell's error."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def outputs(nb: Any) -> tuple[str, int]:
    """All printed text of the executed notebook and its number of PNG images."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "".join(text), images


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "SAM_BENCH_SWEEP" in code[0].source


def test_notebook_runs_on_summary_csv(sweep, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, out = sweep
    monkeypatch.setenv("SAM_BENCH_SWEEP", str(out))
    monkeypatch.delenv("SAM_BENCH_MLFLOW_URI", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    text, images = outputs(execute(cwd))
    assert f"sweep: {out.resolve()}" in text
    assert "summary.csv: 2 jobs" in text
    assert "UNTRAINED MODEL: 2 of 2 jobs" in text
    assert "swept: amg.pred_iou_thresh" in text
    assert "amg: 2 jobs plotted, miou vs latency_ms_p50" in text
    assert images >= 3  # accuracy vs latency, headline metrics by parameter, stage breakdown


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed")
def test_notebook_runs_on_mlflow_and_finds_the_newest_sweep(
    sweep, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, out = sweep
    monkeypatch.delenv("SAM_BENCH_SWEEP", raising=False)  # default: newest under multirun/
    monkeypatch.setenv("SAM_BENCH_MLFLOW_URI", f"sqlite:///{cwd / 'mlflow.db'}")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    text, images = outputs(execute(cwd))
    assert f"sweep: {out.resolve()}" in text
    assert "2 child runs" in text and "summary.csv:" not in text
    assert "UNTRAINED MODEL: 2 of 2 jobs" in text
    assert "tasks: amg\n" in text  # the declaration came from a child run's artifact
    assert "amg: 2 jobs plotted, miou vs latency_ms_p50" in text
    assert images >= 3


def _line(text: str, prefix: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return line[len(prefix) :]


@pytest.mark.parametrize("task", TASKS)
def test_notebook_shows_each_tasks_headline_metrics(
    task: str, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Columns and axes come from what the task declares (``task_spec`` of its records), with
    values: before, a prompted sweep gave None columns and empty axes."""
    proc, out, _ = session_sweep(task, tmp_path_factory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]
    assert len(records) == 2 and {r["task"] for r in records} == {task}
    spec = records[0]["task_spec"]
    with (out / "summary.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    valued = [m for m in spec["headline"] if any(r.get(m) not in (None, "") for r in rows)]
    assert spec["pareto"][1] in valued and spec["pareto"][0] in valued, (valued, spec)

    monkeypatch.setenv("SAM_BENCH_SWEEP", str(out))
    monkeypatch.delenv("SAM_BENCH_MLFLOW_URI", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    text, images = outputs(execute(out.parent))
    assert f"tasks: {task}\n" in text
    assert _line(text, "headline: ").split(", ") == valued
    x, y = spec["pareto"]
    assert f"{task}: 2 jobs plotted, {y} vs {x}" in text
    assert "None" not in _line(text, "headline: ")
    assert images >= 3  # Pareto axes, headline metrics by swept parameter, stage breakdown
