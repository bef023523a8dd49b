"""The ONNX Runtime runtime's pieces: options, errors, cache names, atomic export, and the
prompt encoder / mask decoder adapters against sam2's eager modules on every input form sam2
uses (the image encoder's export is exercised by tests/integration/test_runtime_onnx_official.py).
Random-weight sam2.1 tiny (the session ``tiny_model``)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.models.runtimes.base import RuntimeOptions
from sam_bench.models.runtimes.onnx import (
    INSTALL_HINT,
    OnnxRuntime,
    cache_path,
    export_graph,
    export_versions,
    session_providers,
    validate_options,
)
from sam_bench.models.runtimes.onnx_graphs import GraphSpec, graph_specs
from sam_bench.models.runtimes.onnx_modules import (
    OrtConv,
    OrtGraph,
    OrtMaskDecoder,
    OrtPromptEncoder,
)

ort = pytest.importorskip("onnxruntime")
TOL = 1e-5


# ------------------------------------------------------------------ options and errors


def test_defaults_filled_in() -> None:
    opts = validate_options({})
    assert opts == {"opset": 17, "providers": "auto", "intra_op_threads": torch.get_num_threads(),
                    "exporter": "torchscript"}  # fmt: skip
    assert validate_options({"opset": 18, "providers": "cpu", "intra_op_threads": 2,
                             "exporter": "dynamo"})["opset"] == 18  # fmt: skip


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"opset": 9}, "opset"),
        ({"opset": "17"}, "opset"),
        ({"opset": True}, "opset"),
        ({"providers": "tensorrt"}, "providers"),
        ({"intra_op_threads": 0}, "intra_op_threads"),
        ({"exporter": "jit"}, "exporter"),
        ({"opsett": 17}, "opsett"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_options(options)
    msg = str(info.value)
    assert f"model.runtime_options.{key}" in msg and "\n" not in msg


def test_bad_options_fail_before_any_export(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    opts = RuntimeOptions(weights_hash="h", cache_dir=tmp_path, options={"providers": "gpu"})
    with pytest.raises(ConfigError, match="providers"):
        OnnxRuntime().prepare(tiny_model, torch.device("cpu"), opts)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_missing_library_names_the_extra(
    tiny_model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import onnxruntime` now raises ImportError
    opts = RuntimeOptions(weights_hash="h", cache_dir=tmp_path)
    with pytest.raises(SamBenchError) as info:
        OnnxRuntime().prepare(tiny_model, torch.device("cpu"), opts)
    msg = str(info.value)
    assert INSTALL_HINT == "pip install sam_bench[runtimes]"
    assert INSTALL_HINT in msg and missing in msg and "\n" not in msg


def test_dynamo_exporter_needs_onnxscript(
    tiny_model: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    opts = RuntimeOptions(weights_hash="h", cache_dir=tmp_path, options={"exporter": "dynamo"})
    with pytest.raises(SamBenchError, match=r"onnxscript.*pip install sam_bench\[runtimes\]"):
        OnnxRuntime().prepare(tiny_model, torch.device("cpu"), opts)


def test_providers() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert session_providers(ort, cpu, "auto") == ["CPUExecutionProvider"]
    assert session_providers(ort, cuda, "cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match=r"providers.*needs a CUDA device"):
        session_providers(ort, cpu, "cuda")


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime-gpu installed"
)
def test_cuda_without_onnxruntime_gpu_is_one_line() -> None:
    for choice in ("auto", "cuda"):
        with pytest.raises(SamBenchError) as info:
            session_providers(ort, torch.device("cuda"), choice)
        msg = str(info.value)
        assert "pip install onnxruntime-gpu" in msg and "providers=cpu" in msg
        assert "\n" not in msg


VERSIONS = {"torch": "2.14.1", "onnx": "1.23.2", "onnxruntime": "1.32.0"}


def test_cache_names_follow_weights_opset_exporter_shape_and_versions(
    tiny_model: torch.nn.Module,
) -> None:
    specs = {s.component: s for s in graph_specs(tiny_model)}
    d = Path("/c")
    base = validate_options({})
    enc = cache_path(d, "abc", specs["encoder"], base, VERSIONS)
    assert enc.parent == d and enc.suffix == ".onnx"
    assert enc.name.startswith("abc-encoder-opset17-1x3x1024x1024-v")
    others = [
        cache_path(d, "abd", specs["encoder"], base, VERSIONS),
        cache_path(d, "abc", specs["encoder"], {**base, "opset": 18}, VERSIONS),
        cache_path(d, "abc", specs["encoder"], {**base, "exporter": "dynamo"}, VERSIONS),
        cache_path(d, "abc", specs["decoder"], base, VERSIONS),
    ]
    # an upgrade of any library the export depends on is another file, not a stale reuse
    upgrades = [
        cache_path(d, "abc", specs["encoder"], base, {**VERSIONS, name: version})
        for name, version in [
            ("torch", "2.15.0"), ("torch", "2.14.1+cu128"), ("onnx", "1.24.0"),
            ("onnxruntime", "1.33.0"), ("onnxscript", "0.7.2"),
        ]
    ]  # fmt: skip
    assert len({enc, *others, *upgrades}) == 1 + len(others) + len(upgrades)
    assert cache_path(d, "abc", specs["encoder"], {**base, "intra_op_threads": 7}, VERSIONS) == enc
    assert cache_path(d, "abc", specs["encoder"], base, dict(reversed(VERSIONS.items()))) == enc


def test_export_versions_are_the_installed_ones() -> None:
    import onnx

    expected = {"torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__}  # fmt: skip
    assert export_versions("torchscript") == expected
    onnxscript = pytest.importorskip("onnxscript")
    assert export_versions("dynamo") == {**expected, "onnxscript": onnxscript.__version__}


class _Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("cannot trace this\nsecond line")


def test_failed_export_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    spec = GraphSpec("broken", _Broken(), (torch.zeros(1),), ["x"], ["y"], {}, "1")
    path = tmp_path / "x.onnx"
    with pytest.raises(SamBenchError) as info:
        export_graph(spec, path, 17, "torchscript")
    assert "broken" in str(info.value) and "cannot trace this" in str(info.value)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ adapters vs eager modules


@pytest.fixture(scope="module")
def graphs(tiny_model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Sessions of every graph but the (slow to export) image encoder."""
    cache = tmp_path_factory.mktemp("onnx-unit")
    opts = validate_options({"intra_op_threads": 1})
    versions = export_versions(opts["exporter"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    out = {}
    for spec in graph_specs(tiny_model):
        if spec.component == "encoder":
            continue
        path = cache_path(cache, "unit", spec, opts, versions)
        export_graph(spec, path, opts["opset"], opts["exporter"])
        out[spec.component] = OrtGraph(
            ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        )
    return out


@pytest.fixture(scope="module")
def prompt_encoder(tiny_model: torch.nn.Module, graphs: dict) -> OrtPromptEncoder:
    pe = tiny_model.sam_prompt_encoder
    return OrtPromptEncoder(pe, graphs["prompt_points"], graphs["prompt_boxes"],
                            graphs["prompt_masks"])  # fmt: skip


def _points(b: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(b, n, 2, generator=g) * 1024
    labels = torch.randint(-1, 4, (b, n), generator=g, dtype=torch.int32)
    return coords, labels


def _boxes(b: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(b)
    xy = torch.rand(b, 2, generator=g) * 500
    return torch.cat([xy, xy + 10 + torch.rand(b, 2, generator=g) * 500], dim=1)


PROMPT_CASES = {
    "points": lambda: (_points(3, 2, 0), None, None),
    "one_point": lambda: (_points(1, 1, 1), None, None),
    "many_points": lambda: (_points(2, 9, 2), None, None),
    "points_and_boxes": lambda: (_points(2, 3, 3), _boxes(2), None),
    "boxes": lambda: (None, _boxes(4), None),
    "masks": lambda: (None, None, torch.randn(2, 1, 256, 256)),
    "points_and_masks": lambda: (_points(2, 2, 4), None, torch.randn(2, 1, 256, 256) * 8),
    "nothing": lambda: (None, None, None),
}


@pytest.mark.parametrize("case", list(PROMPT_CASES))
def test_prompt_encoder_adapter_matches_sam2(
    tiny_model: torch.nn.Module, prompt_encoder: OrtPromptEncoder, case: str
) -> None:
    args = PROMPT_CASES[case]()
    with torch.inference_mode():
        sparse_e, dense_e = tiny_model.sam_prompt_encoder(*args)
        sparse_o, dense_o = prompt_encoder(*args)
    assert sparse_e.shape == sparse_o.shape and dense_e.shape == dense_o.shape
    assert sparse_e.dtype == sparse_o.dtype and dense_e.dtype == dense_o.dtype
    if sparse_e.numel():
        assert float((sparse_e - sparse_o).abs().max()) < TOL
    assert float((dense_e - dense_o).detach().abs().max()) < TOL
    assert sparse_e.numel() + dense_e.numel() > 0


def test_adapters_can_be_deep_copied(prompt_encoder: OrtPromptEncoder) -> None:
    points = _points(2, 3, 7)
    copied = copy.deepcopy(prompt_encoder)
    with torch.inference_mode():
        assert torch.equal(copied(points, None, None)[0], prompt_encoder(points, None, None)[0])
    assert copied.points is prompt_encoder.points  # the session is shared, not copied


def test_prompt_encoder_adapter_attributes(
    tiny_model: torch.nn.Module, prompt_encoder: OrtPromptEncoder
) -> None:
    pe = tiny_model.sam_prompt_encoder
    for name in ("mask_input_size", "image_embedding_size", "input_image_size"):
        assert tuple(getattr(prompt_encoder, name)) == tuple(getattr(pe, name)), name
    assert prompt_encoder.embed_dim == pe.embed_dim
    assert torch.equal(prompt_encoder.get_dense_pe(), pe.get_dense_pe())


@pytest.fixture(scope="module")
def decoders(tiny_model: torch.nn.Module, graphs: dict) -> tuple[Any, OrtMaskDecoder]:
    eager = tiny_model.sam_mask_decoder
    onnx = OrtMaskDecoder(eager, graphs["decoder"], OrtConv(graphs["conv_s0"]),
                          OrtConv(graphs["conv_s1"]))  # fmt: skip
    return eager, onnx


def _decoder_inputs(model: Any, b: int, n_img: int, sparse_n: int, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    pe = model.sam_prompt_encoder
    if sparse_n:
        coords = torch.rand(b, sparse_n, 2, generator=g) * 1024
        sparse, dense = pe((coords, torch.ones(b, sparse_n, dtype=torch.int32)), None, None)
    else:
        sparse, dense = pe(None, None, torch.randn(b, 1, 256, 256, generator=g))
    return {
        "image_embeddings": torch.randn(n_img, 256, 64, 64, generator=g),
        "image_pe": pe.get_dense_pe(),
        "sparse_prompt_embeddings": sparse,
        "dense_prompt_embeddings": dense,
        "high_res_features": [
            torch.randn(n_img, 32, 256, 256, generator=g),
            torch.randn(n_img, 64, 128, 128, generator=g),
        ],
    }


DECODER_CASES = {
    # (prompts, images, sparse tokens, repeat_image)
    "repeat_image": (4, 1, 1, True),
    "per_prompt_image": (2, 2, 2, False),
    "no_sparse_tokens": (2, 1, 0, True),
    "one_prompt": (1, 1, 1, True),
}


# dynamic_multimask_via_stability only acts on single-mask output
@pytest.mark.parametrize(("multimask", "dynamic"), [(True, False), (False, False), (False, True)])
@pytest.mark.parametrize("case", list(DECODER_CASES))
def test_mask_decoder_adapter_matches_sam2(
    tiny_model: torch.nn.Module, decoders: tuple[Any, OrtMaskDecoder], case: str,
    multimask: bool, dynamic: bool,
) -> None:  # fmt: skip
    eager, onnx = copy.copy(decoders[0]), copy.copy(decoders[1])
    eager.dynamic_multimask_via_stability = onnx.dynamic_multimask_via_stability = dynamic
    b, n_img, n, repeat = DECODER_CASES[case]
    with torch.inference_mode():
        inputs = _decoder_inputs(tiny_model, b, n_img, n, seed=b + n)
        conv = [(eager.conv_s0, onnx.conv_s0), (eager.conv_s1, onnx.conv_s1)]
        for size, (ce, co) in zip((256, 128), conv, strict=True):
            level = torch.randn(n_img, 256, size, size)  # an FPN level, as forward_image gives
            assert float((ce(level) - co(level)).abs().max()) < TOL
        out_e = eager(**inputs, multimask_output=multimask, repeat_image=repeat)
        out_o = onnx(**inputs, multimask_output=multimask, repeat_image=repeat)
    for name, e, o in zip(("masks", "iou", "tokens", "obj"), out_e, out_o, strict=True):
        assert e.shape == o.shape and e.dtype == o.dtype, name
        assert float((e - o).abs().max()) < 1e-4, name
    assert out_e[0].shape[:2] == (b, 3 if multimask else 1)


def test_export_leaves_the_model_in_eval_mode(tiny_model: torch.nn.Module, graphs: dict) -> None:
    # torch.onnx.export restores the exported module's mode recursively: a wrapper left in
    # training mode would switch sam2's modules to training (no dynamic multimask...)
    assert graphs and not [n for n, m in tiny_model.named_modules() if m.training]


def test_eager_internals_are_not_reachable(decoders: tuple[Any, OrtMaskDecoder]) -> None:
    with pytest.raises(AttributeError, match=r"model\.runtime=onnxruntime.*'transformer'"):
        _ = decoders[1].transformer
    assert decoders[1].num_mask_tokens == decoders[0].num_mask_tokens
