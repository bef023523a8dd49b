"""``resume=true`` inside a semantic configuration, in process through the shared loop (sam2.1
tiny and a tiny open_clip model, both with random weights, on a small semantic folder the test
writes):

* a job whose per-item log holds every image reuses them all (nothing is encoded) and ends
  with the same metrics, ``per_image.csv`` rows, ``per_class.csv``, ``predictions.json`` and
  figures as the run that wrote the log;
* a job killed after its first image reuses that one and computes the second: the same
  accuracy metrics (per-class IoUs, pixel accuracy... exactly), per-class table, predictions
  and figure examples as the uninterrupted run.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from clip_fixtures import tiny_open_clip_dir
from PIL import Image
from semantic_fixtures import write_street

from sam_bench.config import DatasetConfig, TaskConfig, root_schema
from sam_bench.data.registry import build_dataset
from sam_bench.loop import run_items
from sam_bench.models.build import WeightsInfo
from sam_bench.resume import ITEM_LOG, open_item_log
from sam_bench.tasks.amg.settings import AMGConfig
from sam_bench.tasks.base import JobContext, TaskResult
from sam_bench.tasks.semantic import SemanticTask
from sam_bench.tasks.semantic.labels import label_map_from_rles, label_map_rles
from sam_bench.tasks.semantic.settings import SemanticConfig
from sam_bench.tasks.semantic.writer import (
    PER_CLASS_FILE,
    PREDICTIONS_DIR,
    PREDICTIONS_FILE,
    SemanticWriter,
)

WEIGHTS = WeightsInfo("random", None, "test-weights", None, "random")
KEEP = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
HEADER = {"test": "semantic resume"}
SEED = 2
"""Seeds SAM 2's and CLIP's random weights (with seed 2 the tiny CLIP tells the colours
apart: more than one class is predicted)."""
#: The group's jobs: two overlap rules, one with a confidence threshold and predictions saved.
JOBS = [
    {"overlap": "iou", "min_confidence": 0.0, "save_predictions": True},
    {"overlap": "area", "min_confidence": 0.45, "save_predictions": False},
]
#: Metrics that depend on timing (the rest must be equal to the last bit).
TIMED = ("latency", "_ms", "images_per_s", "peak_", "model_build_s")


def write_dataset(root: Path) -> DatasetConfig:
    """:func:`write_street`'s two images and a tiny open_clip folder."""
    write_street(root)
    tiny_open_clip_dir(root / "tiny_clip")
    return dataset_config(root)


def dataset_config(root: Path) -> DatasetConfig:
    return DatasetConfig(
        name="tiny_semantic", format="semantic_folder", images=str(root / "img"),
        labels=str(root / "sem"), annotations=str(root / "inst"),
        classes=str(root / "classes.txt"), void_index=9,
    )  # fmt: skip


def make_task(model: Any, root: Path, data: Path, save_masks: int) -> SemanticTask:
    dcfg = dataset_config(data)
    dataset = build_dataset(dcfg, Path("."))
    clip_dir = data / "tiny_clip"
    jobs = []
    for j, job in enumerate(JOBS):
        sem = SemanticConfig(
            clip_model=f"local-dir:{clip_dir}", clip_weights="random", overlap=job["overlap"],
            min_confidence=job["min_confidence"], batch_size=8,
        )  # fmt: skip
        cfg = root_schema()(
            task=TaskConfig(name="semantic", save_masks=save_masks),
            amg=AMGConfig(points_per_side=4, **KEEP), semantic=sem, dataset=dcfg,
            save_predictions=job["save_predictions"], seed=SEED,
        )  # fmt: skip
        jobs.append(JobContext(
            cfg=cfg, device=torch.device("cpu"), model=model, weights=WEIGHTS, dataset=dataset,
            refs=dataset.refs(), job_dir=root / f"job{j}",
        ))  # fmt: skip
    task = SemanticTask(jobs)
    writers: list[SemanticWriter] = []
    make_writer = task.make_writer

    def keep(job: int) -> Any:  # the writers keep the figure's examples
        writer = make_writer(job)
        assert isinstance(writer, SemanticWriter)
        writers.append(writer)
        return writer

    task.make_writer = keep  # type: ignore[method-assign]
    task.writers = writers  # type: ignore[attr-defined]
    return task


def run(task: SemanticTask, *, reuse: bool, warmup: bool = False) -> list[TaskResult]:
    logs = [open_item_log(c.job_dir, HEADER, reuse=reuse) for c in task.jobs]
    try:
        return run_items(task, warmup=warmup, progress=False, logs=logs)
    finally:
        for lg in logs:
            lg.close()
        task.close()


def plain(value: Any) -> Any:
    """NaN as ``None`` (so equal rows compare equal)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def accuracy(metrics: dict[str, float]) -> dict[str, Any]:
    return plain({k: v for k, v in metrics.items() if not any(t in k for t in TIMED)})


def outputs(root: Path) -> dict[str, Any]:
    """What the jobs wrote that a resumed run must write again the same."""
    out: dict[str, Any] = {}
    for j in range(len(JOBS)):
        job = root / f"job{j}"
        out[f"{j}/per_class"] = (job / PER_CLASS_FILE).read_text()
        preds = job / PREDICTIONS_FILE
        out[f"{j}/predictions"] = json.loads(preds.read_text()) if preds.is_file() else None
        for png in sorted((job / PREDICTIONS_DIR).glob("*.png")):
            out[f"{j}/{png.name}"] = np.asarray(Image.open(png)).tolist()
    return out


def examples(task: SemanticTask) -> list[list[tuple[str, list[Any], list[Any], list[Any]]]]:
    """The figure's example images, ground truths and predicted maps, per job."""
    return [
        [(e.image_id, e.image.tolist(), e.gt.tolist(), e.pred.tolist()) for e in job]
        for job in (w.examples for w in task.writers)  # type: ignore[attr-defined]
    ]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The group run once over both images, writing its item logs (save_masks=1)."""
    base = tmp_path_factory.mktemp("semantic_resume")
    data = base / "data"
    write_dataset(data)
    task = make_task(tiny_model, base / "A", data, save_masks=1)
    results = run(task, reuse=False)
    for res in results:
        assert res.item_errors == [] and res.metrics["n_items_ok"] == 2
    # maps with several classes and "unlabelled" pixels, or the comparisons prove little
    assert results[0].metrics["class_iou_sky"] > 0 and results[0].metrics["class_iou_road"] > 0
    assert results[1].metrics["unlabelled_frac"] > 0 and results[1].metrics["pixel_acc"] > 0
    assert 0 < results[1].metrics["labelled_mask_frac"] < 1
    return {
        "base": base, "data": data, "results": results, "outputs": outputs(base / "A"),
        "examples": examples(task),
    }  # fmt: skip


def test_label_map_round_trips_through_its_rles() -> None:
    rng = np.random.default_rng(1)
    label_map = rng.choice([-1, 0, 3, 300], size=(7, 5)).astype(np.int32)
    entries = json.loads(json.dumps(label_map_rles(label_map)))
    back = label_map_from_rles(entries, 7, 5)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, label_map)
    assert [e[0] for e in entries] == [0, 3, 300]  # "unlabelled" is what no entry covers


def test_resume_reuses_every_image_and_writes_the_same(tiny_model, uninterrupted) -> None:
    first: list[TaskResult] = uninterrupted["results"]
    base: Path = uninterrupted["base"]
    # the job folders moved elsewhere: nothing is matched by path
    shutil.copytree(base / "A", base / "A2")
    for res in first:  # the logs hold both images, predictions compact (RLE, no dense map)
        assert res.info["resume"] == {"reused_images": 0, "computed_images": 2}
    for j in range(len(JOBS)):
        lines = (base / "A2" / f"job{j}" / ITEM_LOG).read_text().splitlines()
        assert len(lines) == 3
        pred = json.loads(lines[1])["prediction"]
        assert set(pred) >= {"masks", "scores", "labels", "confidences", "label_map"}
        assert all(isinstance(m["counts"], str) for m in pred["masks"])
        assert all(isinstance(c, str) for _, c in pred["label_map"])
        dense = (len(pred["masks"]) + 1) * 48 * 64  # a character per pixel of each map
        assert len(json.dumps(pred)) < dense / 2
    again = make_task(tiny_model, base / "A2", uninterrupted["data"], save_masks=1)
    computed: list[int] = []
    again.engine.generate_many = lambda *a, **k: computed.append(1)  # type: ignore[method-assign]
    second = run(again, reuse=True, warmup=True)  # no warm-up either: nothing is computed
    assert computed == []
    for a, b in zip(first, second, strict=True):
        assert b.info["resume"] == {"reused_images": 2, "computed_images": 0}
        same = plain({k: v for k, v in a.metrics.items()})
        assert plain(b.metrics) == same  # timing too: the rows keep the earlier run's
        assert any(k.startswith("class_iou_") for k in same) and "pixel_acc" in same
        assert "miou" in same  # the instance metrics of the same masks
        assert plain(b.rows) == plain(a.rows)
        assert b.item_errors == []
        assert b.figures == a.figures and len(a.figures) == 2
    assert outputs(base / "A2") == uninterrupted["outputs"]
    assert examples(again) == uninterrupted["examples"]
    assert [len(e) for e in examples(again)] == [1, 1]  # save_masks=1: the first image only
    preds = uninterrupted["outputs"]["0/predictions"]
    assert {p["image_id"] for p in preds["predictions"]} == {"a", "b"}
    assert uninterrupted["outputs"]["1/predictions"] is None  # job 1 does not save them


def test_resume_after_a_kill_reuses_the_first_image_and_computes_the_second(
    tiny_model, uninterrupted
) -> None:
    base: Path = uninterrupted["base"]
    data: Path = uninterrupted["data"]
    reference: list[TaskResult] = uninterrupted["results"]
    # killed while the second image is computed: the log holds the first only
    killed = make_task(tiny_model, base / "K", data, save_masks=1)
    generate = killed.engine.generate_many
    calls: list[int] = []

    def kill_on_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    killed.engine.generate_many = kill_on_second  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        run(killed, reuse=False)
    for j in range(len(JOBS)):
        lines = (base / "K" / f"job{j}" / ITEM_LOG).read_text().splitlines()
        assert [json.loads(line).get("image_id") for line in lines[1:]] == ["a"]

    resumed_task = make_task(tiny_model, base / "K", data, save_masks=1)
    resumed = run(resumed_task, reuse=True)
    for r, b in zip(reference, resumed, strict=True):
        assert b.info["resume"] == {"reused_images": 1, "computed_images": 1}
        assert b.item_errors == [] and b.metrics["n_items_ok"] == 2
        assert accuracy(b.metrics) == accuracy(r.metrics)
        for key in ("pixel_acc", "semantic_miou", "unlabelled_frac", "miou"):
            assert b.metrics[key] == r.metrics[key]
        for key in [k for k in r.metrics if k.startswith("class_iou_")]:
            assert plain(b.metrics[key]) == plain(r.metrics[key]), key
        assert [accuracy(row) for row in b.rows] == [accuracy(row) for row in r.rows]
        assert b.figures == r.figures
    assert outputs(base / "K") == uninterrupted["outputs"]
    # the figure shows the example the killed run saved (the first image), drawn again
    assert examples(resumed_task) == uninterrupted["examples"]
