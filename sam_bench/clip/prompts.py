"""Class prompts and zero-shot class scores.

Every name of a class (display name and synonyms, :mod:`sam_bench.data.semantic_folder`) is put
into every template of ``semantic.templates`` (``{}`` marks where the name goes): a class with
names ``Road | street`` and templates ``a photo of a {}.`` / ``a {} in a street scene.`` has
four prompts. Their text embeddings (L2-normalised) are combined per class as
``semantic.synonyms`` says:

* ``mean`` (default; CLIP's prompt ensembling, Radford et al. 2021): the mean of all the
  class's prompt embeddings, renormalised -- one embedding per class;
* ``max``: per name, the mean over templates (renormalised); a crop's class score is its
  best name's.

A crop's score for a class is the cosine similarity of their embeddings; its label is the
class with the highest score and its confidence the softmax over classes of the scores times
the model's ``logit_scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sam_bench.clip import ClipBackend
from sam_bench.data.semantic_folder import ClassInfo


def fill(template: str, name: str) -> str:
    """``template`` with its ``{}`` replaced by ``name`` (no other brace is special)."""
    return template.replace("{}", name)


def class_prompts(cls: ClassInfo, templates: Sequence[str]) -> list[list[str]]:
    """Prompts of one class: one list per name (display name first), one prompt per
    template."""
    return [[fill(t, name) for t in templates] for name in cls.names]


@dataclass
class ClassText:
    """Text embeddings of a class list: ``rows`` (R, D) and the class position each row
    belongs to (``owner``, R values in 0..C-1)."""

    rows: torch.Tensor
    owner: np.ndarray
    n_classes: int
    prompts: list[list[list[str]]]
    """Per class, per name, per template: the prompt texts."""


def encode_classes(
    clip: ClipBackend,
    classes: Sequence[ClassInfo],
    templates: Sequence[str],
    synonyms: str = "mean",
    batch_size: int = 256,
) -> ClassText:
    """Embed every prompt once and combine them per class (see the module docstring)."""
    prompts = [class_prompts(c, templates) for c in classes]
    flat = [p for per_class in prompts for per_name in per_class for p in per_name]
    parts = [clip.encode_text(flat[i : i + batch_size]) for i in range(0, len(flat), batch_size)]
    emb = torch.cat(parts) if parts else torch.zeros(0, 1)
    rows: list[torch.Tensor] = []
    owner: list[int] = []
    k = 0
    for c, per_class in enumerate(prompts):
        per_name = []
        for names in per_class:
            per_name.append(emb[k : k + len(names)])
            k += len(names)
        if synonyms == "mean":
            rows.append(_unit(torch.cat(per_name).mean(dim=0)))
            owner.append(c)
        else:
            for e in per_name:
                rows.append(_unit(e.mean(dim=0)))
                owner.append(c)
    return ClassText(torch.stack(rows), np.asarray(owner, dtype=np.int64), len(classes), prompts)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm().clamp_min(1e-12)


def class_scores(image_emb: torch.Tensor, text: ClassText) -> np.ndarray:
    """(N, C) cosine similarity of each image embedding with each class (its best row)."""
    sims = (image_emb.float() @ text.rows.float().T).numpy()
    out = np.full((sims.shape[0], text.n_classes), -np.inf, dtype=np.float64)
    for r, c in enumerate(text.owner):
        out[:, c] = np.maximum(out[:, c], sims[:, r])
    return out


def label_and_confidence(
    scores: np.ndarray, logit_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best class position, its softmax probability (``logit_scale * scores`` over the
    classes), and the full probabilities (N, C)."""
    if scores.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros((0, scores.shape[1]))
    logits = logit_scale * scores
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    best = prob.argmax(axis=1)
    return best, prob[np.arange(len(best)), best], prob
