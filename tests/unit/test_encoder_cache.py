"""The on-disk encoder cache without a model: keys, entries, LRU cap, bad files, bad folders.

Entries here hold small tensors; ``tests/integration/test_encoder_cache_engine.py`` runs the real
encoder through the cache.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose

from sam_bench.config import CacheConfig, ModelConfig, register_configs, to_typed
from sam_bench.engines.encoder_cache import (
    EncoderCache,
    EncoderEntry,
    encoder_identity,
    resolve_dir,
)
from sam_bench.errors import ConfigError

register_configs()

CPU = torch.device("cpu")
IDENTITY = {
    "weights": "w" * 64,
    "model": "sam2.1_hiera_tiny",
    "sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "dtype": "fp32",
    "device": "cpu",
    "device_name": "some cpu",
    "sam2": "1.1.0",
    "torch": "2.0",
}


def image(seed: int = 0, shape: tuple[int, ...] = (24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def entry(seed: int = 0, encoder_s: float = 1.5) -> EncoderEntry:
    g = torch.Generator().manual_seed(seed)
    return EncoderEntry(
        image_embed=torch.randn(1, 8, 4, 4, generator=g).permute(0, 2, 3, 1),  # strided
        high_res_feats=[  # under bf16 autocast the high-res maps are bf16, the embedding fp32
            torch.randn(1, 2, 16, 16, generator=g).to(torch.bfloat16),
            torch.randn(1, 4, 8, 8, generator=g),
        ],
        orig_hw=[(24, 32)],
        is_batch=False,
        encoder_s=encoder_s,
    )


def cache(root: Path, max_gb: float = 10.0, **identity: str) -> EncoderCache:
    return EncoderCache(root, max_gb, {**IDENTITY, **identity}, CPU)


def model_cfg(**kw: str) -> ModelConfig:
    base = {
        "name": "sam2.1_hiera_tiny", "family": "sam2.1", "size": "tiny",
        "sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml", "checkpoint_file": "x.pt",
        "url": "http://127.0.0.1:9/x.pt", "weights": "random",
    }  # fmt: skip
    return ModelConfig(**{**base, **kw})


# ------------------------------------------------------------------------------ keys


def test_equal_inputs_give_equal_keys(tmp_path: Path) -> None:
    a, b = cache(tmp_path / "a"), cache(tmp_path / "b")
    assert a.key(image()) == b.key(image())
    # the key is the array's content: a strided view equals its contiguous copy
    big = image(shape=(40, 50, 3))
    assert a.key(big[5:29, 3:35]) == a.key(np.ascontiguousarray(big[5:29, 3:35]))
    assert len(a.key(image())) == 64


@pytest.mark.parametrize("field", sorted(IDENTITY))
def test_every_identity_field_changes_the_key(tmp_path: Path, field: str) -> None:
    assert cache(tmp_path, **{field: "other"}).key(image()) != cache(tmp_path).key(image())


def test_image_bytes_shape_and_dtype_change_the_key(tmp_path: Path) -> None:
    c = cache(tmp_path)
    base = image()
    flipped = base.copy()
    flipped[0, 0, 0] ^= 1
    keys = {
        c.key(base),
        c.key(flipped),
        c.key(base.reshape(32, 24, 3)),  # same bytes, other shape
        c.key(base.view(np.int8)),  # same bytes, other dtype
    }
    assert len(keys) == 4


def test_identity_reflects_weights_model_dtype_and_device() -> None:
    base = encoder_identity(model_cfg(), "h1", "fp32", CPU)
    assert base["weights"] == "h1" and base["dtype"] == "fp32" and base["device"] == "cpu"
    assert base["sam2"] and base["torch"] == torch.__version__
    variants = [
        encoder_identity(model_cfg(), "h2", "fp32", CPU),
        encoder_identity(model_cfg(), "h1", "bf16", CPU),
        encoder_identity(model_cfg(name="sam2.1_hiera_small"), "h1", "fp32", CPU),
        encoder_identity(
            model_cfg(sam2_config="configs/sam2.1/sam2.1_hiera_s.yaml"), "h1", "fp32", CPU
        ),
    ]
    for v in variants:
        assert v != base
    # the decoder-only setting does not split the cache
    assert encoder_identity(model_cfg(), "h1", "fp32", CPU) == encoder_identity(
        ModelConfig(**{**vars(model_cfg()), "apply_postprocessing": True}), "h1", "fp32", CPU
    )


def test_identity_reflects_a_runtime_other_than_eager() -> None:
    """A runtime computes other bits: its name and options enter the key; eager adds
    nothing, so eager keys are those written before runtimes existed."""
    base = encoder_identity(model_cfg(), "h1", "fp32", CPU)
    assert "runtime" not in base
    eager = ModelConfig(**{**vars(model_cfg()), "runtime": "eager", "agreement_items": 0})
    assert encoder_identity(eager, "h1", "fp32", CPU) == base
    bf16 = ModelConfig(**{**vars(model_cfg()), "runtime": "bf16"})
    compiled = ModelConfig(**{**vars(model_cfg()), "runtime": "compile"})
    tuned = ModelConfig(**{**vars(compiled), "runtime_options": {"mode": "max-autotune"}})
    ids = [encoder_identity(m, "h1", "fp32", CPU) for m in (bf16, compiled, tuned)]
    assert len({json.dumps(i, sort_keys=True) for i in [base, *ids]}) == 4


@pytest.mark.usefixtures("fp32_settings")
def test_identity_reflects_the_float32_numerics() -> None:
    """TF32 and the matmul precision change what a CUDA "fp32" encoder computes."""
    torch.backends.cudnn.allow_tf32 = True
    base = encoder_identity(model_cfg(), "h1", "fp32", CPU)
    assert base["cudnn_allow_tf32"] == "True"
    assert base["cudnn_version"] == str(
        torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    )
    torch.backends.cudnn.allow_tf32 = False
    no_tf32_conv = encoder_identity(model_cfg(), "h1", "fp32", CPU)
    assert no_tf32_conv != base
    torch.set_float32_matmul_precision("medium")
    assert encoder_identity(model_cfg(), "h1", "fp32", CPU) != no_tf32_conv


# ---------------------------------------------------------------------------- entries


def test_put_then_get_round_trips_exactly(tmp_path: Path) -> None:
    c = cache(tmp_path)
    key, e = c.key(image()), entry()
    assert c.get(key) is None
    assert c.put(key, e)
    got = c.get(key)
    assert got is not None
    assert torch.equal(got.image_embed, e.image_embed)
    assert got.image_embed.stride() == e.image_embed.stride()
    for x, y in zip(got.high_res_feats, e.high_res_feats, strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y)
    assert got.orig_hw == [(24, 32)] and got.is_batch is False and got.encoder_s == 1.5
    assert c.path(key) == tmp_path / key[:2] / f"{key}.pt"
    assert (c.stats.hits, c.stats.misses, c.stats.writes) == (1, 1, 1)
    assert c.info()["dir"] == str(tmp_path) and c.info()["hits"] == 1
    # no temporary file is left behind
    assert [p.name for p in c.path(key).parent.iterdir()] == [f"{key}.pt"]


def test_the_encoder_peak_is_stored_and_older_entries_read_as_unknown(tmp_path: Path) -> None:
    c = cache(tmp_path)
    key = c.key(image())
    e = entry()
    e.encoder_peak_mb = 321.5
    assert c.put(key, e)
    got = c.get(key)
    assert got is not None and got.encoder_peak_mb == 321.5
    stored = e.to_dict(key)
    del stored["encoder_peak_mb"]  # written before the field existed: still a valid entry
    assert math.isnan(EncoderEntry.from_dict(stored, key).encoder_peak_mb)


@pytest.mark.parametrize(
    "content", [b"", b"not a torch file", "truncated"], ids=["empty", "garbage", "truncated"]
)
def test_unreadable_entry_is_a_miss_and_is_removed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes | str
) -> None:
    c = cache(tmp_path)
    key = c.key(image())
    c.put(key, entry())
    path = c.path(key)
    data = path.read_bytes()[:100] if content == "truncated" else content
    assert isinstance(data, bytes)
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="sam_bench.engines.encoder_cache"):
        assert c.get(key) is None
    assert str(path) in caplog.text
    assert not path.exists()
    assert c.stats.errors == 1 and c.stats.misses == 1


def test_an_entry_stored_under_another_key_is_not_used(tmp_path: Path) -> None:
    c = cache(tmp_path)
    k1, k2 = c.key(image(1)), c.key(image(2))
    c.put(k1, entry())
    c.path(k2).parent.mkdir(parents=True, exist_ok=True)
    os.replace(c.path(k1), c.path(k2))  # a renamed file is not the entry of k2
    assert c.get(k2) is None and not c.path(k2).exists()


def test_a_hit_touches_its_file(tmp_path: Path) -> None:
    c = cache(tmp_path)
    key = c.key(image())
    c.put(key, entry())
    os.utime(c.path(key), (1_000_000, 1_000_000))
    assert c.get(key) is not None
    assert c.path(key).stat().st_mtime > 1_000_000


# ------------------------------------------------------------------------- size cap


def _fill(c: EncoderCache, n: int) -> list[str]:
    """``n`` entries with increasing (explicit) mtimes: index 0 is the least recently used."""
    keys = []
    for i in range(n):
        key = c.key(image(i))
        c.put(key, entry(i))
        os.utime(c.path(key), (1_000_000 + i, 1_000_000 + i))
        keys.append(key)
    return keys


def test_lru_entries_are_removed_to_fit_the_cap(tmp_path: Path) -> None:
    probe = cache(tmp_path / "probe")
    size = probe.path(_fill(probe, 1)[0]).stat().st_size
    c = cache(tmp_path / "c", max_gb=3.5 * size / 1e9)  # room for 3 entries
    keys = _fill(c, 3)
    assert c.stats.evictions == 0
    assert c.get(keys[0]) is not None  # entry 0 becomes the most recently used
    new = c.key(image(99))
    c.put(new, entry(99))  # 4 entries > cap: the least recently used (entry 1) goes
    assert c.stats.evictions == 1
    assert not c.path(keys[1]).exists()
    assert all(c.path(k).exists() for k in (keys[0], keys[2], new))
    assert len(c.entries()) == 3


def test_eviction_never_removes_files_that_are_not_entries(tmp_path: Path) -> None:
    keys = _fill(cache(tmp_path), 2)
    c = cache(tmp_path, max_gb=1e-12)  # the same folder, a cap smaller than any entry
    shard = c.path(keys[0]).parent
    strangers = [
        tmp_path / "README.txt",
        tmp_path / ("b" * 64 + ".pt"),  # an entry name, but not in its shard
        shard / ".tmp-crashed-writer.pt",
        shard / "notes.pt",
        tmp_path / "zz" / (keys[0] + ".pt"),  # not a hex shard
    ]
    other_shard = "00" if not keys[0].startswith("00") else "01"
    strangers.append(tmp_path / other_shard / keys[0].replace(keys[0][:2], "ff", 1))
    for p in strangers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 1000)
    assert len(c.entries()) == 2
    assert c.evict() == 2
    c.put(c.key(image(5)), entry(5))  # written, then over the cap itself
    assert c.entries() == [] and c.stats.evictions == 3
    assert all(p.exists() for p in strangers)


# ----------------------------------------------------------------- failures and folders


def test_a_failed_write_is_a_warning_and_leaves_no_temp_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = cache(tmp_path)
    key = c.key(image())
    (tmp_path / key[:2]).write_text("a file where the shard folder should be")
    with caplog.at_level(logging.WARNING, logger="sam_bench.engines.encoder_cache"):
        assert c.put(key, entry()) is False
    assert "cannot write" in caplog.text and key in caplog.text
    assert c.stats.errors == 1 and c.stats.writes == 0
    assert (tmp_path / key[:2]).read_text().startswith("a file"), "never removed"


def test_a_failed_replace_is_a_warning_and_removes_the_temp_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    c = cache(tmp_path)
    key = c.key(image())
    shard = tmp_path / key[:2]
    shard.mkdir()
    (shard / f"{key}.pt").mkdir()  # os.replace onto a folder fails like a full disk would
    with caplog.at_level(logging.WARNING, logger="sam_bench.engines.encoder_cache"):
        assert c.put(key, entry()) is False
    assert [p.name for p in shard.iterdir()] == [f"{key}.pt"], "temp file removed"


def test_cache_is_off_without_dir(tmp_path: Path) -> None:
    assert resolve_dir(CacheConfig(), tmp_path) is None


def test_dir_is_created_and_relative_to_the_launch_dir(tmp_path: Path) -> None:
    root = resolve_dir(CacheConfig(dir="sub/cache"), tmp_path)
    assert root == (tmp_path / "sub" / "cache").resolve() and root.is_dir()


def test_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder") as err:
        resolve_dir(CacheConfig(dir=str(tmp_path / "f")), tmp_path)
    assert err.value.key == "cache.dir"


def test_dir_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="cannot create") as err:
        resolve_dir(CacheConfig(dir=str(tmp_path / "f" / "cache")), tmp_path)
    assert err.value.key == "cache.dir"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_dir_is_a_config_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="not writable"):
        resolve_dir(CacheConfig(dir=str(ro)), tmp_path)


# ---------------------------------------------------------------------------- config


@pytest.mark.usefixtures("hydra_conf")
def test_cache_settings_compose_from_the_command_line() -> None:
    cfg = to_typed(compose("config", overrides=["cache.dir=/tmp/x", "cache.max_gb=0.5"]))
    assert cfg.cache == CacheConfig(dir="/tmp/x", max_gb=0.5)
    assert to_typed(compose("config")).cache.dir is None


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_gb": 0.0}, "cache.max_gb"),
        ({"max_gb": -1.0}, "cache.max_gb"),
        ({"max_gb": float("nan")}, "cache.max_gb"),
        ({"dir": " "}, "cache.dir"),
    ],
)
def test_out_of_range_cache_settings_name_their_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        CacheConfig(**kwargs)
    assert err.value.key == key


# ------------------------------------------------------------------- which cache a group uses


def _ctx(tmp_path: Path, cache_dir: Path | None, engine: str = "fast"):
    from sam_bench.config import Config
    from sam_bench.models.build import WeightsInfo
    from sam_bench.tasks.base import JobContext

    cache = CacheConfig(dir=None if cache_dir is None else str(cache_dir))
    cfg = Config(model=model_cfg(), engine=engine, cache=cache)
    weights = WeightsInfo("random", None, "h" * 64, None, "random")
    return JobContext(
        cfg=cfg, device=CPU, model=torch.nn.Identity(), weights=weights, dataset=None,  # type: ignore[arg-type]
        refs=[], job_dir=tmp_path, cache_dir=cache_dir,
    )  # fmt: skip


def test_a_group_uses_the_first_job_that_sets_a_cache_dir(tmp_path: Path) -> None:
    from sam_bench.tasks.amg.task import open_encoder_cache

    assert open_encoder_cache([_ctx(tmp_path, None), _ctx(tmp_path, None)]) is None
    a, b = tmp_path / "a", tmp_path / "b"
    c = open_encoder_cache([_ctx(tmp_path, None), _ctx(tmp_path, a), _ctx(tmp_path, b)])
    assert c is not None and c.root == a
    assert c.identity == encoder_identity(model_cfg(), "h" * 64, "fp32", CPU)
    assert c.info()["max_gb"] == 10.0


def test_the_reference_engine_uses_no_cache(tmp_path: Path) -> None:
    from sam_bench.tasks.amg.task import open_encoder_cache

    assert open_encoder_cache([_ctx(tmp_path, tmp_path / "a", engine="reference")]) is None
