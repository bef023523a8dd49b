"""``task=semantic predictions=DIR``: saved class maps scored by the semantic evaluator alone,
without SAM 2 or CLIP, through the runner (``run_job``, as the CLI calls it).

* A tiny semantic job (random-weight sam2.1 tiny and a tiny open_clip, on a 2-image folder
  dataset with instance maps the test writes) saves its maps; scoring its ``predictions/``
  (or the job folder) gives the job's ``semantic_miou``, ``pixel_acc``, ``unlabelled_frac`` and
  per-class IoUs exactly, the same ``per_class.csv`` and figures, no mask, instance or CLIP
  metrics, and a record that says it scored saved predictions (from random weights).
* Hand-made PNG folders with known answers: missing, wrong-size, unreadable, colour maps and
  values outside the class list (the void index included) are item errors with their
  reasons; the other images are scored (8-bit and 16-bit "unlabelled" values).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clip_fixtures import tiny_open_clip_dir
from omegaconf import DictConfig
from PIL import Image
from semantic_fixtures import write_street

from sam_bench.data.semantic_folder import SemanticFolderDataset
from sam_bench.errors import ConfigError, SampleError
from sam_bench.run import run_job
from sam_bench.tasks.semantic import SemanticTask
from sam_bench.tasks.semantic import task as semantic_task
from sam_bench.tasks.semantic.labels import label_png
from sam_bench.tasks.semantic.metrics import UNLABELLED
from sam_bench.tasks.semantic.outputs import read_class_png
from sam_bench.tasks.semantic.writer import PREDICTIONS_DIR

THRESHOLDS_OFF = ["amg.pred_iou_thresh=0", "amg.stability_score_thresh=0",
                  "amg.box_nms_thresh=1.0"]  # fmt: skip
#: What the job reports and a replay of its maps must not (there are no masks, no CLIP run).
MASK_METRICS = ("labelled_mask_frac", "mask_confidence_mean", "clip_ms_per_mask", "clip_ms_mean",
                "mask_count_mean", "coverage", "miou", "ar1000", "latency_ms_p50")  # fmt: skip
MASK_COLUMNS = ("labelled_masks", "mask_confidence_mean", "mask_count", "miou", "coverage")


def compose_cfg(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam_bench.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def run(overrides: list[str], job_dir: Path) -> dict[str, Any]:
    base = ["tracking=none", "progress=false", "warmup=false"]
    return run_job(compose_cfg([*base, *overrides]), job_dir, overrides=overrides,
                   base_dir=job_dir.parent)  # fmt: skip


def folder_dataset(root: Path, void: int | None) -> list[str]:
    return [
        "task=semantic", "dataset=semantic_folder", f"dataset.images={root / 'img'}",
        f"dataset.labels={root / 'sem'}", f"dataset.classes={root / 'classes.txt'}",
        f"dataset.void_index={'null' if void is None else void}",
    ]  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plain(value: Any) -> Any:
    """NaN as ``None`` (so equal values compare equal)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# a job's own maps, scored again


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The semantic job, run once with save_predictions=true (min_confidence 0.45: some masks
    stay unlabelled)."""
    root = tmp_path_factory.mktemp("semantic_predictions")
    data = root / "data"
    write_street(data)
    clip_dir = tiny_open_clip_dir(root / "tiny_clip")
    job_dir = root / "job"
    rec = run(
        [*folder_dataset(data, 9), f"dataset.annotations={data / 'inst'}",
         "model.weights=random", "semantic.clip_weights=random",
         f"semantic.clip_model=local-dir:{clip_dir}", "semantic.min_confidence=0.45",
         "amg.points_per_side=4", *THRESHOLDS_OFF, "save_predictions=true", "seed=2"],
        job_dir,
    )  # fmt: skip
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    # maps with several classes and "unlabelled" pixels, or the comparison proves little
    assert m["n_classes_present"] >= 2 and 0 < m["unlabelled_frac"] < 1, m
    for key in MASK_METRICS:
        assert key in m, key  # the job reports them: the replay must leave them out
    return {"root": root, "data": data, "job": job_dir, "record": rec}


def replay(job: dict[str, Any], source: Path, name: str) -> tuple[dict[str, Any], Path]:
    out = job["root"] / name
    rec = run([*folder_dataset(job["data"], 9), f"predictions={source}"], out)
    return rec, out


@pytest.mark.parametrize("given", ["predictions", "job folder"])
def test_saved_maps_score_exactly_as_the_job(job, given: str, monkeypatch) -> None:
    def no_clip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("scoring saved maps must not need CLIP")

    monkeypatch.setattr(semantic_task, "check_clip", no_clip)
    monkeypatch.setattr(semantic_task, "build_clip", no_clip)
    job_dir: Path = job["job"]
    ran = job["record"]
    source = job_dir / PREDICTIONS_DIR if given == "predictions" else job_dir
    rec, out = replay(job, source, f"scored_{given.replace(' ', '_')}")
    assert rec["status"] == "ok", rec.get("error")
    m, ref = rec["metrics"], ran["metrics"]
    same = ["semantic_miou", "pixel_acc", "unlabelled_frac", "n_classes_present",
            *(k for k in ref if k.startswith("class_iou_"))]  # fmt: skip
    assert len(same) == 4 + 3  # sky, road, car
    assert plain({k: m[k] for k in same}) == plain({k: ref[k] for k in same})
    for key in MASK_METRICS:
        assert key not in m, key
    for key, value in m.items():  # no NaN standing in for a measurement
        if not key.startswith("class_iou_"):
            assert isinstance(value, int | float) and math.isfinite(value), key
    assert m["n_items_ok"] == 2 and m["n_item_errors"] == 0
    # the same tables, per image and per class
    assert (out / "per_class.csv").read_text() == (job_dir / "per_class.csv").read_text()
    rows = read_csv(out / "per_image.csv")
    ran_rows = read_csv(job_dir / "per_image.csv")
    for col in ("image_id", "semantic_miou", "pixel_acc", "unlabelled_frac"):
        assert [r[col] for r in rows] == [r[col] for r in ran_rows], col
    for col in MASK_COLUMNS:
        assert col in ran_rows[0] and col not in rows[0], col
    # the record: saved predictions were scored, from random weights (the job's record says)
    scored = rec["task_info"]["scored_from"]
    assert scored["path"] == str(job_dir / PREDICTIONS_DIR)
    assert scored["images_found"] == 2 and scored["images_missing"] == 0
    assert rec["weights"]["kind"] == "predictions"
    assert rec["weights"]["sha256"] == scored["sha256"]
    assert rec["untrained"] is True and "predictions" in rec["banner"]
    assert rec["task_info"]["per_class_file"] == "per_class.csv"
    assert rec["task_info"]["void_index"] == 9
    # both figures, with the job's captions (its untrained note included)
    assert [f["path"] for f in rec["figures"]] == [f["path"] for f in ran["figures"]]
    assert [f["caption"] for f in rec["figures"]] == [f["caption"] for f in ran["figures"]]
    assert "UNTRAINED (SAM 2 and CLIP random weights)" in rec["figures"][0]["caption"]
    for f in rec["figures"]:
        assert (out / f["path"]).stat().st_size > 0


def test_the_job_wrote_the_maps_read_back(job) -> None:
    """The folder scored above is what ``label_png`` wrote: 8-bit, "unlabelled" 255."""
    data: Path = job["data"]
    pngs = sorted((job["job"] / PREDICTIONS_DIR).glob("*.png"))
    assert [p.name for p in pngs] == ["a.png", "b.png"]
    classes = SemanticFolderDataset(
        data / "img", data / "sem", data / "classes.txt", void_index=9
    ).semantic_classes()
    raw = np.asarray(Image.open(pngs[0]))
    assert raw.dtype == np.uint8 and 255 in raw  # some pixels unlabelled
    back = read_class_png(pngs[0], classes)
    np.testing.assert_array_equal(back == UNLABELLED, raw == 255)
    np.testing.assert_array_equal(back[raw != 255], raw[raw != 255])


# --------------------------------------------------------------------------------------------
# hand-made folders with known answers

#: Ground truth of every image (4x6): rows 0-1 class 0, rows 2-3 class 1, a void corner.
GT = np.array([[5, 0, 0, 0, 0, 0],
               [0, 0, 0, 0, 0, 0],
               [1, 1, 1, 1, 1, 1],
               [1, 1, 1, 1, 1, 1]], np.uint8)  # fmt: skip
IMAGES = ("broken", "colour", "good", "missing", "outside", "sixteen", "small", "void")


def write_small(root: Path) -> Path:
    """Eight 4x6 images with the same ground truth, and a folder of maps, one case each."""
    rng = np.random.default_rng(0)
    for name in IMAGES:
        for folder, arr in (("img", rng.integers(0, 255, (4, 6, 3), np.uint8)), ("sem", GT)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / folder / f"{name}.png")
    (root / "classes.txt").write_text("0 a\n1 b\n2 c\n5 void\n")
    maps = root / "maps"
    maps.mkdir()
    good = np.array([[0, 0, 0, 0, 0, 0],  # the void pixel's prediction is ignored
                     [0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 255, 255, 255],
                     [1, 1, 1, 255, 255, 255]], np.uint8)  # fmt: skip
    Image.fromarray(good).save(maps / "good.png")
    sixteen = np.array(GT, np.uint16)
    sixteen[:2] = 2  # class 0 predicted c everywhere
    sixteen[3, 5] = 65535  # "unlabelled" of a 16-bit map
    Image.fromarray(sixteen).save(maps / "sixteen.png")
    plain_map = GT.copy()
    plain_map[0, 0] = 0  # the void index is no prediction
    Image.fromarray(plain_map[:3]).save(maps / "small.png")
    outside = plain_map.copy()
    outside[2, 2] = 7
    Image.fromarray(outside).save(maps / "outside.png")
    Image.fromarray(GT).save(maps / "void.png")  # holds the void index 5
    Image.fromarray(np.stack([GT] * 3, axis=-1)).save(maps / "colour.png")
    (maps / "broken.png").write_bytes(b"not a png at all")
    Image.fromarray(GT).save(maps / "stray.png")  # no such image
    return maps


def test_hand_made_maps_item_errors_and_known_scores(tmp_path: Path) -> None:
    maps = write_small(tmp_path / "data")
    out = tmp_path / "scored"
    rec = run([*folder_dataset(tmp_path / "data", 5), f"predictions={maps}"], out)
    assert rec["status"] == "partial", rec.get("error")
    errors = {e["image_id"]: e["error"] for e in rec["item_errors"]}
    assert sorted(errors) == ["broken", "colour", "missing", "outside", "small", "void"]
    assert errors["missing"] == f"no prediction missing.png in {maps}"
    assert errors["small"] == "prediction small.png is 6x3, the image's label map is 6x4"
    assert "prediction outside.png holds values 7 that are not class indices" in errors["outside"]
    assert "(0, 1, 2; 'unlabelled' is 255 in 8-bit PNGs)" in errors["outside"]
    assert "void" not in errors["outside"]
    assert "5 is the void index, never a prediction (write 255 there)" in errors["void"]
    assert errors["colour"].startswith("prediction colour.png is RGB")
    assert errors["broken"] == "prediction broken.png is not a PNG file"
    # good + sixteen, one confusion matrix (void ignored): a->a 11, a->c 11, b->b 6 + 11,
    # b->unlabelled 6 + 1 of 46 non-void pixels
    m = rec["metrics"]
    assert m["n_items_ok"] == 2 and m["n_item_errors"] == 6
    assert m["class_iou_a"] == pytest.approx(11 / 22)
    assert m["class_iou_b"] == pytest.approx(17 / 24)
    assert m["class_iou_c"] == 0.0
    assert m["semantic_miou"] == pytest.approx((11 / 22 + 17 / 24 + 0) / 3)
    assert m["pixel_acc"] == pytest.approx(28 / 46)
    assert m["unlabelled_frac"] == pytest.approx(7 / 46)
    assert m["n_classes_present"] == 3
    for key in MASK_METRICS:
        assert key not in m, key
    rows = {r["image_id"]: r for r in read_csv(out / "per_image.csv")}
    assert float(rows["good"]["pixel_acc"]) == pytest.approx(17 / 23)
    assert float(rows["good"]["unlabelled_frac"]) == pytest.approx(6 / 23)
    assert float(rows["sixteen"]["pixel_acc"]) == pytest.approx(11 / 23)
    assert rows["small"]["error"] == errors["small"] and rows["good"]["error"] == ""
    per_class = {r["name"]: r for r in read_csv(out / "per_class.csv")}
    assert (per_class["a"]["gt_pixels"], per_class["c"]["pred_pixels"]) == ("22", "11")
    assert per_class["(unlabelled)"]["pred_pixels"] == "7"
    scored = rec["task_info"]["scored_from"]
    assert scored["path"] == str(maps) and scored["unknown_files"] == ["stray.png"]
    assert (scored["images_found"], scored["images_missing"]) == (7, 1)
    assert scored["source"] == {} and rec["untrained"] is None and rec["banner"] is None
    assert [Path(f["path"]).name for f in rec["figures"]] == ["confusion.png", "semantic_maps.png"]
    assert "UNTRAINED" not in rec["figures"][0]["caption"]


# --------------------------------------------------------------------------------------------
# unit level: the reader


def small_dataset(root: Path, void: int | None = 5) -> SemanticFolderDataset:
    return SemanticFolderDataset(root / "img", root / "sem", root / "classes.txt", void_index=void)


def test_label_png_maps_read_back_exactly(tmp_path: Path) -> None:
    """What the job writes (:func:`label_png`) is what ``predictions=DIR`` reads: 8-bit with
    "unlabelled" 255, 16-bit with 65535 once a class index reaches 255."""
    write_small(tmp_path)
    few = small_dataset(tmp_path).semantic_classes()
    (tmp_path / "classes.txt").write_text("0 a\n255 b\n300 c\n")
    many = small_dataset(tmp_path, void=None).semantic_classes()
    for classes, values in ((few, [UNLABELLED, 0, 1, 2]), (many, [UNLABELLED, 0, 255, 300])):
        label_map = np.random.default_rng(1).choice(values, size=(5, 7)).astype(np.int32)
        png, unlabelled = label_png(label_map)
        assert unlabelled == (255 if classes is few else 65535)
        Image.fromarray(png).save(tmp_path / "m.png")
        np.testing.assert_array_equal(read_class_png(tmp_path / "m.png", classes), label_map)
    # 255 in a 16-bit map is a class index, not "unlabelled": not one of `few`'s
    Image.fromarray(np.full((2, 2), 255, np.uint16)).save(tmp_path / "m.png")
    with pytest.raises(SampleError, match="'unlabelled' is 65535 in 16-bit PNGs"):
        read_class_png(tmp_path / "m.png", few)
    # a palette PNG gives its indices, not its colours
    pal = Image.fromarray(np.array([[0, 2], [255, 1]], np.uint8), mode="P")
    pal.putpalette([9, 9, 9] * 256)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        read_class_png(tmp_path / "p.png", few), [[0, 2], [UNLABELLED, 1]]
    )


def test_folder_not_found_or_without_any_map_is_a_config_error(tmp_path: Path) -> None:
    write_small(tmp_path)
    dataset = small_dataset(tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        SemanticTask.read_predictions(tmp_path / "nowhere", dataset)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no class map for any of the 8 images .*broken\.png"):
        SemanticTask.read_predictions(tmp_path / "empty", dataset)


def test_a_job_folder_is_read_from_its_predictions_subfolder(tmp_path: Path) -> None:
    maps = write_small(tmp_path)
    dataset = small_dataset(tmp_path)
    job = tmp_path / "job"
    job.mkdir()
    maps.rename(job / PREDICTIONS_DIR)
    source = SemanticTask.read_predictions(job, dataset)
    assert source.path == job / PREDICTIONS_DIR
    assert source.info()["images_found"] == 7
    ref = next(r for r in dataset.refs() if r.image_id == "good")
    assert source.get(ref).label_map[2, 5] == UNLABELLED
    # a folder holding PNGs of its own is read as it is
    Image.fromarray(GT).save(job / "good.png")
    assert SemanticTask.read_predictions(job, dataset).path == job
