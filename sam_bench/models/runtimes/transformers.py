"""``model.runtime=transformers``: SAM 2's prompt path on Hugging Face ``transformers``.

:class:`TransformersRuntime` converts the eager model's weights to a ``transformers``
``Sam2Model`` (:mod:`sam_bench.models.runtimes.hf_convert`; a renaming of the same tensors, done
in memory each time: it costs well under a second beyond building the empty HF model, so no
disk cache), or loads ``model.runtime_options.hf_id`` (a hub id or a ``save_pretrained``
folder) when given, and swaps in the adapters of :mod:`sam_bench.models.runtimes.hf_adapters`.
sam2's own generator / predictor / video predictor then run on HF's modules; the video memory
parts stay eager.

Options (``model.runtime_options``):

* ``hf_id`` (str, optional): load this ``Sam2Model`` instead of converting the eager weights
  (needs the hub, or a local folder). Its image-path weights and ``no_memory_embedding`` are
  used; the eager model's video memory modules are kept, so with a hub id the video path mixes
  two sets of weights unless the eager checkpoint is the same release.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.models.runtimes.base import Prepared, RuntimeOptions
from sam_bench.models.runtimes.hf_adapters import swap_components

#: The runtime options this runtime reads (anything else is an error).
OPTIONS = ("hf_id",)


def transformers_version() -> str:
    """The installed ``transformers`` version; :class:`SamBenchError` when it is missing or
    has no SAM 2 port."""
    try:
        import transformers
    except ImportError as e:
        raise SamBenchError(
            "model.runtime=transformers needs the `transformers` package "
            "(pip install sam_bench[runtimes])"
        ) from e
    if not hasattr(transformers, "Sam2Model"):
        raise SamBenchError(
            f"transformers {transformers.__version__} has no Sam2Model: "
            "model.runtime=transformers needs a newer one (tested with 5.25.0)"
        )
    return str(transformers.__version__)


def _load_hub(hf_id: str) -> Any:
    from transformers import Sam2Model

    try:
        return Sam2Model.from_pretrained(hf_id)
    except Exception as e:  # offline, unknown id, not a Sam2Model folder
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SamBenchError(
            f"model.runtime_options.hf_id={hf_id!r}: cannot load a transformers Sam2Model ({first})"
        ) from e


class TransformersRuntime:
    """The ``transformers`` runtime (exact: masks as eager's, logits within ~1e-6)."""

    name = "transformers"
    exact = True

    def prepare(
        self, model: torch.nn.Module, device: torch.device, options: RuntimeOptions
    ) -> Prepared:
        """Swap ``model``'s image encoder, prompt encoder and mask decoder (in place) for
        adapters over a ``transformers`` ``Sam2Model`` holding the same weights (or
        ``options.options["hf_id"]``'s)."""
        unknown = sorted(set(options.options) - set(OPTIONS))
        if unknown:
            raise ConfigError(
                "model.runtime_options",
                f"unknown option(s) {unknown} for runtime transformers (known: {list(OPTIONS)})",
            )
        version = transformers_version()
        start = time.perf_counter()
        hf_id = options.options.get("hf_id")
        if hf_id:
            hf = _load_hub(str(hf_id))
            source = str(hf_id)
            # the sweep's model.apply_postprocessing, not the hub config's default
            eager: Any = model.sam_mask_decoder
            for key in ("via_stability", "stability_delta", "stability_thresh"):
                name = f"dynamic_multimask_{key}"
                setattr(hf.mask_decoder, name, getattr(eager, name))
        else:
            from sam_bench.models.runtimes.hf_convert import convert_model

            try:
                hf = convert_model(model)
            except (ValueError, KeyError) as e:
                raise SamBenchError(f"model.runtime=transformers: {e}") from e
            source = "converted"
        hf = hf.to(device).eval()
        swap_components(model, hf)
        if hf_id:
            model.no_mem_embed = torch.nn.Parameter(  # type: ignore[assignment]
                hf.no_memory_embedding.detach().clone()
            )
        model.to(device).eval()
        return Prepared(
            model=model,
            prepare_s=time.perf_counter() - start,
            exact=self.exact,
            details={
                "transformers": version,
                "source": source,
                "attn_implementation": str(hf.config._attn_implementation),
            },
        )
