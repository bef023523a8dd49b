"""The regression check end to end: real ``python -m sam_bench`` sweeps on CPU (random-weight
SAM 2.1 tiny) compared by ``python -m sam_bench.report compare``.

CI runs ONE pair of tiny sweeps (one configuration, 5 images, 2x2 grid, one mask per image
kept and saved) and derives every other case from copies of it: a baseline whose ``miou`` was
better, an injected 2x latency, a job that fails now, another dataset or other weights. The
two runs are launched at the same time, so both see the same load from whatever else the
machine runs: on a shared 2-core machine two runs one after the other can differ by more than
any tolerance (measured here: 4x under a load average of 10), which no statistics can tell
from a real slowdown. The ``slow`` test runs the ``sweep=regression`` preset twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from sam_bench.compare.cli import main

#: Thresholds 0 keep a mask per image with random weights (NMS keeps one of the alike
#: candidates: cheap to score, unlike box_nms_thresh=1.0, which keeps all 12).
TINY = ["-m", "model.weights=random", "amg.points_per_side=2", "amg.pred_iou_thresh=0",
        "amg.stability_score_thresh=0", "dataset.limit=5", "save_predictions=true",
        "tracking=none", "progress=false"]  # fmt: skip


def _env(cwd: Path) -> dict[str, str]:
    env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(REPO)) if p)
    return env


def run_pair(args: list[str], cwd: Path, names: tuple[str, str]) -> list[Path]:
    """Run the same sweep twice, at the same time, into ``cwd/<name>``, one compute thread
    each: two runs of two threads on two cores take turns unevenly, and a short stage
    (post-processing, ~13 ms) of one could come out 2.5x the other's."""
    env = {**_env(cwd), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sam_bench", *args, f"hydra.sweep.dir={cwd / name}"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in names
    ]
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        assert p.returncode == 0, out[-3000:]
    return [cwd / name for name in names]


def compare_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sam_bench.report", "compare", *args],
        cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def compare(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([*args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def verdicts(folder: Path, metric: str) -> list[str]:
    rep = json.loads((folder / "regression.json").read_text())
    return [
        m["verdict"] for c in rep["configurations"] for m in c["metrics"] if m["metric"] == metric
    ]


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("regression*"))
    return dst


def edit_jobs(sweep: Path, fn: Any) -> None:
    """Apply ``fn(record, rows)`` to every job (its result.json and per_image.csv) and
    rewrite summary.csv from the records."""
    from sam_bench.report.summary import collect, write_summary

    for job in sorted(p for p in sweep.iterdir() if (p / "result.json").is_file()):
        rec = json.loads((job / "result.json").read_text())
        with (job / "per_image.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        fn(rec, rows)
        (job / "result.json").write_text(json.dumps(rec))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (job / "per_image.csv").write_text(buf.getvalue())
    write_summary(sweep, collect(sweep))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cwd = tmp_path_factory.mktemp("cwd")
    a, b = run_pair(TINY, cwd, ("A", "B"))
    return a, b


def test_the_same_sweep_twice_is_no_regression(runs, tmp_path) -> None:
    a, b = runs
    res = compare_cli(str(a), str(b), "--out", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "result: no regression in 1 matched configuration" in res.stdout
    assert "UNTRAINED MODEL" in res.stdout
    # timing was judged (5 images, paired), not waved through as inconclusive
    for metric in ("latency_ms_p50", "latency_ms_mean", "encoder_ms_mean"):
        (v,) = verdicts(tmp_path, metric)
        assert v in ("same", "worse", "better"), (metric, v)
    rep = json.loads((tmp_path / "regression.json").read_text())
    (conf,) = rep["configurations"]
    assert conf["matched_by"] == "config_id"
    assert conf["masks"]["identical"] == conf["masks"]["n_images"] == 5  # deterministic outputs
    assert float(conf["metrics"][0]["current"]) == 0  # status row: no item failed
    counts = [m for m in conf["metrics"] if m["metric"] == "mask_count_mean"]
    assert counts[0]["current"] >= 1 and counts[0]["verdict"] == "same"
    assert verdicts(tmp_path, "miou") == ["same"]
    html = (tmp_path / "regression.html").read_text()
    assert "No regression (exit 0)" in html and "data:image/png;base64," in html


def test_a_better_baseline_miou_is_a_regression(runs, tmp_path, capsys) -> None:
    a, b = runs

    def raise_miou(rec: dict[str, Any], rows: list[dict[str, str]]) -> None:
        rec["metrics"]["miou"] += 0.05

    base = copy(a, tmp_path / "better")
    edit_jobs(base, raise_miou)
    code, out, _ = compare([str(base), str(b), "--out", str(tmp_path)], capsys)
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.startswith("REGRESSION")]
    assert line.startswith("REGRESSION [config ") and "] miou: " in line
    rep = json.loads((tmp_path / "regression.json").read_text())
    assert rep["regressions"][0]["config_id"] in line


def test_an_injected_2x_latency_is_a_timing_regression(runs, tmp_path, capsys) -> None:
    a, b = runs

    def slow_down(rec: dict[str, Any], rows: list[dict[str, str]]) -> None:
        for r in rows:
            for k in ("latency_ms", "encoder_ms", "decoder_ms", "postprocess_ms", "marginal_ms"):
                r[k] = str(2 * float(r[k]))
        for k in ("latency_ms_mean", "latency_ms_p50", "latency_ms_p90"):
            rec["metrics"][k] *= 2
        rec["metrics"]["images_per_s"] /= 2

    cur = copy(b, tmp_path / "slow")
    edit_jobs(cur, slow_down)
    code, out, _ = compare([str(a), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1
    assert verdicts(tmp_path, "latency_ms_p50") == ["regression"]
    assert verdicts(tmp_path, "encoder_ms_mean") == ["regression"]
    assert verdicts(tmp_path, "miou") == ["same"]
    assert "] latency_ms_p50: " in out


def test_a_job_failing_only_now_is_a_regression(runs, tmp_path, capsys) -> None:
    a, b = runs

    def fail(rec: dict[str, Any], rows: list[dict[str, str]]) -> None:
        rec.update(status="failed", error="RuntimeError: CUDA out of memory", metrics={})

    cur = copy(b, tmp_path / "failed")
    edit_jobs(cur, fail)
    code, out, _ = compare([str(a), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 1 and "status: ok -> failed: fails now: RuntimeError: CUDA out of memory" in out


@pytest.mark.parametrize("what", ["dataset", "weights"])
def test_other_data_or_weights_exit_2(runs, tmp_path, capsys, what) -> None:
    a, b = runs

    def doctor(rec: dict[str, Any], rows: list[dict[str, str]]) -> None:
        from sam_bench.identity import config_id

        if what == "dataset":
            rec["dataset"]["fingerprint"] = "0" * 64
            rec["config_identity"]["data"] = "0" * 64
        else:
            rec["weights"].update(kind="checkpoint", label="sam2.1_hiera_tiny.pt",
                                  hash="1" * 64, sha256="1" * 64)  # fmt: skip
            rec["config_identity"]["weights"] = "1" * 64
            rec["untrained"] = False
        rec["config_id"] = config_id(rec["config_identity"])

    cur = copy(b, tmp_path / what)
    edit_jobs(cur, doctor)
    code, out, err = compare([str(a), str(cur), "--out", str(tmp_path)], capsys)
    assert code == 2
    label = {"dataset": "dataset fingerprint", "weights": "weights"}[what]
    assert f"UNFAIR: {label}:" in out and f"{label} differs" in err


def test_a_missing_baseline_exits_2(runs, tmp_path) -> None:
    _, b = runs
    res = compare_cli(str(tmp_path / "no-such-sweep"), str(b), cwd=tmp_path)
    assert res.returncode == 2
    assert "no such file or directory" in res.stderr and "no-such-sweep" in res.stderr


@pytest.mark.slow
def test_regression_preset_twice_as_the_readme_ci_job(tmp_path) -> None:
    """The ``sweep=regression`` preset run twice, compared; then the README's "Done when"
    cases: a copy of the baseline with ``miou`` raised by 0.05 in its summary.csv, and a
    baseline that does not exist."""
    base, cur = run_pair(["sweep=regression", "progress=false"], tmp_path, ("base", "cur"))
    rows = list(csv.DictReader((base / "summary.csv").open()))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert all(float(r["mask_count_mean"]) > 0 for r in rows)
    assert {r["n_items_ok"] for r in rows} == {"8"}
    res = compare_cli("base", "cur", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "result: no regression in 4 matched configurations" in res.stdout
    for v in verdicts(cur, "latency_ms_p50"):
        assert v in ("same", "worse", "better")
    doctored = tmp_path / "doctored.csv"
    text = (base / "summary.csv").read_text()
    table = list(csv.DictReader(io.StringIO(text)))
    for r in table:
        r["miou"] = str(float(r["miou"]) + 0.05)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    doctored.write_text(buf.getvalue())
    shutil.copy(doctored, base / "summary_doctored.csv")
    res = compare_cli(str(base / "summary_doctored.csv"), "cur", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.count("] miou: ") == 4
    res = compare_cli("nowhere", "cur", cwd=tmp_path)
    assert res.returncode == 2 and "nowhere" in res.stderr
