"""The encoder cache with the real encoder (random-weight SAM 2.1 tiny, CPU): restored entries
give bit-identical masks, timing stays per configuration, and two commands share a folder."""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from sam_bench.config import DatasetConfig, ModelConfig, PreprocessConfig
from sam_bench.data.registry import build_dataset
from sam_bench.engines.encoder_cache import EncoderCache, encoder_identity
from sam_bench.engines.fast import FastAMG
from sam_bench.metrics.cost import Clock, StageTimes
from sam_bench.models.build import build_model
from sam_bench.preprocess import to_model_input
from sam_bench.tasks.amg.settings import AMGConfig

CPU = torch.device("cpu")
KEEP = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
#: Two configurations sharing one encoder/decoder pass (the grouped path).
CFGS = [
    AMGConfig(points_per_side=4, **KEEP),
    AMGConfig(points_per_side=4, **{**KEEP, "box_nms_thresh": 0.7}),
]
MODEL = ModelConfig(
    name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
    sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
    url="http://127.0.0.1:9/x.pt", weights="random",
)  # fmt: skip


@pytest.fixture(scope="module")
def built() -> tuple[torch.nn.Module, dict[str, str]]:
    """The model and its encoder identity (for ``EncoderCache(dir, max_gb, identity, CPU)``)."""
    model, weights = build_model(MODEL, CPU, seed=0, progress=False)
    return model, encoder_identity(MODEL, weights.state_dict_hash, "fp32", CPU)


@pytest.fixture(scope="module")
def image():
    ds = build_dataset(DatasetConfig(scenes=["color"], limit=1), Path("."))
    return to_model_input(ds.load(ds.refs()[0]).raw, PreprocessConfig())[0]


def generate(model, image, cache: EncoderCache | None):
    times = [StageTimes() for _ in CFGS]
    return FastAMG(model, CFGS, CPU, encoder_cache=cache).generate_many(image, times), times


@pytest.fixture(scope="module")
def uncached(built, image):
    return generate(built[0], image, None)


@pytest.fixture(scope="module")
def cold(built, image, tmp_path_factory):
    """One run filling an empty cache folder: (folder, cache, masks, times)."""
    root = tmp_path_factory.mktemp("enc")
    cache = EncoderCache(root, 10.0, built[1], CPU)
    outs, times = generate(built[0], image, cache)
    return root, cache, outs, times


def test_cold_and_warm_cache_give_the_uncached_masks(built, image, uncached, cold) -> None:
    ref, _ = uncached
    root, cache, outs, times = cold
    assert sum(len(o) for o in ref) > 0, "the case keeps no mask: it tests nothing"
    # MaskRecord equality: RLE bytes, scores, boxes, points, crop boxes all exactly equal
    assert outs == ref
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (0, 1, 1)
    (entry_file,) = [p for p in root.rglob("*") if p.is_file()]
    key = entry_file.stem
    assert entry_file == cache.path(key)

    warm = EncoderCache(root, 10.0, built[1], CPU)
    outs_warm, times_warm = generate(built[0], image, warm)
    assert outs_warm == ref
    assert (warm.stats.hits, warm.stats.misses, warm.stats.writes) == (1, 0, 0)
    stored = EncoderCache(root, 10.0, built[1], CPU).get(key)
    assert stored is not None
    # the encoder stage is what the encoder cost when computed, on the cold and warm run alike
    for t_cold, t_warm in zip(times, times_warm, strict=True):
        assert t_cold.seconds["encoder"] == stored.encoder_s
        assert t_warm.seconds["encoder"] == stored.encoder_s


def test_corrupt_entry_is_recomputed_and_rewritten(
    built, image, cold, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    root = tmp_path / "enc"
    shutil.copytree(cold[0], root)
    cache = EncoderCache(root, 10.0, built[1], CPU)
    path = cache.path(cache.key(image))
    good = cache.get(cache.key(image))
    assert good is not None
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn write

    predictor = SAM2ImagePredictor(built[0])
    fresh = EncoderCache(root, 10.0, built[1], CPU)
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        seconds = fresh.set_image(predictor, image, Clock(CPU))
    assert str(path) in caplog.text
    assert (fresh.stats.errors, fresh.stats.misses, fresh.stats.writes) == (1, 1, 1)
    assert seconds > 0 and predictor._is_image_set
    assert torch.equal(predictor._features["image_embed"], good.image_embed)
    rewritten = fresh.get(fresh.key(image))
    assert rewritten is not None and rewritten.encoder_s == seconds
    for a, b in zip(rewritten.high_res_feats, good.high_res_feats, strict=True):
        assert torch.equal(a, b)


def test_warm_up_bypasses_the_cache(built, image, tmp_path: Path) -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    cache = EncoderCache(tmp_path, 10.0, built[1], CPU)
    with cache.suspended(), torch.inference_mode():
        cache.set_image(SAM2ImagePredictor(built[0]), image, Clock(CPU))
    assert cache.active and cache.entries() == []
    assert (cache.stats.hits, cache.stats.misses, cache.stats.writes) == (0, 0, 0)


# ------------------------------------------------------------------------ command line

#: Columns of summary.csv that differ between commands: timings measured anew, job folders.
PER_COMMAND = {
    "latency_ms_mean", "latency_ms_p50", "latency_ms_p90", "images_per_s", "decoder_ms_mean",
    "postprocess_ms_mean", "preprocess_ms_mean", "metrics_ms_mean", "marginal_ms_mean",
    "peak_rss_mb", "model_build_s", "job", "job_dir", "peak_gpu_mem_mb",
}  # fmt: skip


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: r["amg.box_nms_thresh"])


def test_second_command_restores_the_encoder_and_reports_the_same(tmp_path: Path) -> None:
    enc = tmp_path / "enc"

    def sweep(out: Path):
        proc = run_cli(
            ["-m", "model.weights=random", "tracking=none", "progress=false",
             "amg.points_per_side=4", "amg.pred_iou_thresh=0", "amg.stability_score_thresh=0",
             "amg.box_nms_thresh=1.0,0.7", "dataset.limit=1", "cache.dir=enc",
             f"hydra.sweep.dir={out}"],
            tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return _rows(out)

    first, second = sweep(tmp_path / "A"), sweep(tmp_path / "B")
    assert len(first) == 2 and float(first[0]["mask_count_mean"]) > 0
    for a, b in zip(first, second, strict=True):
        same = {k: v for k, v in a.items() if k not in PER_COMMAND}
        assert same == {k: v for k, v in b.items() if k not in PER_COMMAND}
        assert a["encoder_ms_mean"] == b["encoder_ms_mean"], "the stored encoder time"
    for out, expect in ((tmp_path / "A", (0, 1, 1)), (tmp_path / "B", (1, 0, 0))):
        for job in ("0", "1"):
            info = json.loads((out / job / "result.json").read_text())["task_info"]
            assert len(info["grouped_with_jobs"]) == 2
            c = info["encoder_cache"]
            assert c["dir"] == str(enc.resolve())
            # hits, misses, writes of the timed pass (the warm-up bypasses the cache)
            assert (c["hits"], c["misses"], c["writes"]) == expect
    (entry,) = [p for p in enc.rglob("*") if p.is_file()]
    assert entry.suffix == ".pt" and entry.parent.name == entry.stem[:2]


def test_cache_dir_that_is_a_file_fails_before_the_model_is_built(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    proc = run_cli(
        ["model.weights=random", "tracking=none", "progress=false", f"cache.dir={tmp_path / 'f'}"],
        tmp_path,
        timeout=120,
    )
    assert proc.returncode != 0
    rec = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert rec["status"] == "failed" and "cache.dir" in rec["error"]
    assert "not a folder" in rec["error"]
    assert rec["weights"] == {}, "failed before the model was built"
