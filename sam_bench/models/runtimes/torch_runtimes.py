"""The PyTorch runtimes: ``eager`` (sam2 as built), ``compile`` (``torch.compile`` of each
component) and ``bf16`` (each component under bf16 autocast). See ``base.py`` for the
contract and :mod:`sam_bench.models.runtimes.apply` for how a job picks one."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import torch

from sam_bench.errors import ConfigError
from sam_bench.models.runtimes.base import APPROXIMATE, EAGER, FLOAT, Prepared, RuntimeOptions
from sam_bench.models.runtimes.swap import Delegating, swap, to_float32

#: ``compile``'s bound on |compiled - eager| of the mask logits (``Prepared.logit_tol``;
#: measured on sam2.1 tiny with random weights, CPU inductor: ~5e-5).
COMPILE_LOGIT_TOL = 1e-4


def _refuse_unknown(runtime: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    extra = sorted(set(options) - set(known))
    if extra:
        takes = ", ".join(known) or "no options"
        raise ConfigError(
            "model.runtime_options",
            f"model.runtime={runtime} does not take {', '.join(extra)} (it takes {takes})",
        )


def warm_up(model: torch.nn.Module) -> None:
    """One image encoded and one click decoded through sam2's ``SAM2ImagePredictor`` (the
    path the image tasks take): a compiling runtime compiles here, so its first compilation
    is part of ``prepare_s``."""
    from sam_bench.models.image_predictor import image_predictor

    predictor = image_predictor(model)
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        predictor.set_image(image)
        predictor.predict(
            point_coords=np.array([[32.0, 32.0]]), point_labels=np.array([1]), multimask_output=True
        )
    predictor.reset_predictor()


class EagerRuntime:
    """``model.runtime=eager``: sam2's PyTorch modules as built (the reference)."""

    name = EAGER
    exact = True

    def prepare(
        self, model: torch.nn.Module, device: torch.device, options: RuntimeOptions
    ) -> Prepared:
        _refuse_unknown(self.name, options.options, ())
        return Prepared(model=model, prepare_s=0.0, exact=True)


class CompileRuntime:
    """``model.runtime=compile``: ``torch.compile`` of the image encoder, the prompt encoder
    and the mask decoder (not the whole model: the official predictors' Python around them
    stays as it is). The first compilation happens in a warm-up call (:func:`warm_up`) and is
    recorded as ``prepare_s``; shapes first met later (a larger prompt batch) compile in the
    job's untimed warm-up pass.

    ``model.runtime_options``: ``backend`` (default ``inductor``), ``mode`` (``null``,
    ``reduce-overhead``, ``max-autotune``...), ``dynamic`` (``null``: torch's default,
    dynamic after the first recompilation), ``fullgraph`` (default ``false``)."""

    name = "compile"
    exact = True
    OPTIONS = ("backend", "mode", "dynamic", "fullgraph")

    def prepare(
        self, model: torch.nn.Module, device: torch.device, options: RuntimeOptions
    ) -> Prepared:
        opts = dict(options.options)
        _refuse_unknown(self.name, opts, self.OPTIONS)
        kwargs = {
            "backend": opts.get("backend") or "inductor",
            "mode": opts.get("mode"),
            "dynamic": opts.get("dynamic"),
            "fullgraph": bool(opts.get("fullgraph", False)),
        }
        t0 = time.perf_counter()

        def compiled(_: str, module: torch.nn.Module) -> torch.nn.Module:
            out: torch.nn.Module = torch.compile(module, **kwargs)  # type: ignore[arg-type,assignment]
            return out

        swap(model, compiled)
        warm_up(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        details = {"torch": torch.__version__, **{k: v for k, v in kwargs.items()}}
        return Prepared(
            model=model, prepare_s=seconds, exact=True, details=details, exactness=FLOAT,
            logit_tol=COMPILE_LOGIT_TOL,
        )  # fmt: skip


def _autocast_call(
    device_type: str, inner: torch.nn.Module, *args: Any, **kwargs: Any
) -> Any:  # a module-level function (picklable, deep-copyable), bound with partial
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        out = inner(*args, **kwargs)
    return to_float32(out)


class Bf16Runtime:
    """``model.runtime=bf16``: each component (and the decoder's ``conv_s0`` / ``conv_s1``,
    which ``forward_image`` applies to the high-resolution features) runs under
    ``torch.autocast(dtype=bfloat16)``; outputs are cast back to float32, so everything
    around the components (the predictors' post-processing, the video memory modules) runs
    in float32. Approximate: masks differ from eager (``agreement_*`` metrics). Takes no
    ``model.runtime_options``."""

    name = "bf16"
    exact = False

    def prepare(
        self, model: torch.nn.Module, device: torch.device, options: RuntimeOptions
    ) -> Prepared:
        _refuse_unknown(self.name, options.options, ())
        call = functools.partial(_autocast_call, device.type)
        decoder = model.sam_mask_decoder
        for conv in ("conv_s0", "conv_s1"):  # absent without high-res features
            if isinstance(getattr(decoder, conv, None), torch.nn.Module):
                setattr(decoder, conv, Delegating(getattr(decoder, conv), call))
        swap(model, lambda _, module: Delegating(module, call))
        details = {"autocast": f"{device.type} bfloat16", "outputs": "float32"}
        return Prepared(
            model=model, prepare_s=0.0, exact=False, details=details, exactness=APPROXIMATE
        )
