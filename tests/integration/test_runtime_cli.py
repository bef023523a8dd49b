"""One end-to-end job on model.runtime=bf16 (cheap: one image, 2x2 grid, one item compared):
the record, summary, report and MLflow carry prepare_s and the agreement metrics; the eager
baseline of the same sweep records none of them."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

from conftest import run_cli


def test_bf16_job_records_agreement_everywhere(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    proc = run_cli(
        ["-m", "model.weights=random", "model.runtime=eager,bf16", "model.agreement_items=1",
         "amg.points_per_side=2", "dataset.limit=1", "warmup=false", "progress=false",
         "tracking=mlflow", f"hydra.sweep.dir={out}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = {
        r["config"]["model"]["runtime"]: r
        for r in (json.loads(p.read_text()) for p in out.glob("*/result.json"))
    }
    eager, bf16 = records["eager"], records["bf16"]
    assert eager["config_id"] != bf16["config_id"]
    assert not [k for k in eager["metrics"] if k.startswith("agreement_") or k == "prepare_s"]
    assert eager["task_info"]["runtime"]["name"] == "eager"
    info = bf16["task_info"]["runtime"]
    assert info["name"] == "bf16" and info["exact"] is False
    assert info["agreement"]["error"] is None and len(info["agreement"]["items"]) == 1
    m = bf16["metrics"]
    assert 0.9 <= m["agreement_mask_iou_min"] <= m["agreement_mask_iou_mean"] <= 1.0
    assert 0.0 < m["agreement_embed_rel_l2"] < 0.05 and m["prepare_s"] >= 0.0
    assert "agreement_mask_iou_mean" in bf16["metric_info"]

    with (out / "summary.csv").open(encoding="utf-8") as f:
        rows = {r["model.runtime"]: r for r in csv.DictReader(f)}
    assert float(rows["bf16"]["agreement_mask_iou_mean"]) == m["agreement_mask_iou_mean"]
    assert rows["eager"]["agreement_mask_iou_mean"] in ("", "nan")
    assert "agreement_mask_iou_mean" in (out / "report.md").read_text(encoding="utf-8")

    db = sqlite3.connect(tmp_path / "mlflow.db")
    logged = db.execute(
        "select value from metrics where key = 'agreement_mask_iou_mean'"
    ).fetchall()
    assert [round(v, 9) for (v,) in logged] == [round(m["agreement_mask_iou_mean"], 9)]
