"""``semantic.backend=open_clip``: models built by ``open_clip.create_model_and_transforms``.

Weights (``semantic.clip_weights=pretrained``): ``semantic.clip_pretrained`` is a pretrained
tag of the model (``open_clip.list_pretrained_tags_by_model(name)``; downloaded once into the
Hugging Face cache, ``HF_HOME``) or a checkpoint file; ``null`` takes ``openai`` where the model
has it, else its first tag. ``local-dir:`` / ``hf-hub:`` model names carry their own weights
(``clip_pretrained`` must then be ``null``). With ``clip_weights=random`` nothing is read
or downloaded: open_clip's built-in model configs and its packaged BPE vocabulary suffice
(models whose text tower is a Hugging Face model, e.g. ``roberta-ViT-B-32``, still need that
model's tokenizer files).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sam_bench.clip import ClipInfo, ClipSettings, n_params, normalise, unavailable
from sam_bench.engines.base import autocast
from sam_bench.errors import ConfigError
from sam_bench.models.checkpoints import state_dict_hash

log = logging.getLogger(__name__)

SCHEMAS = ("local-dir:", "hf-hub:")


def _has_schema(name: str) -> bool:
    return name.startswith(SCHEMAS)


def default_tag(name: str) -> str | None:
    """``openai`` where open_clip has it for ``name``, else its first tag (``None``: none)."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if not tags:
        return None
    return "openai" if "openai" in tags else str(tags[0])


def resolve_weights(cfg: ClipSettings) -> str | None:
    """What ``pretrained=`` open_clip gets: a tag (after making sure its file is cached,
    downloading it if needed) or an absolute checkpoint path; ``None`` for random weights or
    a schema model name. Raises :class:`ClipUnavailable` / :class:`ConfigError`."""
    import open_clip

    name = cfg.clip_model
    if _has_schema(name):
        if cfg.clip_pretrained is not None:
            raise ConfigError(
                "semantic.clip_pretrained",
                f"must be null when semantic.clip_model names its own weights ({name})",
            )
        if name.startswith("local-dir:"):
            folder = Path(name.removeprefix("local-dir:")).expanduser()
            if not folder.is_dir():
                raise ConfigError("semantic.clip_model", f"folder not found: {folder}")
        return None
    if open_clip.get_model_config(name) is None:
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            "semantic.clip_model",
            f"open_clip has no model {name!r}{hint}; see open_clip.list_models()",
        )
    if cfg.clip_weights == "random":
        return None
    pretrained = cfg.clip_pretrained or default_tag(name)
    if pretrained is None:
        raise unavailable(
            cfg, "weights", f"open_clip lists no pretrained tag for {name}; give a file"
        )
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if tag_cfg:
        try:
            open_clip.download_pretrained(tag_cfg)
        except Exception as e:  # offline, blocked, hub error
            why = f"{type(e).__name__}: {e}"
            raise unavailable(cfg, f"weights (tag {pretrained!r})", why) from None
        return pretrained
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path.resolve())
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
    raise ConfigError(
        "semantic.clip_pretrained",
        f"{pretrained!r} is neither a pretrained tag of {name} (tags: {tags}) nor a file",
    )


class OpenClipBackend:
    """An open_clip model with its own preprocessing and tokenizer."""

    def __init__(
        self, cfg: ClipSettings, device: torch.device, seed: int, dtype: str = "fp32"
    ) -> None:
        import open_clip

        pretrained = resolve_weights(cfg)
        random = cfg.clip_weights == "random"
        name = cfg.clip_model
        torch.manual_seed(seed)
        kwargs: dict[str, Any] = {"pretrained_image": False, "pretrained_text": False}
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, load_weights=not random, device=device, **kwargs
            )
            self.tokenizer = open_clip.get_tokenizer(name)
        except (RuntimeError, OSError, ValueError) as e:
            raise unavailable(cfg, "model files", f"{type(e).__name__}: {e}") from None
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.device = device
        self.dtype = dtype
        mean = _normalise_mean(preprocess)
        r, g, b = (round(m * 255) for m in mean)
        self.mean_rgb = (r, g, b)
        visual = getattr(model, "visual", None)
        size = getattr(visual, "image_size", 224)
        size = int(size[0] if isinstance(size, tuple | list) else size)
        with torch.no_grad():
            probe = self.encode_text(["a photo."])
        if random:
            source = None
        elif _has_schema(name):
            source = name
        else:
            source = pretrained
        self.info = ClipInfo(
            backend="open_clip",
            model=name,
            pretrained=source,
            weights="random" if random else "pretrained",
            state_dict_hash=state_dict_hash(model.state_dict()),
            image_size=size,
            embed_dim=int(probe.shape[-1]),
            logit_scale=float(model.logit_scale.detach().exp().item()),
            n_params=n_params(model),
        )

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)
        with autocast(self.device, self.dtype):
            out = self.model.encode_text(tokens)
        return normalise(out)

    @torch.no_grad()
    def encode_images(self, images: list[np.ndarray]) -> torch.Tensor:
        batch = torch.stack([self.preprocess(Image.fromarray(im)) for im in images])
        with autocast(self.device, self.dtype):
            out = self.model.encode_image(batch.to(self.device))
        return normalise(out)

    def close(self) -> None:
        self.model = None


def _normalise_mean(preprocess: Any) -> tuple[float, float, float]:
    """The ``Normalize`` mean of an open_clip transform (OpenAI's when not found)."""
    for t in getattr(preprocess, "transforms", []):
        mean = getattr(t, "mean", None)
        if mean is not None and len(mean) == 3:
            return (float(mean[0]), float(mean[1]), float(mean[2]))
    return (0.48145466, 0.4578275, 0.40821073)
