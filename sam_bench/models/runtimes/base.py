"""The contract every model runtime fulfils (``model.runtime``).

A runtime takes the SAM 2 model sam_bench built (``SAM2Base`` for the image tasks, a
``SAM2VideoPredictor`` for video; eager PyTorch, weights loaded) and returns it with its three
prompt-path components running on the runtime:

* ``image_encoder``: ``forward(image: Tensor[B,3,H,W]) -> {"vision_features", "vision_pos_enc",
  "backbone_fpn"}`` exactly as sam2's ``ImageEncoder`` returns it;
* ``sam_prompt_encoder``: ``forward(points, boxes, masks) -> (sparse, dense)`` and
  ``get_dense_pe()``, ``mask_input_size``, ``image_embedding_size`` as sam2's ``PromptEncoder``;
* ``sam_mask_decoder``: ``forward(image_embeddings, image_pe, sparse_prompt_embeddings,
  dense_prompt_embeddings, multimask_output, repeat_image, high_res_features) -> (masks,
  iou_pred, sam_tokens_out, object_score_logits)`` and ``conv_s0`` / ``conv_s1`` (which
  ``SAM2Base.forward_image`` applies to the high-resolution levels) as sam2's ``MaskDecoder``.

That surface is the model interface every task and engine uses (encode an image, decode a
batch of prompts, the video predictor's calls): sam2's official classes call these components,
so the official generator, image predictor and video predictor run unchanged on any runtime,
and the official code is one implementation (``eager``). What a runtime does not replace (the
video memory encoder and memory attention) stays eager PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

#: The default runtime: sam2's PyTorch modules as built (today's behaviour, same config ids).
EAGER = "eager"

#: What "exact" means for a runtime (``Prepared.exactness``, recorded as
#: ``task_info.runtime.exactness``; docs/metrics.md, "Runtimes"):
#: logits, IoU predictions and masks equal to eager's bit for bit (tested at every value).
BITWISE = "bitwise"
#: the same fp32 function rounded in another order: logits within ``Prepared.logit_tol`` of
#: eager's, so every mask pixel whose eager logit is farther than that from the threshold is
#: eager's (tested); a pixel within it may flip.
FLOAT = "float"
#: another precision (bf16): masks differ (tested: mask IoU >= 0.98 on the embedded data).
APPROXIMATE = "approximate"


@dataclass(frozen=True)
class RuntimeOptions:
    """What a runtime may need besides the model (from ``model.*`` and the job)."""

    weights_hash: str
    """:func:`sam_bench.models.checkpoints.state_dict_hash` of the eager weights: exports and
    conversions are cached by it."""
    cache_dir: Path
    """Folder for exports / conversions (``model.runtime_cache``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The runtime's own settings (``model.runtime_options``), e.g. ``opset``, ``providers``,
    ``hf_id``."""


@dataclass(frozen=True)
class RuntimeWeights:
    """Weights a runtime ran in place of the eager model's (``transformers`` with
    ``runtime_options.hf_id``); recorded as the job's weights (``weights`` block, the eager
    build's under ``weights.eager``)."""

    source: str
    """Where they came from, e.g. ``model.runtime_options.hf_id=facebook/sam2.1-hiera-tiny``."""
    state_dict_hash: str
    """:func:`sam_bench.models.checkpoints.state_dict_hash` of the runtime's own state dict
    (e.g. the ``Sam2Model``'s, in transformers' names)."""
    parts: str
    """Which parts of the model they replace (the rest runs the eager build's weights)."""


@dataclass
class Prepared:
    """A model made ready on a runtime."""

    model: torch.nn.Module
    """The model whose three components now run on the runtime (may be the one passed in,
    changed in place)."""
    prepare_s: float
    """Seconds spent exporting / compiling / converting (recorded apart from the timed
    stages)."""
    exact: bool
    """Whether masks are expected identical to ``eager`` (``bf16`` is approximate): see
    ``exactness`` for how identical."""
    details: dict[str, Any] = field(default_factory=dict)
    """Runtime facts for the record's ``task_info.runtime`` (providers, opset, cache file,
    cache hit, library versions...)."""
    exactness: str = BITWISE
    """:data:`BITWISE`, :data:`FLOAT` (with ``logit_tol``) or :data:`APPROXIMATE`."""
    logit_tol: float | None = None
    """With :data:`FLOAT`: the bound on |runtime - eager| of the mask logits its tests
    assert (``None`` otherwise)."""
    weights: RuntimeWeights | None = None
    """The weights that ran when they are not the eager model's (``None``: the runtime
    runs the eager model's own weights, exported / compiled / converted)."""


class Runtime(Protocol):
    """One value of ``model.runtime`` (registered under the ``runtime`` registry kind).

    A runtime that may run other weights than the eager model's (``Prepared.weights``) also
    defines ``eager_reference(model, options) -> dict``: it loads those weights into
    ``model`` (sam2's eager build of the job's config, changed in place) so that the
    agreement metrics compare two implementations of the same weights, and returns what
    the reference is (recorded); see :func:`sam_bench.models.runtimes.apply.eager_reference`.
    """

    name: str
    exact: bool

    def prepare(
        self, model: torch.nn.Module, device: torch.device, options: RuntimeOptions
    ) -> Prepared:
        """Put ``model``'s image encoder, prompt encoder and mask decoder on this runtime.
        Raises :class:`sam_bench.errors.SamBenchError` with one line naming
        ``pip install sam_bench[runtimes]`` when the runtime's library is missing."""
        ...
