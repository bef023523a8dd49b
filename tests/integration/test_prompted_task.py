"""The prompted task in process, through the shared loop, with sam2.1 tiny and random weights:

* the three protocols computed as one group (one encoder pass per image) give exactly what a
  plain loop over the official ``SAM2ImagePredictor.predict`` gives with the same batches and
  the same clicks;
* bad input -- a 1-pixel instance, an empty mask, a crowd region, images without instances --
  is handled with a reason, never an error;
* detector boxes: matched by box IoU, unmatched ground truth missed, every detection prompted;
* ``cache.dir``: a second run restores the encoder output and gives the same results.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig, PreprocessConfig, TaskConfig, root_schema
from sam_bench.data.registry import build_dataset
from sam_bench.loop import run_items
from sam_bench.models.build import WeightsInfo
from sam_bench.preprocess import to_model_input
from sam_bench.prompts.boxes import tight_box
from sam_bench.prompts.clicks import Click, first_click, next_click
from sam_bench.resume import open_item_log
from sam_bench.tasks.base import JobContext, TaskResult
from sam_bench.tasks.prompted import PromptedTask
from sam_bench.tasks.prompted.metrics import mask_iou
from sam_bench.tasks.prompted.settings import PromptConfig
from sam_bench.tasks.prompted.writer import PER_INSTANCE_FILE

WEIGHTS = WeightsInfo("random", None, "test-weights", None, "random")


def make_task(
    model: Any,
    tmp_path: Path,
    prompts: list[PromptConfig],
    dataset: DatasetConfig | None = None,
    cache_dir: Path | None = None,
    save_masks: int = 1,
) -> PromptedTask:
    dcfg = dataset or DatasetConfig(limit=1)
    data = build_dataset(dcfg, Path("."))
    jobs = [
        JobContext(
            cfg=root_schema()(task=TaskConfig(name="prompted", save_masks=save_masks), prompt=p,
                       dataset=dcfg),
            device=torch.device("cpu"), model=model, weights=WEIGHTS, dataset=data,
            refs=data.refs(), job_dir=tmp_path / f"job{j}", cache_dir=cache_dir,
        )
        for j, p in enumerate(prompts)
    ]  # fmt: skip
    return PromptedTask(jobs)


def run(task: PromptedTask, warmup: bool = False, logs: Any = None) -> list[TaskResult]:
    try:
        return run_items(task, warmup=warmup, progress=False, logs=logs)
    finally:
        task.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def first_image(model: Any) -> tuple[np.ndarray, list[np.ndarray], Any]:
    data = build_dataset(DatasetConfig(limit=1), Path("."))
    sample = data.load(data.refs()[0])
    image, _ = to_model_input(sample.raw, PreprocessConfig())
    masks = [np.asarray(mask_utils.decode(r), dtype=bool) for r in sample.gt.rles]  # type: ignore[union-attr]
    return image, masks, sample


# ------------------------------------------------------------------------- bad input


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def bad_coco(root: Path) -> DatasetConfig:
    """Three 48x64 images: #1 without annotations, #2 with a 1-pixel instance, a normal one,
    a crowd region and a polygon that rasterises to nothing, #3 with only a crowd region."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    h, w = 48, 64
    for i in (1, 2, 3):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png"
        )
    one = np.zeros((h, w), dtype=bool)
    one[30, 50] = True
    block = np.zeros((h, w), dtype=bool)
    block[5:25, 5:30] = True
    crowd = np.zeros((h, w), dtype=bool)
    crowd[35:45, 10:40] = True
    anns = [
        {"id": 1, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": _rle(one),
         "area": 1},
        {"id": 2, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": _rle(block),
         "area": 500},
        {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 1, "segmentation": _rle(crowd),
         "area": 300},
        {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 0,
         "segmentation": [[10.0, 10.0, 10.0, 10.0, 10.0, 10.0]], "area": 0},
        {"id": 5, "image_id": 3, "category_id": 1, "iscrowd": 1, "segmentation": _rle(crowd),
         "area": 300},
    ]  # fmt: skip
    coco = {
        "images": [{"id": i, "file_name": f"{i}.png", "height": h, "width": w} for i in (1, 2, 3)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / "ann.json").write_text(json.dumps(coco))
    return DatasetConfig(
        name="bad", format="coco", annotations=str(root / "ann.json"), images=str(root / "images")
    )


def test_bad_input_is_handled_with_a_reason_and_resumes(tiny_model, tmp_path: Path) -> None:
    dataset = bad_coco(tmp_path / "data")
    prompts = [PromptConfig(mode="click"), PromptConfig(mode="box"),
               PromptConfig(mode="clicks", max_clicks=2)]  # fmt: skip
    task = make_task(tiny_model, tmp_path, prompts, dataset=dataset)
    header = {"test": "bad input"}
    logs = [open_item_log(c.job_dir, header, reuse=False) for c in task.jobs]
    results = run(task, warmup=True, logs=logs)
    for j, res in enumerate(results):
        assert res.item_errors == [], res.item_errors
        assert res.metrics["n_items_ok"] == 3
        # image 1 has no annotation: the warm-up moved on to image 2
        assert res.info["warmup"]["item"] == "2"
        by_id = {r["image_id"]: r for r in res.rows}
        for empty in ("1", "3"):
            assert "no instance to prompt" in by_id[empty]["note"]
            assert math.isnan(by_id[empty]["latency_ms"])  # not timed
        assert "crowd" in by_id["3"]["note"]
        assert math.isfinite(by_id["2"]["latency_ms"])
        assert res.metrics["latency_ms_mean"] == pytest.approx(by_id["2"]["latency_ms"])
        assert res.metrics["n_prompted"] == 2 and res.metrics["n_skipped"] == 3
        rows = read_rows(tmp_path / f"job{j}" / PER_INSTANCE_FILE)
        status = {(r["image_id"], r["instance"]): (r["status"], r["reason"]) for r in rows}
        assert status[("2", "2")][0] == "skipped" and "crowd" in status[("2", "2")][1]
        assert status[("3", "0")][0] == "skipped" and "crowd" in status[("3", "0")][1]
        assert status[("2", "3")][0] == "skipped" and "empty mask" in status[("2", "3")][1]
        pixel = next(r for r in rows if (r["image_id"], r["instance"]) == ("2", "0"))
        assert pixel["status"] == "ok" and pixel["size"] == "small"
        assert 0.0 <= float(pixel["iou"]) <= 1.0
        if pixel.get("clicks"):
            assert json.loads(pixel["clicks"])[0] == [50, 30, 1]  # on its only pixel
        if pixel.get("box"):
            assert json.loads(pixel["box"]) == [50, 30, 51, 31]

    # resume: every image comes back from the per-item logs, nothing is encoded again
    before = [read_rows(tmp_path / f"job{j}" / PER_INSTANCE_FILE) for j in range(3)]
    for lg in logs:
        lg.close()
    again = make_task(tiny_model, tmp_path, prompts, dataset=dataset)
    again.decoder.predictor.set_image = None  # any encoder call would raise
    logs = [open_item_log(c.job_dir, header, reuse=True) for c in again.jobs]
    resumed = run(again, warmup=True, logs=logs)
    for j, (first, second) in enumerate(zip(results, resumed, strict=True)):
        assert second.info["resume"] == {"reused_images": 3, "computed_images": 0}
        same = {k: v for k, v in first.metrics.items() if not math.isnan(v)}
        assert {k: second.metrics[k] for k in same} == same
        assert second.figures == first.figures  # the example saved by the first run
        assert read_rows(tmp_path / f"job{j}" / PER_INSTANCE_FILE) == before[j]


# ------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run A: click, box and clicks as one group, writing the encoder cache. Run B: box with
    ground-truth boxes and with detector boxes, restoring the encoding from that cache."""
    root = tmp_path_factory.mktemp("prompted")
    cache = root / "cache"
    cache.mkdir()
    _, masks, sample = first_image(tiny_model)
    image_id = sample.ref.image_id
    dets = []
    for m in masks[:-1]:  # the last instance gets no detection: missed
        x0, y0, x1, y1 = tight_box(m).tolist()  # type: ignore[union-attr]
        dets.append({"image_id": int(image_id), "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.9})
    dets.append({"image_id": int(image_id), "bbox": [0, 0, 4, 4], "score": 0.8})  # false
    dets.append({"image_id": int(image_id), "bbox": [0, 0, 300, 200], "score": 0.1})  # dropped
    dets.append({"image_id": 999, "bbox": [0, 0, 5, 5], "score": 0.9})  # another image
    det_file = root / "dets.json"
    det_file.write_text(json.dumps(dets))

    task = make_task(tiny_model, root / "A", [
        PromptConfig(mode="click"), PromptConfig(mode="box"),
        PromptConfig(mode="clicks", max_clicks=3, batch_size=64),
    ], cache_dir=cache)  # fmt: skip
    encodes: list[int] = []
    set_image = task.decoder.predictor.set_image
    task.decoder.predictor.set_image = lambda im: (encodes.append(1), set_image(im))
    a = run(task)
    b = run(make_task(tiny_model, root / "B", [
        PromptConfig(mode="box"), PromptConfig(mode="box", boxes=str(det_file), box_min_score=0.5),
    ], cache_dir=cache))  # fmt: skip
    return {
        "A": a, "B": b, "root": root, "encodes": len(encodes), "dets": dets, "masks": masks,
        "rows": {
            (run_name, j): read_rows(root / run_name / f"job{j}" / PER_INSTANCE_FILE)
            for run_name, n in (("A", 3), ("B", 2)) for j in range(n)
        },
    }  # fmt: skip


# ------------------------------------------------------------------------- protocols


def test_protocols_match_a_loop_over_the_official_predictor(tiny_model, runs) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    results = runs["A"]
    assert runs["encodes"] == 1  # three jobs, one encoder pass for the image
    assert all(r.item_errors == [] for r in results)
    rows = [runs["rows"][("A", j)] for j in range(3)]

    image, masks, _ = first_image(tiny_model)
    n = len(masks)
    official = SAM2ImagePredictor(tiny_model)
    official.set_image(image)
    clicks = [first_click(m) for m in masks]
    coords = np.array([[[c.x, c.y]] for c in clicks], dtype=np.float64)  # type: ignore[union-attr]
    labels = np.ones((n, 1), dtype=np.int64)
    m3, s3, low3 = official.predict(coords, labels, multimask_output=True)

    # click: the mask with the highest predicted IoU, and the best of three as the oracle
    kept = s3.argmax(axis=1)
    for i, row in enumerate(rows[0]):
        ious = [mask_iou(m3[i, c] > 0, masks[i]) for c in range(3)]
        assert float(row["iou"]) == ious[kept[i]]
        assert float(row["iou_oracle"]) == max(ious)
        assert json.loads(row["clicks"]) == [[clicks[i].x, clicks[i].y, 1]]  # type: ignore[union-attr]
    assert results[0].metrics["miou_click"] == pytest.approx(
        np.mean([float(r["iou"]) for r in rows[0]])
    )

    # box: the tight ground-truth box, one mask
    boxes = np.stack([tight_box(m) for m in masks])  # type: ignore[misc]
    mb, _, _ = official.predict(box=boxes, multimask_output=False)
    for i, row in enumerate(rows[1]):
        assert float(row["iou"]) == mask_iou(mb[i, 0] > 0, masks[i])
        assert json.loads(row["box"]) == boxes[i].tolist()

    # clicks: RITM's next click on the kept mask, every click so far, the logits fed back
    pred = [m3[i, kept[i]] > 0 for i in range(n)]
    logits = np.stack([low3[i, kept[i] : kept[i] + 1] for i in range(n)])
    history: list[list[Click]] = [[c] for c in clicks]  # type: ignore[misc]
    expected = [[mask_iou(pred[i], masks[i])] for i in range(n)]
    for _ in range(2):
        for i in range(n):
            c = next_click(masks[i], pred[i], history[i])
            assert c is not None  # random weights never segment an instance exactly
            history[i].append(c)
        pts = np.array([[[c.x, c.y] for c in h] for h in history], dtype=np.float64)
        lab = np.array([[c.label for c in h] for h in history], dtype=np.int64)
        m1, _, low1 = official.predict(pts, lab, mask_input=logits, multimask_output=False)
        pred = [m1[i, 0] > 0 for i in range(n)]
        logits = low1
        for i in range(n):
            expected[i].append(mask_iou(pred[i], masks[i]))
    for i, row in enumerate(rows[2]):
        assert [float(row[f"iou_{k}"]) for k in (1, 2, 3)] == expected[i]
        assert json.loads(row["clicks"]) == [c.as_list() for c in history[i]]
    m = results[2].metrics
    assert m["miou_clicks_3"] == pytest.approx(np.mean([e[-1] for e in expected]))
    assert m["nof90"] == sum(all(v < 0.9 for v in e) for e in expected)
    assert m["n_prompts"] == 3 * n
    assert math.isfinite(m["decoder_ms_per_prompt"]) and m["decoder_ms_per_prompt"] > 0
    # per-job figures: overlays of the saved image, and the clicks curve by object size
    assert [f["path"] for f in results[2].figures] == [
        "figures/overlays.png", "figures/clicks_by_size.png",
    ]  # fmt: skip
    assert (runs["root"] / "A" / "job2" / "figures" / "clicks_by_size.png").stat().st_size > 0
    assert "UNTRAINED" in results[2].figures[0]["caption"]
    info = results[2].info
    assert info["prompts"]["protocol"]["feed_logits"] is True
    assert len(info["prompts"]["fingerprint"]) == 64
    # the click and clicks jobs derive the same first clicks from the ground truth
    assert info["prompts"]["fingerprint"] == results[0].info["prompts"]["fingerprint"]


# ------------------------------------------------------------------------- detector boxes


def test_detector_boxes_are_matched_and_missed_instances_count_zero(runs) -> None:
    masks, dets = runs["masks"], runs["dets"]
    _, det_job = runs["B"]
    n = len(masks)
    m = det_job.metrics
    assert m["box_recall"] == pytest.approx((n - 1) / n)
    assert m["n_unmatched_boxes"] == 1
    assert m["n_prompts"] == n  # n - 1 matched + 1 false positive, all prompted
    gt_rows, det_rows = runs["rows"][("B", 0)], runs["rows"][("B", 1)]
    for a, b in zip(gt_rows[:-1], det_rows[:-1], strict=True):
        assert b["status"] == "ok" and float(b["det_box_iou"]) == 1.0
        assert json.loads(b["box"]) == json.loads(a["box"])
        # the same box in another batch: the same mask up to float noise
        assert float(b["iou"]) == pytest.approx(float(a["iou"]), abs=1e-3)
    assert det_rows[-1]["status"] == "missed" and float(det_rows[-1]["iou"]) == 0.0
    assert m["miou_box"] == pytest.approx(np.mean([float(r["iou"]) for r in det_rows]))
    assert det_job.info["prompts"]["boxes"]["n_detections"] == len(dets)


# ------------------------------------------------------------------------- encoder cache


def test_encoder_cache_restores_the_encoding_with_the_same_results(runs) -> None:
    first, second = runs["A"][1], runs["B"][0]  # the same box job in both runs
    assert first.info["encoder_cache"]["misses"] == 1 and first.info["encoder_cache"]["writes"] == 1
    assert second.info["encoder_cache"]["hits"] == 1 and second.info["encoder_cache"]["misses"] == 0
    assert runs["rows"][("A", 1)] == runs["rows"][("B", 0)]  # bit-identical IoUs
    # the encoder stage counts the stored seconds, not the load
    assert second.rows[0]["encoder_ms"] == pytest.approx(first.rows[0]["encoder_ms"])
