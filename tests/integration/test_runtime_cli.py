"""One end-to-end job on model.runtime=bf16 (cheap: one image, 2x2 grid, one item compared):
the record, summary, report and MLflow carry prepare_s and the agreement metrics; the eager
baseline of the same sweep records none of them."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
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
    assert info["exactness"] == "approximate" and info["logit_tol"] is None
    assert eager["task_info"]["runtime"]["exactness"] == "bitwise"
    assert info["agreement"]["error"] is None and len(info["agreement"]["items"]) == 1
    assert info["weights"] is None and "eager" not in bf16["weights"]  # the eager weights ran
    assert info["agreement"]["reference"] == {
        "implementation": "sam2 eager", "weights": "the eager build's (model.weights)",
        "state_dict_hash": bf16["weights"]["state_dict_hash"],
    }  # fmt: skip
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


@pytest.mark.slow  # a job on transformers with a saved Sam2Model: conversion, save, 2 builds
def test_hf_id_job_records_the_weights_that_ran(tmp_path: Path, tiny_model) -> None:
    """``model.runtime_options.hf_id`` naming other weights than the eager build's (a
    ``save_pretrained`` folder of a perturbed copy): the record's weights are the
    ``Sam2Model``'s (the eager build's under ``weights.eager``), and the agreement, measured
    against sam2's eager modules holding the same weights, is exact."""
    import copy

    import torch

    pytest.importorskip("transformers")
    from transformers import Sam2Model

    from sam_bench.models.checkpoints import state_dict_hash
    from sam_bench.models.runtimes.hf_convert import convert_model

    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.1)
    folder = tmp_path / "hf"
    convert_model(other).save_pretrained(folder)
    saved = state_dict_hash(Sam2Model.from_pretrained(folder).state_dict())
    out = tmp_path / "OUT"
    proc = run_cli(
        ["model.weights=random", "model.runtime=transformers", "model.agreement_items=1",
         f"+model.runtime_options.hf_id={folder}", "amg.points_per_side=2", "dataset.limit=1",
         "warmup=false", "progress=false", "tracking=none", f"hydra.run.dir={out}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in out.glob("**/result.json")]
    weights, info = record["weights"], record["task_info"]["runtime"]
    assert weights["hash"] == weights["state_dict_hash"] == saved
    assert weights["label"] == f"model.runtime_options.hf_id={folder}"
    assert weights["eager"]["kind"] == "random" and weights["eager"]["hash"] != saved
    assert info["weights"]["state_dict_hash"] == saved and info["exactness"] == "bitwise"
    reference = info["agreement"]["reference"]
    assert info["agreement"]["error"] is None and reference["runtime_weights_hash"] == saved
    assert record["metrics"]["agreement_logits_max_abs"] == 0.0
    assert record["metrics"]["agreement_mask_iou_min"] == 1.0
