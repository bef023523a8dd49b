"""``model.runtime=onnxruntime``: SAM 2's prompt path exported to ONNX, run by ONNX Runtime.

:class:`OnnxRuntime` exports the image encoder, the prompt encoder (points, boxes, mask
inputs), the mask decoder's ``predict_masks`` and its two high-resolution convolutions with
``torch.onnx.export`` (:mod:`sam_bench.models.runtimes.onnx_graphs`), caches the files, and
swaps the model's three components for adapters backed by ONNX Runtime sessions
(:mod:`sam_bench.models.runtimes.onnx_modules`). sam2's own predictors and generator then run
unchanged; the video memory encoder and memory attention stay eager.

Options (``model.runtime_options``):

* ``opset`` (int, default 17): the ONNX opset of the export (14-21).
* ``providers`` (``auto`` | ``cpu`` | ``cuda``, default ``auto``): ``auto`` uses ONNX Runtime's
  CUDA execution provider when the job's device is CUDA, the CPU provider otherwise; ``cuda``
  needs a CUDA device and ``onnxruntime-gpu``; ``cpu`` runs the sessions on the CPU whatever
  the device (tensors are copied).
* ``intra_op_threads`` (int >= 1, default ``torch.get_num_threads()``): ONNX Runtime's
  intra-op threads per session.
* ``exporter`` (``torchscript`` | ``dynamo``, default ``torchscript``): which
  ``torch.onnx.export`` path writes the files (``dynamo`` needs ``onnxscript``).

Cache: ``<cache_dir>/<weights_hash>-<component>-opset<N>-<shape>[-dynamo]-v<12 hex>.onnx``
(``-dynamo`` for that exporter; ``v<12 hex>``: a digest of the versions of torch, onnx,
onnxruntime and, for the dynamo exporter, onnxscript (:func:`export_versions`), so an upgrade
of any of them exports again instead of reusing a file the old versions wrote), written
atomically (temporary file, then rename) and reused by the next prepare.
``Prepared.prepare_s`` is the export + session-creation time; ``Prepared.details`` says per
component whether the file was a cache hit and how long its export took, and the versions
(``export_versions``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.models.runtimes.base import FLOAT, Prepared, RuntimeOptions
from sam_bench.models.runtimes.onnx_graphs import GraphSpec, graph_specs
from sam_bench.models.runtimes.onnx_modules import (
    OrtConv,
    OrtGraph,
    OrtImageEncoder,
    OrtMaskDecoder,
    OrtPromptEncoder,
)

INSTALL_HINT = "pip install sam_bench[runtimes]"
OPTION_KEYS = ("opset", "providers", "intra_op_threads", "exporter")
PROVIDERS = ("auto", "cpu", "cuda")
EXPORTERS = ("torchscript", "dynamo")
OPSETS = range(14, 22)
#: The bound on |ONNX Runtime - eager| of the mask logits (``Prepared.logit_tol``; measured
#: ~1e-6 on CPU, tests/integration/test_runtime_onnx_official.py asserts it).
ONNX_LOGIT_TOL = 1e-4


def _key(name: str) -> str:
    return f"model.runtime_options.{name}"


def _check_int(name: str, value: Any, allowed: range) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise ConfigError(
            _key(name), f"{value!r} is not an integer in {allowed.start}..{allowed.stop - 1}"
        )
    return value


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(_key(name), f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def validate_options(options: dict[str, Any]) -> dict[str, Any]:
    """``model.runtime_options`` with the defaults filled in; raises :class:`ConfigError`
    (one line naming the key) for an unknown key or a bad value."""
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ConfigError(
            _key(unknown[0]),
            f"unknown option for model.runtime=onnxruntime (known: {', '.join(OPTION_KEYS)})",
        )
    threads = options.get("intra_op_threads", torch.get_num_threads())
    return {
        "opset": _check_int("opset", options.get("opset", 17), OPSETS),
        "providers": _check_choice("providers", options.get("providers", "auto"), PROVIDERS),
        "intra_op_threads": _check_int("intra_op_threads", threads, range(1, 4097)),
        "exporter": _check_choice("exporter", options.get("exporter", "torchscript"), EXPORTERS),
    }


def import_onnxruntime(exporter: str = "torchscript") -> Any:
    """The ``onnxruntime`` module (and, for the dynamo exporter, a check that ``onnxscript``
    imports); raises :class:`SamBenchError` naming the install command when missing."""
    needed = ["onnxruntime", "onnx"] + (["onnxscript"] if exporter == "dynamo" else [])
    modules = {}
    for name in needed:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as e:
            raise SamBenchError(
                f"model.runtime=onnxruntime needs the {name} package ({e}): {INSTALL_HINT}"
            ) from None
    return modules["onnxruntime"]


def session_providers(ort: Any, device: torch.device, choice: str) -> list[Any]:
    """The execution providers for ``device`` and ``providers=choice``; raises
    :class:`SamBenchError` when CUDA is asked for and cannot be given."""
    use_cuda = choice == "cuda" or (choice == "auto" and device.type == "cuda")
    if not use_cuda:
        return ["CPUExecutionProvider"]
    if device.type != "cuda":
        raise ConfigError(_key("providers"), f"cuda needs a CUDA device (the job runs on {device})")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SamBenchError(
            f"model.runtime=onnxruntime on {device} needs ONNX Runtime's CUDA execution provider, "
            f"which this onnxruntime {ort.__version__} lacks: pip install onnxruntime-gpu "
            "(instead of onnxruntime), or set model.runtime_options.providers=cpu"
        )
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def export_versions(exporter: str) -> dict[str, str]:
    """The library versions an export depends on: torch (the exporter), onnx (the graph
    format and its checker), onnxruntime (which reads it) and, for the dynamo exporter,
    onnxscript (which writes it). Part of the cache key (:func:`cache_path`)."""
    names = ["onnx", "onnxruntime"] + (["onnxscript"] if exporter == "dynamo" else [])
    versions = {"torch": str(torch.__version__)}
    for name in names:
        versions[name] = str(getattr(importlib.import_module(name), "__version__", "unknown"))
    return versions


def versions_tag(versions: dict[str, str]) -> str:
    """``v`` and 12 hex digits of the sha256 of ``versions`` (sorted ``name=version`` lines)."""
    text = "\n".join(f"{k}={versions[k]}" for k in sorted(versions))
    return "v" + hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(
    cache_dir: Path,
    weights_hash: str,
    spec: GraphSpec,
    opts: dict[str, Any],
    versions: dict[str, str],
) -> Path:
    """Where ``spec``'s export lives for these weights, opset, exporter and library
    ``versions`` (:func:`export_versions`)."""
    suffix = "-dynamo" if opts["exporter"] == "dynamo" else ""
    name = (
        f"{weights_hash}-{spec.component}-opset{opts['opset']}-{spec.shape}{suffix}-"
        f"{versions_tag(versions)}.onnx"
    )
    return cache_dir / name


def export_graph(spec: GraphSpec, path: Path, opset: int, exporter: str) -> None:
    """Export ``spec`` to ``path`` atomically (a temporary file in the same folder, renamed);
    raises :class:`SamBenchError` with the exporter's reason when the export fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    kwargs: dict[str, Any] = {"dynamo": exporter == "dynamo"}
    if exporter == "dynamo":
        # torch.export's form of the dynamic axes: one entry per input, in order
        dims = [spec.dynamic_axes.get(n, {}) for n in spec.input_names]
        shapes = tuple({axis: torch.export.Dim.DYNAMIC for axis in d} for d in dims)
        kwargs.update(external_data=False, verbose=False, dynamic_shapes=shapes)
    else:
        kwargs["dynamic_axes"] = spec.dynamic_axes or None
    quiet = io.StringIO()
    try:
        with (
            torch.no_grad(),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                spec.module, spec.example, str(tmp), input_names=spec.input_names,
                output_names=spec.output_names, opset_version=opset, **kwargs,
            )  # fmt: skip
        os.replace(tmp, path)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SamBenchError(
            f"model.runtime=onnxruntime: exporting {spec.component} with the {exporter} exporter "
            f"at opset {opset} failed: {first}"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


class OnnxRuntime:
    """``model.runtime=onnxruntime`` (see the module docstring for options and cache)."""

    name = "onnxruntime"
    exact = True

    def prepare(
        self, model: torch.nn.Module, device: torch.device, options: RuntimeOptions
    ) -> Prepared:
        """Export (or reuse) the graphs of ``model`` (a ``SAM2Base`` or
        ``SAM2VideoPredictor``, float32, on ``device``) and swap its image encoder, prompt
        encoder and mask decoder for ONNX Runtime adapters, in place."""
        opts = validate_options(dict(options.options))
        ort = import_onnxruntime(opts["exporter"])
        providers = session_providers(ort, device, opts["providers"])
        dtypes = {p.dtype for p in model.parameters()}
        if dtypes != {torch.float32}:
            found = ", ".join(sorted(map(str, dtypes)))
            raise SamBenchError(f"model.runtime=onnxruntime exports float32 models, not {found}")
        start = time.perf_counter()
        sess_opts = ort.SessionOptions()
        sess_opts.intra_op_num_threads = opts["intra_op_threads"]
        sess_opts.inter_op_num_threads = 1
        sess_opts.log_severity_level = 3  # errors only (shape-merge notes are not for users)
        graphs: dict[str, OrtGraph] = {}
        files: dict[str, dict[str, Any]] = {}
        was_training = model.training
        model.eval()
        versions = export_versions(opts["exporter"])
        for spec in graph_specs(model):
            path = cache_path(Path(options.cache_dir), options.weights_hash, spec, opts, versions)
            hit = path.is_file()
            t0 = time.perf_counter()
            if not hit:
                export_graph(spec, path, opts["opset"], opts["exporter"])
            export_s = time.perf_counter() - t0
            session = ort.InferenceSession(str(path), sess_opts, providers=providers)
            if providers[0] != "CPUExecutionProvider" and (
                session.get_providers()[0] != "CUDAExecutionProvider"
            ):
                raise SamBenchError(
                    "model.runtime=onnxruntime: ONNX Runtime could not start its CUDA execution "
                    f"provider (it fell back to {session.get_providers()}); check the CUDA and "
                    "cuDNN libraries onnxruntime-gpu needs, or set "
                    "model.runtime_options.providers=cpu"
                )
            graphs[spec.component] = OrtGraph(session)
            files[spec.component] = {
                "file": str(path), "cache_hit": hit, "export_s": round(export_s, 3),
            }  # fmt: skip
        self._swap(model, graphs)
        model.train(was_training)
        used = graphs["decoder"].session.get_providers()
        return Prepared(
            model=model,
            prepare_s=time.perf_counter() - start,
            exact=self.exact,
            exactness=FLOAT,
            logit_tol=ONNX_LOGIT_TOL,
            details={
                "runtime": self.name,
                "onnxruntime": ort.__version__,
                "providers": used,
                "opset": opts["opset"],
                "exporter": opts["exporter"],
                "export_versions": versions,
                "intra_op_threads": opts["intra_op_threads"],
                "cache_hit": all(f["cache_hit"] for f in files.values()),
                "export_s": round(sum(f["export_s"] for f in files.values()), 3),
                "files": files,
                "eager": "positional encodings (shape-only), video memory encoder/attention",
            },
        )

    @staticmethod
    def _swap(sam: torch.nn.Module, graphs: dict[str, OrtGraph]) -> None:
        """Replace the three components of ``sam`` by their adapters."""
        model: Any = sam  # sam2's modules are untyped
        enc = model.image_encoder
        pe, dec = model.sam_prompt_encoder, model.sam_mask_decoder
        size = int(model.image_size)
        convs: list[torch.nn.Module | None] = [None, None]
        if dec.use_high_res_features:
            convs = [OrtConv(graphs["conv_s0"]), OrtConv(graphs["conv_s1"])]
        new_enc = OrtImageEncoder(graphs["encoder"], enc.neck.position_encoding, (1, 3, size, size))
        new_pe = OrtPromptEncoder(
            pe, graphs["prompt_points"], graphs["prompt_boxes"], graphs["prompt_masks"]
        )
        new_dec = OrtMaskDecoder(dec, graphs["decoder"], convs[0], convs[1])
        device = next(pe.parameters()).device
        model.image_encoder = new_enc.to(device)
        model.sam_prompt_encoder = new_pe.to(device)
        model.sam_mask_decoder = new_dec.to(device)
