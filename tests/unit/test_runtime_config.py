"""model.runtime settings: validation, the runtime registry, config_id rules, missing
libraries."""

from __future__ import annotations

from typing import Any

import pytest
from hydra import compose
from omegaconf import OmegaConf

from sam_bench import registry
from sam_bench.config import ModelConfig, register_configs, to_typed
from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.identity import config_id, config_identity, model_identity

register_configs()
pytestmark = pytest.mark.usefixtures("hydra_conf")


def _cfg(*overrides: str) -> Any:
    return to_typed(compose("config", overrides=["model.weights=random", *overrides]))


def _id(*overrides: str) -> str:
    from sam_bench.tasks import get_task

    raw = OmegaConf.to_container(
        compose("config", overrides=["model.weights=random", *overrides]), resolve=True
    )
    assert isinstance(raw, dict)
    return config_id(get_task("amg").identity(raw, data="d", weights="w"))


def test_defaults_and_every_registered_runtime_validates() -> None:
    cfg = _cfg()
    assert (cfg.model.runtime, cfg.model.agreement_items) == ("eager", 2)
    assert cfg.model.runtime_options == {} and cfg.model.runtime_cache is None
    assert set(registry.names("runtime")) == {
        "eager", "compile", "bf16", "onnxruntime", "transformers"
    }  # fmt: skip
    for name in registry.names("runtime"):
        assert _cfg(f"model.runtime={name}").model.runtime == name


def test_unknown_runtime_is_one_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as e:
        _cfg("model.runtime=bf61")
    text = str(e.value)
    assert "model.runtime" in text and "did you mean 'bf16'" in text and "onnxruntime" in text


def test_bad_values_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.agreement_items"):
        _cfg("model.agreement_items=-1")
    with pytest.raises(ConfigError, match=r"model\.runtime_cache"):
        _cfg("model.runtime_cache=' '")
    with pytest.raises(ConfigError, match="dtype") as e:
        _cfg("dtype=bf16", "model.runtime=bf16")
    assert "model.runtime=bf16 alone" in str(e.value)
    assert _cfg("dtype=bf16").dtype == "bf16", "dtype=bf16 alone still works (eager)"


def test_eager_identity_is_the_one_without_runtime_keys() -> None:
    """At the default runtime the identity document is byte-identical to one whose model
    section never had the runtime keys (the ids recorded before runtimes existed)."""
    raw = OmegaConf.to_container(compose("config", overrides=["model.weights=random"]))
    assert isinstance(raw, dict)
    old = {**raw, "model": {k: v for k, v in raw["model"].items()
                            if k not in ("runtime", "agreement_items", "runtime_options",
                                         "runtime_cache")}}  # fmt: skip
    kw: dict[str, Any] = {"task": "amg", "settings": {}, "uses_engine": True, "data": "d",
                          "weights": "w"}  # fmt: skip
    assert "runtime" in raw["model"], "the composed config has the new keys"
    assert config_identity(raw, **kw) == config_identity(old, **kw)
    assert config_id(config_identity(raw, **kw)) == config_id(config_identity(old, **kw))


def test_what_enters_the_config_id() -> None:
    eager = _id()
    assert _id("model.runtime=eager") == eager
    assert _id("model.agreement_items=5") == eager, "agreement_items never enters the id"
    assert _id("model.runtime_cache=/tmp/x") == eager, "runtime_cache never enters the id"
    assert _id("+model.runtime_options.mode=max-autotune") == eager, "eager ignores options"
    bf16, compiled = _id("model.runtime=bf16"), _id("model.runtime=compile")
    assert len({eager, bf16, compiled}) == 3, "a non-eager runtime changes the id"
    assert _id("model.runtime=compile", "model.agreement_items=0") == compiled
    assert _id("model.runtime=compile", "+model.runtime_options.mode=max-autotune") != compiled


def test_model_identity_keeps_runtime_options_only_when_set() -> None:
    base = {"size": "tiny", "runtime": "compile", "runtime_options": {}, "agreement_items": 2}
    assert model_identity(base) == {"size": "tiny", "runtime": "compile"}
    with_opts = model_identity({**base, "runtime_options": {"mode": "x"}})
    assert with_opts["runtime_options"] == {"mode": "x"}


def test_a_missing_library_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A runtime whose module imports a library that is not installed."""
    from sam_bench.models.runtimes.apply import INSTALL_HINT, load_runtime

    (tmp_path / "runtime_needing_a_lib.py").write_text(
        "import sam_bench_no_such_library_xyz\n\nclass R:\n    pass\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._TABLES["runtime"], "needs_lib", "runtime_needing_a_lib:R")
    with pytest.raises(SamBenchError) as e:
        load_runtime("needs_lib")
    text = str(e.value)
    assert "\n" not in text and INSTALL_HINT in text and "sam_bench_no_such_library_xyz" in text


def test_a_runtime_module_not_yet_installed_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from sam_bench.models.runtimes.apply import load_runtime

    target = "sam_bench.models.runtimes.no_such_runtime_module:X"
    monkeypatch.setitem(registry._TABLES["runtime"], "later", target)
    with pytest.raises(SamBenchError, match="not part of this installation"):
        load_runtime("later")


def test_runtimes_refuse_unknown_options() -> None:
    import torch

    from sam_bench.models.runtimes.apply import prepare_runtime

    cfg = ModelConfig(name="m", runtime="bf16", runtime_options={"mode": "x"})
    with pytest.raises(ConfigError, match=r"model\.runtime_options"):
        prepare_runtime(torch.nn.Module(), cfg, torch.device("cpu"), "w")


def test_default_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from sam_bench.models.runtimes.apply import cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir(ModelConfig(name="m")) == tmp_path / "sam_bench" / "runtimes"
    assert cache_dir(ModelConfig(name="m", runtime_cache=str(tmp_path / "c"))) == tmp_path / "c"


def test_runtimes_preset_sweeps_every_runtime_on_two_sizes() -> None:
    cfg = compose("config", overrides=["sweep=runtimes"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert set(str(params["model.runtime"]).split(",")) == set(registry.names("runtime"))
    assert str(params["model"]).split(",") == ["sam2.1_hiera_tiny", "sam2.1_hiera_small"]
    typed = to_typed(compose("config", overrides=["sweep=runtimes", "model.runtime=bf16"]))
    assert typed.model.weights == "random" and typed.dataset.format == "synthetic"
