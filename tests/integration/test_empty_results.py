"""A job that predicts nothing on every item is named on the console, in the summary table and
in the report, with the likely cause its task declares (``TaskSpec.empty_when`` /
``empty_hint``).

One real sweep (random-weight SAM 2.1 tiny on one embedded image, 4x4 grid, both jobs computed
together): ``amg.pred_iou_thresh=1.0`` keeps no mask (sam2 keeps predicted IoU strictly above
the threshold), ``0`` keeps some, so exactly one of the two jobs must be flagged.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from conftest import run_cli

from sam_bench.report.summary import collect
from sam_bench.report.view import MetricView


def test_an_empty_job_is_named_with_its_likely_cause(tmp_path: Path) -> None:
    sweep = tmp_path / "OUT"
    proc = run_cli(
        [
            "-m", "model.weights=random", "tracking=none", "progress=false", "warmup=false",
            "dataset.limit=1", "amg.points_per_side=4", "amg.stability_score_thresh=0",
            "amg.pred_iou_thresh=0,1.0", f"hydra.sweep.dir={sweep}",
        ],
        tmp_path,
        env={"OMP_NUM_THREADS": "2"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (sweep / "summary.csv").open(newline="") as f:
        rows = {r["amg.pred_iou_thresh"]: r for r in csv.DictReader(f)}
    # the real outputs: no mask on the image at 1.0, some at 0
    assert float(rows["1.0"]["mask_count_max"]) == 0
    assert float(rows["0"]["mask_count_max"]) > 0
    empty_job, full_job = rows["1.0"]["job"], rows["0"]["job"]

    out = re.sub(r"\s+", " ", proc.stdout)
    assert f"WARNING job #{empty_job} predicted nothing on any of its 1 items" in out, out[-3000:]
    assert "amg.pred_iou_thresh" in out and "input conversion" in out
    assert f"job #{full_job} predicted nothing" not in out
    assert "EMPTY" in out  # the table's status cell

    report = (sweep / "report.md").read_text()
    assert f"EMPTY RESULT: job #{empty_job} predicted nothing" in report
    assert f"EMPTY RESULT: job #{full_job}" not in report
    assert "ok (EMPTY)" in report

    view_rows = collect(sweep)
    view = MetricView.from_records(
        json.loads((Path(r["job_dir"]) / "result.json").read_text()) for r in view_rows
    )
    flagged = [r["job"] for r in view_rows if view.empty_result(r)]
    assert flagged == [empty_job]
