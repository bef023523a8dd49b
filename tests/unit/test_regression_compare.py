"""``python -m sam_bench.report compare`` on hand-written sweeps: job folders with
``result.json`` records (schema 2: config_id, config_identity, metric_info, task_spec...) and
``per_image.csv`` rows whose latencies are drawn with known noise, so every verdict below is
known in advance."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import sam_bench.metrics.instance  # noqa: F401  (declares the AMG metrics in the catalogue)
from sam_bench.compare.cli import main
from sam_bench.identity import config_id, config_identity, section_settings
from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.metrics.cost import latency_summary
from sam_bench.report.summary import collect, write_summary

REPO = Path(__file__).resolve().parents[2]
DATA = "d" * 64
RANDOM = "r" * 64
#: Per-image latency (ms) of 8 images: the images differ far more than the runs.
IMAGE_MS = np.array([2000.0, 2600.0, 3100.0, 1800.0, 4000.0, 2200.0, 2700.0, 3300.0])
TASK_SPEC = {
    "name": "amg",
    "metrics": ["miou", "msa", "mask_count_mean"],
    "headline": ["miou", "msa", "mask_count_mean", "latency_ms_p50", "peak_rss_mb"],
    "objective": "miou",
    "pareto": ["latency_ms_p50", "miou"],
    "stages": ["preprocess", "encoder", "decoder", "postprocess"],
    "sections": ["amg"],
    "uses_engine": True,
    "per_s": "images_per_s",
    "needs": "instances",
}


def latencies(seed: int, factor: float = 1.0, noise: float = 0.05, n: int = 8) -> np.ndarray:
    """The images' latencies times ``factor``, each with independent run noise (lognormal,
    ``noise`` = sigma): what one run of a sweep measures."""
    rng = np.random.default_rng(seed)
    return IMAGE_MS[:n] * factor * np.exp(rng.normal(0.0, noise, n))


def write_job(
    sweep: Path,
    num: int,
    *,
    thresh: float = 0.0,
    miou: float = 0.5,
    lat: np.ndarray | None = None,
    status: str = "ok",
    data: str = DATA,
    weights: tuple[str, str] = ("random", RANDOM),
    engine: str = "fast",
    env: dict[str, Any] | None = None,
    item_errors: int = 0,
    dtype: str = "fp32",
) -> Path:
    """One job folder as a sweep leaves it (a record and its per-image rows)."""
    job = sweep / str(num)
    job.mkdir(parents=True, exist_ok=True)
    lat = latencies(num) if lat is None else lat
    config = {
        "task": {"name": "amg"},
        "model": {"name": "sam2.1_hiera_tiny", "family": "sam2.1", "size": "tiny",
                  "weights": weights[0]},
        "preprocess": {"name": "default", "color": "keep"},
        "amg": {"name": "default", "points_per_side": 2, "pred_iou_thresh": thresh},
        "dtype": dtype, "device": "auto", "seed": 0, "warmup": True, "engine": engine,
    }  # fmt: skip
    identity = config_identity(
        config,
        task="amg",
        settings=section_settings(config, ("amg",)),
        uses_engine=True,
        data=data,
        weights=weights[1],
    )
    rows = [
        {"image_id": str(i + 1), "latency_ms": v, "encoder_ms": 0.8 * v, "decoder_ms": 0.2 * v,
         "gpu_peak_mb": "", "miou": miou, "error": ""}
        for i, v in enumerate(lat)
    ]  # fmt: skip
    for r in rows[len(rows) - item_errors :] if item_errors else []:
        r.update(latency_ms="", encoder_ms="", decoder_ms="", miou="", error="unreadable")
    ok = [float(r["latency_ms"]) for r in rows if not r["error"]]
    metrics = {
        "miou": miou, "msa": 0.25, "mask_count_mean": 12.0,
        **latency_summary(ok),
        "encoder_ms_mean": float(np.mean(ok)) * 0.8, "decoder_ms_mean": float(np.mean(ok)) * 0.2,
        "peak_gpu_mem_mb": None, "peak_rss_mb": 2000.0, "model_build_s": 0.7,
        "n_items_ok": len(ok), "n_item_errors": item_errors, "objective": miou,
    }  # fmt: skip
    record = {
        "schema_version": 2,
        "status": status,
        "error": "RuntimeError: out of memory" if status == "failed" else None,
        "task": "amg",
        "task_spec": TASK_SPEC,
        "config_id": config_id(identity),
        "config_identity": identity,
        "job": {"num": num, "dir": str(job)},
        "overrides": [f"amg.pred_iou_thresh={thresh}", f"model.weights={weights[0]}"],
        "config": config,
        "environment": {
            "device": "cpu",
            "dtype": dtype,
            "torch": "2.14.1",
            "sam2": "1.1.0",
            "cpu_model": "Xeon",
            "torch_threads": 2,
            **(env or {}),
        },
        "weights": {
            "kind": weights[0],
            "label": weights[0],
            "hash": weights[1],
            "sha256": None if weights[0] == "random" else weights[1],
        },
        "untrained": weights[0] == "random",
        "dataset": {"name": "synthetic", "n_images": len(rows), "fingerprint": data},
        "task_info": {"engine": engine},
        "metrics": {} if status == "failed" else metrics,
        "metric_info": CATALOGUE.snapshot([*metrics, "ar1000"]),
        "item_errors": [],
    }
    (job / "result.json").write_text(json.dumps(record), encoding="utf-8")
    with (job / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return job


def write_sweep(sweep: Path, run: int = 0, **kw: Any) -> Path:
    """Two configurations (predicted-IoU threshold 0 and 0.5); ``run`` seeds the noise."""
    for num, thresh in enumerate((0.0, 0.5)):
        kw_job = dict(kw)
        kw_job.setdefault("lat", latencies(100 * run + num))
        write_job(sweep, num, thresh=thresh, miou=0.5 - 0.1 * num, **kw_job)
    write_summary(sweep, collect(sweep))
    return sweep


def edit_record(job: Path, **changes: Any) -> None:
    rec = json.loads((job / "result.json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(rec.get(key), dict):
            rec[key].update(value)
        else:
            rec[key] = value
    (job / "result.json").write_text(json.dumps(rec))


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([*args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "regression.json").read_text())


def verdicts(rep: dict[str, Any], metric: str) -> list[str]:
    return [
        m["verdict"] for c in rep["configurations"] for m in c["metrics"] if m["metric"] == metric
    ]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two runs of the same two configurations (independent timing noise, same outputs)."""
    return write_sweep(tmp_path / "base", run=0), write_sweep(tmp_path / "cur", run=1)


# --------------------------------------------------------------------------------------------
# verdicts


def test_two_runs_of_the_same_code_exit_0(pair, tmp_path, capsys) -> None:
    base, cur = pair
    code, out, err = run([str(base), str(cur), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, out + err
    rep = report(tmp_path / "o")
    assert rep["outcome"] == "no regression" and rep["exit_code"] == 0
    assert [c["matched_by"] for c in rep["configurations"]] == ["config_id", "config_id"]
    assert set(verdicts(rep, "miou")) == {"same"}
    # timing was judged (8 paired images), and found no regression
    lat = verdicts(rep, "latency_ms_p50")
    assert len(lat) == 2 and "regression" not in lat and "inconclusive" not in lat
    assert "REGRESSION" not in out and "no regression in 2 matched configurations" in out
    assert "UNTRAINED" in out


def test_better_baseline_miou_is_a_regression_naming_metric_and_configuration(
    pair, tmp_path, capsys
) -> None:
    base, cur = pair
    edit_record(base / "0", metrics={"miou": 0.55})  # the baseline was better by 0.05
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    lines = [ln for ln in out.splitlines() if ln.startswith("REGRESSION")]
    assert lines == [
        "REGRESSION [amg.pred_iou_thresh=0.0] miou: 0.550 -> 0.500 (-0.050; tolerance ±0.005)"
    ]
    rep = report(tmp_path / "o")
    assert rep["regressions"][0]["metric"] == "miou"
    assert rep["regressions"][0]["configuration"] == "amg.pred_iou_thresh=0.0"
    assert verdicts(rep, "miou") == ["regression", "same"]
    # a tolerance wider than the change: worse, not a regression
    code, out, _ = run([str(base), str(cur), "--tol", "miou=0.1", "--out", str(tmp_path)], capsys)
    assert code == 0 and verdicts(report(tmp_path), "miou") == ["worse", "same"]
    # the other way round it is an improvement
    code, _, _ = run([str(cur), str(base), "--out", str(tmp_path)], capsys)
    assert code == 0 and verdicts(report(tmp_path), "miou") == ["better", "same"]


def test_injected_2x_latency_is_a_timing_regression(tmp_path, capsys) -> None:
    base = write_sweep(tmp_path / "base", run=0)
    cur = write_sweep(tmp_path / "cur", run=1)
    write_job(cur, 1, thresh=0.5, miou=0.4, lat=latencies(7, factor=2.0))
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    rep = report(tmp_path / "o")
    slow = next(c for c in rep["configurations"] if c["label"] == "amg.pred_iou_thresh=0.5")
    by = {m["metric"]: m for m in slow["metrics"]}
    for name in ("latency_ms_p50", "latency_ms_mean", "latency_ms_p90", "encoder_ms_mean",
                 "images_per_s"):  # fmt: skip
        assert by[name]["verdict"] == "regression", (name, by[name])
    p50 = by["latency_ms_p50"]
    assert p50["n_images"] == 8 and 1.6 < p50["interval"][0] <= p50["ratio"] <= p50["interval"][1]
    assert by["images_per_s"]["interval"][1] < 0.7  # throughput halves
    assert by["miou"]["verdict"] == "same"  # outputs did not change
    assert "REGRESSION [amg.pred_iou_thresh=0.5] latency_ms_p50:" in out
    assert verdicts(rep, "latency_ms_p50")[0] != "regression"  # the other configuration


def test_too_few_images_is_inconclusive_not_a_regression(tmp_path, capsys) -> None:
    base = tmp_path / "base"
    cur = tmp_path / "cur"
    write_job(base, 0, lat=latencies(1, n=3))
    write_job(cur, 0, lat=latencies(2, factor=2.0, n=3))
    code, _, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 0
    rep = report(tmp_path)
    assert verdicts(rep, "latency_ms_p50") == ["inconclusive"]
    # with a lower minimum the same figures are judged
    code, _, _ = run([str(base), str(cur), "--min-images", "3", "--out", str(tmp_path)], capsys)
    assert code == 1 and verdicts(report(tmp_path), "latency_ms_p50") == ["regression"]


def test_a_job_that_fails_only_now_is_a_regression(pair, tmp_path, capsys) -> None:
    base, cur = pair
    edit_record(cur / "1", status="failed", error="RuntimeError: out of memory", metrics={})
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1
    assert "REGRESSION [amg.pred_iou_thresh=0.5] status: ok -> failed: fails now: " in out
    assert "out of memory" in out
    # failing on both sides is no regression; working again is better
    code, _, _ = run([str(cur), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 0
    code, _, _ = run([str(cur), str(base), "--out", str(tmp_path)], capsys)
    assert code == 0 and verdicts(report(tmp_path), "status") == ["same", "better"]


def test_items_that_fail_now_are_a_regression(tmp_path, capsys) -> None:
    base = write_sweep(tmp_path / "base")
    cur = write_sweep(tmp_path / "cur", run=1)
    write_job(cur, 0, lat=latencies(3), item_errors=2, status="partial")
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1 and "2 items fail now (baseline: 0)" in out


def test_a_job_that_failed_before_its_identity_matches_by_settings(tmp_path, capsys) -> None:
    base = write_sweep(tmp_path / "base")
    cur = write_sweep(tmp_path / "cur", run=1)
    # failed before data and model were known: no config_id, no identity, no metrics
    edit_record(cur / "0", status="failed", error="boom", config_id=None, config_identity={},
                metrics={}, dataset={}, weights={})  # fmt: skip
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1
    rep = report(tmp_path)
    assert [c["matched_by"] for c in rep["configurations"]] == ["settings", "config_id"]
    assert "status: ok -> failed" in out


# --------------------------------------------------------------------------------------------
# unfair comparisons and bad input (exit 2)


def test_mismatched_dataset_stops_with_exit_2(pair, tmp_path, capsys) -> None:
    base, _ = pair
    other = write_sweep(tmp_path / "other", run=1, data="e" * 64)
    code, out, err = run([str(base), str(other), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "dataset fingerprint differs" in err and "--across dataset" in err
    assert out.splitlines()[2].startswith("UNFAIR: dataset fingerprint: dddd")
    rep = report(tmp_path / "o")
    assert rep["outcome"] == "not comparable" and rep["differences"][0]["name"] == "dataset"
    # compared anyway on request
    code, out, _ = run([str(base), str(other), "--across", "dataset", "--out", str(tmp_path)],
                       capsys)  # fmt: skip
    assert code == 0 and "UNFAIR (allowed): dataset fingerprint" in out


def test_mismatched_weights_stop_with_exit_2(pair, tmp_path, capsys) -> None:
    base, _ = pair
    trained = write_sweep(tmp_path / "trained", run=1, weights=("pretrained", "c" * 64))
    code, _, err = run([str(base), str(trained), "--out", str(tmp_path)], capsys)
    assert code == 2 and "weights differs" in err and "random:rrrr" in err and "sha256:cccc" in err


def test_random_weights_drawn_differently_judge_timing_only(pair, tmp_path, capsys) -> None:
    base, _ = pair
    redrawn = write_sweep(tmp_path / "redrawn", run=1, weights=("random", "s" * 64))
    edit_record(redrawn / "0", metrics={"miou": 0.1})
    code, out, _ = run([str(base), str(redrawn), "--out", str(tmp_path)], capsys)
    assert code == 0 and "WARNING: weights" in out
    rep = report(tmp_path)
    assert [c["matched_by"] for c in rep["configurations"]] == ["settings", "settings"]
    assert set(verdicts(rep, "miou")) == {"not judged"}
    assert "regression" not in verdicts(rep, "latency_ms_p50")
    assert "inconclusive" not in verdicts(rep, "latency_ms_p50")


@pytest.mark.parametrize(
    ("field", "kw", "hint"),
    [
        ("dtype", {"dtype": "bf16"}, "--across dtype"),
        ("device", {"env": {"device": "cuda"}}, "--across device"),
    ],
)
def test_other_device_or_dtype_stop(pair, tmp_path, capsys, field, kw, hint) -> None:
    base, _ = pair
    other = write_sweep(tmp_path / "other", run=1, **kw)
    code, _, err = run([str(base), str(other), "--out", str(tmp_path)], capsys)
    assert code == 2 and hint in err


def test_engines_and_versions_are_context(pair, tmp_path, capsys) -> None:
    base, _ = pair
    other = write_sweep(tmp_path / "other", run=1, engine="reference",
                        env={"torch": "2.15.0", "cpu_model": "EPYC"})  # fmt: skip
    code, out, _ = run([str(base), str(other), "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "context: engine: fast -> reference" in out
    assert "context: torch: 2.14.1 -> 2.15.0" in out and "context: CPU: Xeon -> EPYC" in out
    rep = report(tmp_path)
    assert [c["differs"] for c in rep["configurations"]] == [["settings.engine"]] * 2


def test_nothing_matched_and_unmatched_configurations(pair, tmp_path, capsys) -> None:
    base, cur = pair
    odd = tmp_path / "odd"
    write_job(odd, 0, thresh=0.9)
    code, _, err = run([str(base), str(odd), "--out", str(tmp_path)], capsys)
    assert code == 2 and "no configuration matched" in err
    assert "the most similar pair (baseline job 0, current job 0) differs in " in err
    assert "sections.amg.pred_iou_thresh. Compare like with like" in err
    # named, the difference no longer keeps them apart
    code, _, _ = run([str(base), str(odd), "--across", "amg.pred_iou_thresh", "--out",
                      str(tmp_path)], capsys)  # fmt: skip
    assert code == 0
    write_job(cur, 2, thresh=0.9)  # an extra configuration: listed, not a failure
    code, _, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 0
    rep = report(tmp_path)
    extra_id = json.loads((cur / "2" / "result.json").read_text())["config_id"]
    assert rep["unmatched"] == {
        "baseline": [],
        "current": [
            {"label": "amg.pred_iou_thresh=0.9", "config_id": extra_id, "job": "2", "status": "ok"}
        ],
    }


def test_bad_input_exits_2_with_a_clear_message(pair, tmp_path, capsys) -> None:
    base, cur = pair
    cases: dict[str, tuple[str, str]] = {}
    cases["missing"] = (str(tmp_path / "nope"), "no such file or directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["empty"] = (str(empty), "no job record")
    short = tmp_path / "short.csv"
    text = (base / "summary.csv").read_text().splitlines()
    short.write_text("\n".join([text[0], text[1].rsplit(",", 3)[0]]) + "\n")
    cases["fields"] = (str(short), "line 2 has")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("job,miou\n0,0.5\n")
    cases["columns"] = (str(nocol), "no column config_id, status")
    notnum = tmp_path / "notnum.csv"
    notnum.write_text((base / "summary.csv").read_text().replace(",0.5,", ",zero.five,", 1))
    cases["number"] = (str(notnum), "'zero.five' is not a number")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    cases["binary"] = (str(binary), "not a text CSV file")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    cases["other file"] = (str(other), "neither a summary.csv nor a result.json")
    for name, (spec, message) in cases.items():
        code, _, err = run([spec, str(cur), "--out", str(tmp_path / "o")], capsys)
        assert code == 2, name
        assert message in err, (name, err)
        assert err.startswith("error: baseline") or err.startswith(f"error: {tmp_path}"), err
    assert not (tmp_path / "o").exists()  # nothing to report on
    for args, message in (
        (["--tol", "miou"], "expected NAME=VALUE"),
        (["--tol", "miou=lots"], "'lots' is not a tolerance"),
        (["--min-images", "1"], "min_images: 1 is not an integer >= 2"),
        (["--across", "colour"], "--across 'colour': not part of any configuration"),
    ):
        code, _, err = run([str(base), str(cur), *args], capsys)
        assert code == 2 and message in err, (args, err)
    with pytest.raises(SystemExit) as e:  # argparse: a missing argument
        main([str(base)])
    assert e.value.code == 2


def test_tolerance_file_errors_name_the_key(pair, tmp_path, capsys) -> None:
    base, cur = pair
    for text, message in (
        ("kinds:\n  accuracy: {absolute: -1}\n", "kinds.accuracy.absolute: -1 is not a number"),
        ("metrics:\n  miou: {absolut: 0.1}\n", "unknown key 'absolut'"),
        ("tolerances: {}\n", "unknown key 'tolerances'"),
        ("timing: {min_images: 1}\n", "timing.min_images: 1"),
    ):
        path = tmp_path / "tol.yaml"
        path.write_text(text)
        code, _, err = run([str(base), str(cur), "--config", str(path)], capsys)
        assert code == 2 and message in err and str(path) in err, err
    path.write_text("kinds:\n  accuracy: {absolute: 0.2}\n")
    edit_record(base / "0", metrics={"miou": 0.6})
    code, _, _ = run([str(base), str(cur), "--config", str(path), "--out", str(tmp_path)], capsys)
    assert code == 0  # 0.1 below the baseline, within the file's 0.2


# --------------------------------------------------------------------------------------------
# inputs: summary.csv, MLflow


def test_summary_csv_with_and_without_job_folders(pair, tmp_path, capsys) -> None:
    base, cur = pair
    # raise miou in the baseline's summary.csv only (as a user edits a copy)
    text = (base / "summary.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    for r in rows:
        r["miou"] = str(float(r["miou"]) + 0.05)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (base / "summary.csv").write_text(buf.getvalue())
    # the directory: its records win, and the disagreement is said
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 0 and "WARNING: baseline:" in out and "disagrees with the job records" in out
    # the csv: its values, timing from the job folders beside it
    code, out, _ = run([str(base / "summary.csv"), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1 and out.count("REGRESSION") == 2 and "] miou: " in out
    assert "inconclusive" not in verdicts(report(tmp_path), "latency_ms_p50")
    assert "not judged" not in verdicts(report(tmp_path), "latency_ms_p50")
    # the csv alone: timing is not judged
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(base / "summary.csv", alone / "summary.csv")
    code, _, _ = run([str(alone / "summary.csv"), str(cur), "--out", str(tmp_path)], capsys)
    rep = report(tmp_path)
    assert code == 1 and set(verdicts(rep, "latency_ms_p50")) == {"not judged"}
    note = next(m["note"] for c in rep["configurations"] for m in c["metrics"]
                if m["metric"] == "latency_ms_p50")  # fmt: skip
    assert "no per-image figures (baseline)" in note
    # a folder with only a summary.csv reads it
    code, out, _ = run([str(alone), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1 and "summary_csv" in out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_mlflow_parent_run_as_a_side(pair, tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    from omegaconf import OmegaConf

    from sam_bench.tracking import build_tracker

    base, cur = pair
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    launch = tmp_path / "launch"
    launch.mkdir()
    config = OmegaConf.create({
        "tracking": {"name": "mlflow", "uri": None, "experiment": "nightly"},
        "sweep_name": None, "dry_run": False,
        "hydra": {"runtime": {"cwd": str(launch)}, "overrides": {"task": []},
                  "launcher": {"_target_": "basic"}},
    })  # fmt: skip
    tracker = build_tracker(config.tracking)
    tracker.sweep_start(base, config)
    for job in sorted(p for p in base.iterdir() if p.is_dir()):
        tracker.job_end(json.loads((job / "result.json").read_text()), job, base)
    tracker.sweep_end(base, [], [])
    state = json.loads((base / ".sam_bench_tracking.json").read_text())
    parent, uri = state["parent_run_id"], state["uri"]

    monkeypatch.chdir(launch)  # the default store: ./mlflow.db
    code, out, _ = run([f"runs:/{parent}", str(cur), "--out", str(tmp_path / "o")], capsys)
    assert code == 0, out
    assert "baseline: runs:/" in out and "(mlflow, 2 jobs)" in out
    rep = report(tmp_path / "o")
    assert [c["matched_by"] for c in rep["configurations"]] == ["config_id", "config_id"]
    assert "inconclusive" not in verdicts(rep, "latency_ms_p50")  # per_image.csv came along
    monkeypatch.chdir(tmp_path)
    edit_record(cur / "0", metrics={"miou": 0.4})
    code, out, _ = run([parent, str(cur), "tracking.uri=" + uri, "--out", str(tmp_path)], capsys)
    assert code == 1 and "] miou: 0.500 -> 0.400" in out
    code, _, err = run([parent, str(cur)], capsys)  # no store in this folder
    assert code == 2 and "no MLflow store" in err
    code, _, err = run(["0" * 32, str(cur), "--tracking-uri", uri], capsys)
    assert code == 2 and "not found" in err


# --------------------------------------------------------------------------------------------
# saved outputs


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _box(y: int, x: int, h: int = 10, w: int = 10) -> np.ndarray:
    m = np.zeros((40, 60), bool)
    m[y : y + h, x : x + w] = True
    return m


def _predictions(job: Path, masks: dict[str, list[np.ndarray]]) -> None:
    entries = [
        {"image_id": i, "segmentation": _rle(m), "score": 0.9}
        for i, ms in masks.items()
        for m in ms
    ]
    (job / "predictions.json").write_text(json.dumps({"source": {}, "predictions": entries}))
    declare(job, "instance_rle", "predictions.json")


def declare(job: Path, kind: str, path: str) -> None:
    """List an output in the job's record, as a job whose task declares it does."""
    rec = json.loads((job / "result.json").read_text())
    outputs = rec.setdefault("outputs", [])
    if not any(o["path"] == path for o in outputs):
        outputs.append({"name": kind, "kind": kind, "path": path, "description": ""})
    (job / "result.json").write_text(json.dumps(rec))


def test_saved_masks_are_compared(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_job(base, 0)
    write_job(cur, 0, lat=latencies(5))
    _predictions(base / "0", {"1": [_box(0, 0), _box(20, 30)], "2": [_box(5, 5)]})
    # image 1: one mask moved by 2 px (IoU 80/120); image 2: one extra mask
    _predictions(cur / "0", {"1": [_box(20, 32), _box(0, 0)], "2": [_box(5, 5), _box(25, 40)]})
    code, _, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    conf = report(tmp_path)["configurations"][0]
    masks = conf["masks"]
    per_image = {"1": (1.0 + 80 / 120) / 2, "2": 1.0 / 2}
    assert masks["miou"] == pytest.approx(np.mean(list(per_image.values())))
    assert masks["miou_same_count"] == pytest.approx(per_image["1"])
    assert masks["identical"] == 0 and masks["changed"] == 2
    assert masks["count_changed"] == [["2", 1, 2]]
    row = next(m for m in conf["metrics"] if m["metric"] == "mask_miou")
    assert row["verdict"] == "regression" and code == 1
    # identical masks
    _predictions(cur / "0", {"1": [_box(0, 0), _box(20, 30)], "2": [_box(5, 5)]})
    code, _, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    conf = report(tmp_path)["configurations"][0]
    assert code == 0 and conf["masks"]["identical"] == 2 and conf["masks"]["miou"] == 1.0


def _labels(folder: Path, frames: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)
    for name, arr in frames.items():
        im = Image.fromarray(arr.astype(np.uint8))
        im.putpalette(palette)  # now a palette image: pixel values are object ids
        im.save(folder / f"{name}.png")
    declare(folder.parents[1], "palette_png_sequence", "predictions/")


def test_video_label_folders_are_compared(tmp_path, capsys) -> None:
    base, cur = tmp_path / "base", tmp_path / "cur"
    write_job(base, 0)
    write_job(cur, 0, lat=latencies(5))
    frame = np.zeros((20, 20), np.uint8)
    frame[0:10, 0:10] = 1
    frame[12:18, 12:18] = 2
    moved = frame.copy()
    moved[0:10, 0:10] = 0
    moved[0:10, 5:15] = 1  # object 1 shifted by 5 px: IoU 50/150
    _labels(base / "0" / "predictions" / "bear", {"00000": frame, "00001": frame})
    _labels(cur / "0" / "predictions" / "bear", {"00000": frame, "00001": moved})
    code, _, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    video = report(tmp_path)["configurations"][0]["video"]
    j1 = (1.0 + 50 / 150) / 2  # object 1 over its two frames; object 2 is identical
    assert video["j_mean"] == pytest.approx((j1 + 1.0) / 2)
    assert video["identical_frames"] == 1 and video["changed_frames"] == 1
    assert video["per_sequence"] == [["bear", 2, pytest.approx((j1 + 1.0) / 2)]]
    assert code == 1  # J fell far below the default tolerance


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_saved_predictions_of_mlflow_runs_are_compared(tmp_path, capsys, monkeypatch) -> None:
    """With save_predictions=true a child run carries predictions.json / predictions/ as
    artifacts, and an MLflow side compares masks as a sweep directory does."""
    pytest.importorskip("mlflow")
    from omegaconf import OmegaConf

    from sam_bench.tracking import build_tracker

    base, cur = tmp_path / "base", tmp_path / "cur"
    for sweep in (base, cur):
        write_job(sweep, 0, lat=latencies(5 if sweep is cur else 0))
    frame = np.zeros((20, 20), np.uint8)
    frame[0:10, 0:10] = 1
    _predictions(base / "0", {"1": [_box(0, 0), _box(20, 30)], "2": [_box(5, 5)]})
    _labels(base / "0" / "predictions" / "bear", {"00000": frame})
    _predictions(cur / "0", {"1": [_box(20, 32), _box(0, 0)], "2": [_box(5, 5)]})
    _labels(cur / "0" / "predictions" / "bear", {"00000": frame})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = OmegaConf.create({
        "tracking": {"name": "mlflow", "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                     "experiment": "nightly"},
        "sweep_name": None, "dry_run": False,
        "hydra": {"runtime": {"cwd": str(tmp_path)}, "overrides": {"task": []},
                  "launcher": {"_target_": "basic"}},
    })  # fmt: skip
    tracker = build_tracker(config.tracking)
    tracker.sweep_start(base, config)
    record = json.loads((base / "0" / "result.json").read_text())
    record["config"]["save_predictions"] = True
    tracker.job_end(record, base / "0", base)
    tracker.sweep_end(base, [], [])
    state = json.loads((base / ".sam_bench_tracking.json").read_text())

    args = [f"runs:/{state['parent_run_id']}", str(cur), "--tracking-uri", state["uri"]]
    code, _, _ = run([*args, "--out", str(tmp_path / "o")], capsys)
    rep = report(tmp_path / "o")
    assert "1 of 1 with saved predictions" in json.dumps(rep)
    conf = rep["configurations"][0]
    per_image = {"1": (1.0 + 80 / 120) / 2, "2": 1.0}  # image 1: one mask moved by 2 px
    assert conf["masks"]["miou"] == pytest.approx(np.mean(list(per_image.values())))
    assert conf["masks"]["identical"] == 1 and conf["masks"]["changed"] == 1
    assert conf["video"]["identical_frames"] == 1  # the label folder came along
    assert code == 1  # the moved mask is a mask-level regression


# --------------------------------------------------------------------------------------------
# the documents


def test_report_files_are_written_and_self_contained(pair, tmp_path, capsys) -> None:
    base, cur = pair
    edit_record(base / "1", metrics={"miou": 0.45})
    code, out, _ = run([str(base), str(cur)], capsys)  # default: into the current sweep
    assert code == 1
    html = (cur / "regression.html").read_text()
    md = (cur / "regression.md").read_text()
    assert html.startswith("<!DOCTYPE html>") and "REGRESSION (exit 1)" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") == 2  # cost ratios and deltas
    assert "## Differences between the sides" in md and "## Regressions" in md
    assert md.index("Differences between the sides") < md.index("## Regressions")
    assert (cur / "regression_plots" / "cost_ratios.png").is_file()
    assert f"report: {cur / 'regression.html'}" in out
    rep = report(cur)
    assert rep["schema_version"] == 1 and rep["exit_code"] == 1
    # the sweep directory still reports as before (the new files are no job records)
    res = subprocess.run(
        [sys.executable, "-m", "sam_bench.report", str(cur)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_compare_subcommand_as_a_user_runs_it(pair, tmp_path) -> None:
    base, cur = pair
    res = subprocess.run(
        [sys.executable, "-m", "sam_bench.report", "compare", str(base), str(cur),
         "--out", str(tmp_path)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "result: no regression in 2 matched configurations" in res.stdout


def test_a_stage_without_per_image_column_is_judged_on_its_value(pair, tmp_path, capsys) -> None:
    """A task may keep a stage's figures elsewhere (no ``clip_ms`` column in per_image.csv):
    its mean is then judged like any one-figure cost, against the tolerance."""
    base, cur = pair
    info = {"clip_ms_mean": CATALOGUE.snapshot(["clip_ms_mean"])["clip_ms_mean"]}
    for side, value in ((base, 100.0), (cur, 200.0)):
        rec = json.loads((side / "0" / "result.json").read_text())
        rec["metrics"]["clip_ms_mean"] = value
        rec["metric_info"].update(info)
        (side / "0" / "result.json").write_text(json.dumps(rec))
    code, out, _ = run([str(base), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1 and "] clip_ms_mean: 100 -> 200 (+100; tolerance ±30%)" in out
    row = next(
        m for m in report(tmp_path)["configurations"][0]["metrics"] if m["metric"] == "clip_ms_mean"
    )
    assert row["basis"] == "value" and row["note"].startswith("one figure per job")
