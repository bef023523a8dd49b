"""Module-swap helpers shared by the PyTorch runtimes (``compile``, ``bf16``).

A runtime replaces ``model.image_encoder``, ``model.sam_prompt_encoder`` and
``model.sam_mask_decoder`` (:data:`COMPONENTS`) with modules of the same forward signatures.
:class:`Delegating` is such a module: its ``forward`` runs the wrapped module its own way, and
every other attribute (``get_dense_pe``, ``conv_s0``, ``mask_input_size``...) is the wrapped
module's, so sam2's official classes run unchanged on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: The three prompt-path components a runtime puts on itself (see ``base.py``).
COMPONENTS = ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder")


class Delegating(torch.nn.Module):
    """``inner`` called through ``call(inner, *args, **kwargs)``; other attributes are
    ``inner``'s."""

    def __init__(self, inner: torch.nn.Module, call: Callable[..., Any]) -> None:
        super().__init__()
        self.inner = inner
        self._call = call

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.inner, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def swap(model: torch.nn.Module, make: Callable[[str, torch.nn.Module], torch.nn.Module]) -> None:
    """Replace each of :data:`COMPONENTS` of ``model`` by ``make(name, module)`` (in place)."""
    for name in COMPONENTS:
        setattr(model, name, make(name, getattr(model, name)))


def to_float32(out: Any) -> Any:
    """``out`` with every floating-point tensor (in tuples, lists and dicts) as float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple):
        return tuple(to_float32(o) for o in out)
    if isinstance(out, list):
        return [to_float32(o) for o in out]
    if isinstance(out, dict):
        return {k: to_float32(v) for k, v in out.items()}
    return out


def is_eager_decoder(model: torch.nn.Module) -> bool:
    """Whether ``model.sam_mask_decoder`` is sam2's own ``MaskDecoder`` as built (eager):
    only then may an engine run its weights through its own sliced / factored
    implementation; on any runtime the engines call the runtime's decoder as the official
    predictor does."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder

    return type(getattr(model, "sam_mask_decoder", None)) is MaskDecoder


def prompt_batch_size(
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    masks: torch.Tensor | None,
) -> int:
    """sam2's own rule for a prompt encoder's batch size (``PromptEncoder._get_batch_size``),
    for the adapters that stand in for sam2's prompt encoder. sam2 is imported here, not at
    module level: ``import sam2`` initialises Hydra globally, and importing sam_bench's model
    modules must not (a user's own ``initialize_config_dir`` would then fail)."""
    from sam2.modeling.sam.prompt_encoder import PromptEncoder

    return int(PromptEncoder._get_batch_size(None, points, boxes, masks))  # type: ignore[arg-type]
