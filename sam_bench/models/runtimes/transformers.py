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
  two sets of weights unless the eager checkpoint is the same release. The job then records
  these weights (``Prepared.weights``: source and ``state_dict_hash`` of the ``Sam2Model``),
  and the agreement metrics compare with sam2's eager modules holding the same weights
  (:meth:`TransformersRuntime.eager_reference`), not with the eager build's own weights.
* ``match_eager`` (bool, default ``true``): make transformers' modules compute sam2's bits
  (:mod:`sam_bench.models.runtimes.hf_numerics`: sam2's ``LayerNorm2d`` for the three
  channels-first layer norms, the decoder's MLPs called on 2-D rows): logits and masks are
  then identical to eager's (tested at every pixel). ``false`` runs transformers' modules
  untouched: logits within ~1e-6 of eager's, so a pixel whose eager logit is that close to
  the threshold may flip.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sam_bench.errors import ConfigError, SamBenchError
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.runtimes.base import (
    BITWISE,
    FLOAT,
    Prepared,
    RuntimeOptions,
    RuntimeWeights,
)
from sam_bench.models.runtimes.hf_adapters import swap_components

#: The runtime options this runtime reads (anything else is an error).
OPTIONS = ("hf_id", "match_eager")

#: What ``hf_id``'s weights replace (``RuntimeWeights.parts``).
HF_ID_PARTS = "image encoder, prompt encoder, mask decoder, no_mem_embed"

#: With ``match_eager=false``: the bound on |transformers - eager| of the mask logits
#: (``Prepared.logit_tol``; measured ~6e-7).
PLAIN_LOGIT_TOL = 1e-5


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
    """The ``transformers`` runtime (exact: with ``match_eager`` (default) masks and logits
    identical to eager's; without it, logits within ~1e-6)."""

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
        match_eager = options.options.get("match_eager", True)
        if not isinstance(match_eager, bool):
            raise ConfigError(
                "model.runtime_options.match_eager", f"{match_eager!r} is not true or false"
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
        weights = None
        if hf_id:
            weights = RuntimeWeights(
                source=f"model.runtime_options.hf_id={hf_id}",
                state_dict_hash=state_dict_hash(hf.state_dict()),
                parts=HF_ID_PARTS,
            )
        swap_components(model, hf)
        numerics: list[str] = []
        if match_eager:
            from sam_bench.models.runtimes.hf_numerics import match_sam2_numerics

            numerics = match_sam2_numerics(model, hf)
        if hf_id:
            model.no_mem_embed = torch.nn.Parameter(  # type: ignore[assignment]
                hf.no_memory_embedding.detach().clone()
            )
        model.to(device).eval()
        return Prepared(
            model=model,
            prepare_s=time.perf_counter() - start,
            exact=self.exact,
            exactness=BITWISE if match_eager else FLOAT,
            logit_tol=None if match_eager else PLAIN_LOGIT_TOL,
            details={
                "transformers": version,
                "source": source,
                "attn_implementation": str(hf.config._attn_implementation),
                "match_eager": match_eager,
                "numerics": numerics,
            },
            weights=weights,
        )

    def eager_reference(self, model: torch.nn.Module, options: RuntimeOptions) -> dict[str, Any]:
        """Make ``model`` (sam2's eager build of the job's config) the honest reference for
        the agreement metrics: without ``hf_id`` it already holds the converted weights (it
        is left as is); with ``hf_id`` the ``Sam2Model`` is loaded again and its image-path
        weights are put into ``model`` under sam2's names
        (:func:`sam_bench.models.runtimes.hf_convert.official_state_dict`; the video memory
        modules keep the eager build's, as on the runtime). Returns the description recorded
        as ``agreement.reference``."""
        hf_id = options.options.get("hf_id")
        if not hf_id:
            return {
                "implementation": "sam2 eager",
                "weights": "the eager build's (model.weights), converted for transformers",
                "state_dict_hash": options.weights_hash,
            }
        from sam_bench.models.runtimes.hf_convert import official_state_dict

        transformers_version()
        hf = _load_hub(str(hf_id))
        hf_sd = hf.state_dict()
        official = official_state_dict(model.state_dict(), hf_sd)
        model.load_state_dict(official, strict=True)
        return {
            "implementation": "sam2 eager",
            "weights": f"model.runtime_options.hf_id={hf_id} ({HF_ID_PARTS}) in sam2's names; "
            "video memory modules: the eager build's",
            "state_dict_hash": state_dict_hash(model.state_dict()),
            "runtime_weights_hash": state_dict_hash(hf_sd),
        }
