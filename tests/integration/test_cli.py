"""The command line as a user runs it: real ``python -m sam_bench`` subprocesses on CPU with
random-weight SAM 2, launched from a directory outside the repository."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

REPO = Path(__file__).resolve().parents[2]

SUMMARY_COLUMNS = {
    "miou", "msa", "ar1000", "mask_count_mean", "latency_ms_p50", "latency_ms_p90",
    "peak_gpu_mem_mb", "peak_rss_mb", "weights", "status", "error",
}  # fmt: skip

#: Settings that keep every candidate mask with random weights.
KEEP_MASKS = ["amg.pred_iou_thresh=0", "amg.stability_score_thresh=0", "amg.box_nms_thresh=1.0"]


def sam_bench(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900):
    """Run ``python -m sam_bench ARGS progress=false`` in ``cwd``."""
    return run_cli([*args, "progress=false"], cwd, env, timeout)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    """The issue's sweep: 2 models x 2 grid sizes on 2 images, keeping masks."""
    cwd = tmp_path_factory.mktemp("cwd")
    out = cwd / "OUT"
    proc = sam_bench(
        ["-m", "model=sam2.1_hiera_tiny,sam2.1_hiera_small", "model.weights=random",
         "amg.points_per_side=4,8", *KEEP_MASKS, "dataset.limit=2", "save_predictions=true",
         f"hydra.sweep.dir={out}"],
        cwd,
    )  # fmt: skip
    return proc, out


def test_sweep_summary_has_a_row_per_job_with_masks(sweep) -> None:
    proc, out = sweep
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 4
    assert set(rows[0]) >= SUMMARY_COLUMNS
    combos = {(r["model"], r["amg.points_per_side"]) for r in rows}
    assert combos == {(m, p) for m in ("sam2.1_hiera_tiny", "sam2.1_hiera_small") for p in "48"}
    for r in rows:
        assert r["status"] == "ok" and r["error"] == ""
        assert r["weights"] == "random"
        assert float(r["mask_count_mean"]) > 0
        assert float(r["latency_ms_p50"]) > 0 and float(r["peak_rss_mb"]) > 0
        assert 0.0 <= float(r["miou"]) <= 1.0
    # 8x8 grid = 64 points x 3 masks kept, 4x4 = 48: more prompts, more masks
    by = {(r["model"], r["amg.points_per_side"]): float(r["mask_count_mean"]) for r in rows}
    assert by[("sam2.1_hiera_tiny", "8")] > by[("sam2.1_hiera_tiny", "4")]
    # the table is printed, and says the model is untrained
    assert "UNTRAINED" in proc.stdout


def test_every_result_json_is_self_describing(sweep) -> None:
    _, out = sweep
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]
    assert len(records) == 4
    hashes = set()
    for rec in records:
        assert rec["schema_version"] == 3 and rec["status"] == "ok"
        # the files it wrote, each with its kind (the runner's first, then the task's)
        kinds = {o["path"]: o["kind"] for o in rec["outputs"]}
        assert kinds["result.json"] == "record" and kinds["per_image.csv"] == "per_item_csv"
        assert rec["task"] == "amg" and rec["task_spec"]["objective"] == "miou"
        assert len(rec["config_id"]) == 16 and rec["config_identity"]["task"] == "amg"
        assert any(o.startswith("amg.points_per_side=") for o in rec["overrides"])
        assert rec["config"]["amg"]["box_nms_thresh"] == 1.0
        env = rec["environment"]
        for key in ("torch", "sam2", "device", "cpu_model", "torch_threads", "dtype",
                    "cuda_extension", "git_commit"):  # fmt: skip
            assert key in env
        assert rec["weights"]["kind"] == "random" and rec["untrained"] is True
        assert "UNTRAINED" in rec["banner"]
        hashes.add((rec["config"]["model"]["name"], rec["weights"]["state_dict_hash"]))
        assert len(rec["dataset"]["fingerprint"]) == 64 and rec["dataset"]["n_images"] == 2
        assert rec["task_info"]["cc_impl"] == "opencv_cpu"
        m = rec["metrics"]
        for key in ("miou", "miou_image", "recall50", "recall75", "msa", "sa50", "sa75",
                    "ar100", "ar1000", "mask_count_mean", "coverage", "overlap",
                    "encoder_ms_mean", "decoder_ms_mean", "postprocess_ms_mean"):  # fmt: skip
            assert key in m
        assert m["encoder_ms_mean"] > 0 and m["decoder_ms_mean"] > 0
        job = Path(rec["job"]["dir"])
        per_image = read_csv(job / "per_image.csv")
        assert len(per_image) == 2 and all(r["error"] == "" for r in per_image)
        assert (job / "masks").is_dir()
    # same seed, same model -> same weights; different models differ
    assert len({h for _, h in hashes}) == 2 and len(hashes) == 2
    # cache.in_sweep: per model, the two grid sizes (two groups) encode each image once
    for model in ("sam2.1_hiera_tiny", "sam2.1_hiera_small"):
        caches = [r["task_info"]["encoder_cache"] for r in records
                  if r["config"]["model"]["name"] == model]  # fmt: skip
        assert sorted((c["hits"], c["misses"]) for c in caches) == [(0, 2), (2, 0)]
    assert not (out / ".encoder_cache").exists()  # removed at the sweep's end


def _independent_scores(job_dir: Path) -> dict[str, float]:
    """Metrics of a job re-computed from its predictions.json and the embedded dataset's
    annotations, with pycocotools' own loader, dense numpy IoUs and a direct COCOeval."""
    import contextlib
    import io

    import numpy as np
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from sam_bench.config import CONF_DIR

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(CONF_DIR.parent / "datasets" / "synthetic" / "annotations.json"))
    preds = json.loads((job_dir / "predictions.json").read_text())["predictions"]
    by_image: dict[int, list[dict]] = {}
    for p in preds:
        by_image.setdefault(int(p["image_id"]), []).append(p)
    image_ids = sorted(coco.getImgIds())[:2]  # dataset.limit=2, stable order by id
    best, counts, coverage = [], [], []
    for img_id in image_ids:
        info = coco.loadImgs(img_id)[0]
        masks = [mask_utils.decode({"size": p["segmentation"]["size"],
                                    "counts": p["segmentation"]["counts"].encode()}).astype(bool)
                 for p in by_image.get(img_id, [])]  # fmt: skip
        counts.append(len(masks))
        union = np.zeros((info["height"], info["width"]), bool)
        for m in masks:
            union |= m
        coverage.append(union.mean())
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img_id)):
            if ann.get("iscrowd"):
                continue
            g = coco.annToMask(ann).astype(bool)
            ious = [(g & m).sum() / (g | m).sum() for m in masks]
            best.append(max(ious, default=0.0))
    dets = [{"image_id": int(p["image_id"]), "category_id": 1, "segmentation": p["segmentation"],
             "score": p["predicted_iou"]} for p in preds]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), iouType="segm")
        ev.params.imgIds = image_ids
        ev.params.useCats = 0
        ev.params.maxDets = [10, 100, 1000]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    b = np.asarray(best)
    return {
        "miou": float(b.mean()),
        "recall50": float((b >= 0.5).mean()),
        "mask_count_mean": float(np.mean(counts)),
        "coverage": float(np.mean(coverage)),
        "ar1000": float(ev.stats[8]),
    }


def test_metrics_are_recomputed_from_saved_predictions(sweep) -> None:
    """The summary's numbers are what an independent computation gives from the job's own
    saved masks and the dataset's ground truth."""
    _, out = sweep
    for row in read_csv(out / "summary.csv"):
        expect = _independent_scores(out / row["job"])
        for key, value in expect.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-9), (row["job"], key)


def test_scoring_saved_predictions_gives_the_jobs_metrics(sweep, tmp_path: Path) -> None:
    """predictions=PATH scores a job's predictions.json without a model: same accuracy."""
    _, out = sweep
    job = out / "0"
    proc = sam_bench(
        [f"predictions={job / 'predictions.json'}", "dataset.limit=2", "tracking=none",
         f"hydra.run.dir={tmp_path / 'RUN'}"],
        tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    original = json.loads((job / "result.json").read_text())
    scored = json.loads((tmp_path / "RUN" / "result.json").read_text())
    assert scored["weights"]["kind"] == "predictions" and "model_build_s" not in scored["metrics"]
    assert scored["task_info"]["scored_from"]["path"] == str(job / "predictions.json")
    assert scored["untrained"] is True and "UNTRAINED" in scored["banner"]  # from the file
    assert "latency_ms_p50" not in scored["metrics"]  # nothing ran: no cost measured
    with (tmp_path / "RUN" / "per_image.csv").open(newline="") as f:
        columns = set(next(csv.reader(f)))
    assert "miou" in columns
    assert not columns & {"latency_ms", "encoder_ms", "marginal_ms", "gpu_peak_mb"}, columns
    accuracy = [k for k, v in original["metric_info"].items() if v["kind"] in ("accuracy", "count")]
    assert "miou" in accuracy and "ar1000" in accuracy
    for key in accuracy:
        a, b = original["metrics"].get(key), scored["metrics"].get(key)
        assert (a is None and b is None) or a == pytest.approx(b, abs=1e-12), key


def test_missing_checkpoint_exits_with_one_clear_message(tmp_path: Path) -> None:
    proc = sam_bench(
        ["model=sam2.1_hiera_tiny", "model.url=http://127.0.0.1:9/sam2.1_hiera_tiny.pt"],
        tmp_path, timeout=60,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in text
    for needle in ("sam2.1_hiera_tiny.pt", "http://127.0.0.1:9/", "model.checkpoint=",
                   "model.weights=random", str(tmp_path / "ckpt-cache")):  # fmt: skip
        assert needle in text, needle
    leftovers = list((tmp_path / "ckpt-cache").glob("*"))
    assert not leftovers, "nothing lands in the cache"


def test_misspelled_key_fails_before_any_model_is_built(tmp_path: Path) -> None:
    proc = sam_bench(["model.weights=random", "amg.points_per_sid=8"], tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "points_per_sid" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("result.json")), "no job ran"


def test_out_of_range_value_fails_naming_the_key(tmp_path: Path) -> None:
    proc = sam_bench(["model.weights=random", "amg.box_nms_thresh=1.5"], tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "amg.box_nms_thresh" in proc.stdout + proc.stderr
    rec = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert rec["status"] == "failed" and "amg.box_nms_thresh" in rec["error"]
    assert rec["weights"] == {}, "failed before the model was built"


def test_dry_run_lists_jobs_and_runs_nothing(tmp_path: Path) -> None:
    proc = sam_bench(
        ["-m", "dry_run=true", "model.weights=random", "amg.points_per_side=4,8,16",
         f"hydra.sweep.dir={tmp_path / 'OUT'}"],
        tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[dry run]")]
    assert len(lines) == 3 and "4x4" in lines[0] and "16x16" in lines[2]
    assert not list(tmp_path.rglob("result.json"))


def test_failed_job_and_bad_image_do_not_stop_the_sweep(tmp_path: Path) -> None:
    """One job fails its config check, the other meets a corrupt image: both are reported,
    the sweep finishes, summary.csv is written, and the command exits non-zero."""
    from sam_bench.config import CONF_DIR

    data = tmp_path / "data"
    shutil.copytree(CONF_DIR.parent / "datasets" / "synthetic", data)
    ann = json.loads((data / "annotations.json").read_text())
    first = sorted(ann["images"], key=lambda im: im["id"])[0]
    (data / "images" / first["file_name"]).write_bytes(b"not a png")
    out = tmp_path / "OUT"
    proc = sam_bench(
        ["-m", "model.weights=random", "dataset=coco",
         f"dataset.annotations={data}/annotations.json",
         f"dataset.images={data}/images", "dataset.limit=2", "amg.points_per_side=0,2",
         *KEEP_MASKS, f"hydra.sweep.dir={out}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = {r["amg.points_per_side"]: r for r in read_csv(out / "summary.csv")}
    assert rows["0"]["status"] == "failed" and "amg.points_per_side" in rows["0"]["error"]
    assert rows["2"]["status"] == "partial"
    per_image = read_csv(out / rows["2"]["job"] / "per_image.csv")
    bad = [r for r in per_image if r["error"]]
    assert len(bad) == 1 and first["file_name"] in bad[0]["path"]
    assert "did not finish cleanly" in proc.stderr
    # the closing message names the failed image and why
    assert f"1 of 2 items failed: {first['file_name']} (" in proc.stderr


def _predictions(job_dir: Path) -> list[tuple]:
    data = json.loads((job_dir / "predictions.json").read_text())["predictions"]
    return sorted(
        (p["image_id"], p["segmentation"]["counts"], p["predicted_iou"], p["stability_score"])
        for p in data
    )


def test_fast_and_reference_jobs_write_the_same_predictions(tmp_path: Path) -> None:
    """Issue 4's check: engine=fast,reference pairs agree; fast jobs are computed grouped."""
    out = tmp_path / "OUT"
    proc = sam_bench(
        ["-m", "model.weights=random", "engine=fast,reference", "save_predictions=true",
         "tracking=none", "amg.points_per_side=4", "amg.pred_iou_thresh=0.0,0.5",
         "amg.stability_score_thresh=0.0,0.5", "amg.box_nms_thresh=1.0", "dataset.limit=2",
         f"hydra.sweep.dir={out}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_csv(out / "summary.csv")
    assert len(rows) == 8
    pairs: dict[tuple[str, str], dict[str, Path]] = {}
    for r in rows:
        key = (r["amg.pred_iou_thresh"], r["amg.stability_score_thresh"])
        pairs.setdefault(key, {})[r["engine"]] = out / r["job"]
    n_masks = 0
    for key, jobs in pairs.items():
        fast, ref = _predictions(jobs["fast"]), _predictions(jobs["reference"])
        assert [p[:2] for p in fast] == [p[:2] for p in ref], key
        for a, b in zip(fast, ref, strict=True):
            assert abs(a[2] - b[2]) <= 1e-4 and abs(a[3] - b[3]) <= 1e-4
        n_masks += len(fast)
        rec = json.loads((jobs["fast"] / "result.json").read_text())
        assert len(rec["task_info"]["grouped_with_jobs"]) == 4, "the 4 fast jobs share work"
        assert rec["metrics"]["encoder_ms_mean"] > 0, "shared stages count in every job"
    assert n_masks > 0


def test_an_unwritable_output_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Before any job runs: no Hydra traceback, the path and the reason, status 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for mode, key in (("-m", "hydra.sweep.dir"), (None, "hydra.run.dir")):
        args = [a for a in (mode,) if a] + ["tracking=none", f"{key}={blocker / 'out'}"]
        proc = sam_bench(args, tmp_path, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert f"cannot write the output folder {blocker / 'out'}: Not a directory" in proc.stderr


def test_a_single_run_that_fails_prints_its_reason(tmp_path: Path) -> None:
    """Without -m, a failed job prints the reason its record holds, then exits 1."""
    proc = sam_bench(["tracking=none", "model.weights=random", "amg.pred_iou_thresh=2"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    (record_path,) = tmp_path.glob("outputs/*/*/result.json")
    reason = json.loads(record_path.read_text())["error"]
    assert "amg.pred_iou_thresh" in reason
    line = next(ln for ln in proc.stdout.splitlines() if "job failed" in ln)
    assert reason in " ".join(proc.stdout.split())  # the console may wrap the line
    assert line.startswith("job failed: ")
