"""A task registered only in the tests (the package ``tests/plugins/toy_task/``) plugs into
everything a sweep does -- summary.csv, the console table, report.html, MLflow child runs, the
objective -- without any change under ``sam_bench/report/``; and ``config_id`` identifies
configurations across folders. The toy task builds no model, so these sweeps take seconds."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from PIL import Image

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
TOY = [
    "task=toy",
    "plugins=[toy_task]",
    f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
    "progress=false",
]


def toy_sweep(cwd: Path, out: Path, *extra: str, env: dict[str, str] | None = None):
    path = os.pathsep.join(p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)
    return run_cli(
        ["-m", *TOY, "dataset.limit=1,2", f"hydra.sweep.dir={out}", *extra],
        cwd,
        env={"PYTHONPATH": path, **(env or {})},
        timeout=300,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("first")
    out = cwd / "OUT"
    db = cwd / "mlflow.db"
    proc = toy_sweep(
        cwd,
        out,
        "tracking=mlflow",
        "save_predictions=true",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"},
    )
    return proc, out, db


def test_toy_metrics_reach_summary_console_report_and_objective(toy) -> None:
    proc, out, _ = toy
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 2
    records = [json.loads((out / r["job"] / "result.json").read_text()) for r in rows]
    for row, rec in zip(rows, records, strict=True):
        assert rec["task"] == "toy" and rec["status"] == "ok"
        for key in ("toy_agreement", "toy_brightness", "toy_ms_mean"):  # its own stage too
            assert float(row[key]) == pytest.approx(rec["metrics"][key]), key
        # the objective is the task's default objective metric, read from the catalogue
        assert float(row["objective"]) == pytest.approx(rec["metrics"]["toy_agreement"])
        assert rec["task_info"]["objective"] == "toy_agreement"
        assert rec["metric_info"]["toy_agreement"]["direction"] == "higher"
        # its declared output is listed with its kind, one label PNG per image
        outputs = {o["name"]: o for o in rec["outputs"]}
        assert outputs["bright_maps"]["kind"] == "label_png"
        pngs = sorted((out / row["job"] / "predictions").glob("*.png"))
        assert len(pngs) == int(row["dataset.limit"])
    # the console table shows the catalogue labels of the toy's headline
    header = next(line for line in proc.stdout.splitlines() if "agreement" in line)
    assert "brightness" in header
    page = (out / "report.html").read_text()
    # best-per-metric, the all-jobs table and the metric definitions
    assert "toy_agreement" in page and "fraction of GT instance pixels brighter" in page
    assert "agreement" in (out / "report.md").read_text().split("## Pareto set")[1]


def test_toy_metrics_reach_the_mlflow_child_runs(toy) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    proc, _, db = toy
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("sam_bench")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2
    for run in children:
        job_dir = Path(run.data.tags["job_dir"])
        metrics = json.loads((job_dir / "result.json").read_text())["metrics"]
        for key in ("toy_agreement", "toy_brightness", "objective"):
            assert run.data.metrics[key] == pytest.approx(metrics[key]), key


def test_config_ids_are_the_same_from_another_folder(toy, tmp_path: Path) -> None:
    _, first, _ = toy
    second = tmp_path / "elsewhere" / "OUT"
    proc = toy_sweep(tmp_path, second, "tracking=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read_csv(first / "summary.csv"), read_csv(second / "summary.csv")
    ids = {r["dataset.limit"]: r["config_id"] for r in a}
    assert {r["dataset.limit"]: r["config_id"] for r in b} == ids  # tracking differs too
    assert len(set(ids.values())) == 2 and all(len(i) == 16 for i in ids.values())
    for row in a:
        assert len(row["dataset_fingerprint"]) == 64 and row["weights_hash"] == ""  # no model


def _compare(baseline: Path, current: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(PLUGINS), str(REPO)))}
    return subprocess.run(
        [sys.executable, "-m", "sam_bench.report", "compare", str(baseline), str(current),
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip


def test_the_regression_check_compares_the_toy_outputs(toy, tmp_path: Path) -> None:
    """The toy's declared label_png output is compared by its kind: a copy of the sweep
    passes with every image counted, a changed map is a regression, a missing map is an
    error naming the image (never a silent pass)."""
    proc, first, _ = toy
    assert proc.returncode == 0, proc.stderr[-3000:]
    current = tmp_path / "current"
    shutil.copytree(first, current)
    same = _compare(first, current, tmp_path / "same")
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    counted = re.findall(r"label_png: (\d+) images?", same.stdout)
    assert sorted(int(n) for n in counted) == [1, 2]  # dataset.limit=1 and 2

    png = sorted((current / "1" / "predictions").glob("*.png"))[0]
    bright = np.asarray(Image.open(png))
    Image.fromarray((1 - bright).astype(np.uint8)).save(png)  # every pixel flipped
    changed = _compare(first, current, tmp_path / "changed")
    assert changed.returncode == 1, changed.stdout[-3000:] + changed.stderr[-3000:]

    png.unlink()
    missing = _compare(first, current, tmp_path / "missing")
    assert missing.returncode == 3, missing.stdout[-3000:] + missing.stderr[-3000:]
    assert png.stem in missing.stdout + missing.stderr


EP_MODULE = '''
from dataclasses import dataclass, replace

from sam_bench.registry import register_task
from toy_task.task import ToyTask


@dataclass
class EpSettings:
    """The settings section of a task registered through an entry point."""

    level: int = 1

    def describe(self) -> str:
        return f"level={self.level}"


class EpToy(ToyTask):
    spec = replace(ToyTask.spec, name="eptoy", sections=("eptoy",))


register_task("eptoy", "ep_toy:EpToy", settings={"eptoy": "ep_toy:EpSettings"},
              metrics=["toy_task.metrics"])
'''


def test_a_task_from_an_entry_point_brings_its_settings_section(tmp_path: Path) -> None:
    """An installed package registers a task through the ``sam_bench.tasks`` entry point: its
    settings section is in the config schema before Hydra composes (``eptoy.level=3`` is a
    typed key, a misspelt one is refused), with no plugins= and no edit of sam_bench."""
    site = tmp_path / "site"
    (site / "ep_toy-1.0.dist-info").mkdir(parents=True)
    (site / "ep_toy.py").write_text(EP_MODULE)
    (site / "ep_toy-1.0.dist-info" / "METADATA").write_text("Name: ep-toy\nVersion: 1.0\n")
    (site / "ep_toy-1.0.dist-info" / "entry_points.txt").write_text(
        "[sam_bench.tasks]\neptoy = ep_toy\n"
    )
    path = os.pathsep.join((str(site), str(PLUGINS)))
    common = ["task=toy", "task.name=eptoy", f"hydra.searchpath=[file://{PLUGINS / 'conf'}]",
              "tracking=none", "dry_run=true"]  # fmt: skip
    ok = run_cli([*common, "eptoy.level=3"], tmp_path, env={"PYTHONPATH": path}, timeout=300)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "task=eptoy" in ok.stdout and "level=3" in ok.stdout
    bad = run_cli([*common, "eptoy.levle=3"], tmp_path, env={"PYTHONPATH": path}, timeout=300)
    assert bad.returncode != 0 and "levle" in bad.stdout + bad.stderr
