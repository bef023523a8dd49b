"""What a user sees on the console during a real sweep (random-weight tiny SAM 2.1, CPU): one
overall bar across the jobs that ends at the number of jobs, MLflow's INFO lines absent (a
fresh SQLite store would log its table creation), the CUDA-unavailable line one sentence."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import run_cli


def test_a_sweep_shows_one_overall_bar_and_no_library_noise(tmp_path: Path) -> None:
    # two groups (grid 2 / 3) of two jobs (IoU threshold 0 / 0.5), two images each
    proc = run_cli(
        ["-m", "model.weights=random", "amg.points_per_side=2,3", "amg.pred_iou_thresh=0,0.5",
         "amg.stability_score_thresh=0", "dataset.limit=2", "warmup=false", "progress=true",
         "tracking=mlflow", f"hydra.sweep.dir={tmp_path / 'out'}"],
        tmp_path, env={"MLFLOW_LOGGING_LEVEL": ""}, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    err = proc.stderr.replace("\r", "\n")
    done = [float(n) for n, total in re.findall(r"sweep:[^\n]*\| ([\d.]+)/(\d+) jobs", err)]
    assert done, err[-3000:]
    totals = set(re.findall(r"sweep:[^\n]*\| [\d.]+/(\d+) jobs", err))
    assert totals == {"4"}  # one bar over all the jobs, not one per group
    assert done == sorted(done) and done[-1] == 4.0
    assert {1.0, 3.0} <= set(done)  # moved by items inside each group (2 jobs x 1/2 image)
    assert "amg imgs (2 jobs)" in err  # the groups' item bars, with their total
    assert re.search(r"amg imgs \(2 jobs\)[^\n]*\| 2/2", err)
    log = proc.stdout + proc.stderr
    assert "Creating initial MLflow database tables" not in log
    assert " INFO mlflow" not in log
    for line in log.splitlines():
        if "CUDA is unavailable" in line:
            assert "http" not in line and line.endswith(")."), line
