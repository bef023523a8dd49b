"""``semantic.backend=transformers``: a Hugging Face CLIP-like model (``AutoModel`` with
``get_text_features`` / ``get_image_features``), its ``AutoTokenizer`` and
``AutoImageProcessor``.

``semantic.clip_model`` is a local folder (read with ``local_files_only``: never the network)
or a hub id (downloaded once into the Hugging Face cache, ``HF_HOME``; with
``HF_HUB_OFFLINE=1`` only the cache is read). ``semantic.clip_pretrained`` does not apply (the
folder or id names the weights). With ``semantic.clip_weights=random`` the model is built from
its ``config.json`` with fresh weights (deterministic from ``seed``); the tokenizer and image
processor files are still needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam_bench.clip import ClipInfo, ClipSettings, hf_offline, n_params, normalise, unavailable
from sam_bench.engines.base import autocast
from sam_bench.errors import ConfigError
from sam_bench.models.checkpoints import state_dict_hash

log = logging.getLogger(__name__)


def _source(cfg: ClipSettings) -> tuple[str, dict[str, Any]]:
    """The folder (absolute) or hub id, and the ``from_pretrained`` options."""
    if cfg.clip_pretrained is not None:
        raise ConfigError(
            "semantic.clip_pretrained",
            "does not apply to semantic.backend=transformers: give the hub id or the local "
            "folder as semantic.clip_model",
        )
    path = Path(cfg.clip_model).expanduser()
    if path.is_dir():
        return str(path.resolve()), {"local_files_only": True}
    if path.is_absolute() or cfg.clip_model.startswith((".", "~")):
        raise ConfigError("semantic.clip_model", f"folder not found: {path}")
    return cfg.clip_model, {"local_files_only": True} if hf_offline() else {}


def check_source(cfg: ClipSettings) -> None:
    """The model's config can be read (from the folder, the cache or the hub)."""
    from transformers import AutoConfig

    src, kw = _source(cfg)
    try:
        AutoConfig.from_pretrained(src, **kw)
    except Exception as e:
        raise unavailable(cfg, "config", f"{type(e).__name__}: {e}") from None


def _features(out: Any) -> torch.Tensor:
    """transformers < 5 returns the projected features; 5 returns an output object whose
    ``pooler_output`` holds them."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


class HFClipBackend:
    """A transformers CLIP-like model with its own tokenizer and image processor."""

    def __init__(
        self, cfg: ClipSettings, device: torch.device, seed: int, dtype: str = "fp32"
    ) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        src, kw = _source(cfg)
        random = cfg.clip_weights == "random"
        try:
            if random:
                config = AutoConfig.from_pretrained(src, **kw)
                torch.manual_seed(seed)
                model = AutoModel.from_config(config)
            else:
                model = AutoModel.from_pretrained(src, **kw)
            self.tokenizer = AutoTokenizer.from_pretrained(src, **kw)
            self.processor = AutoImageProcessor.from_pretrained(src, **kw)
        except Exception as e:  # missing files, offline, hub errors
            what = "config, tokenizer or image processor" if random else "weights or files"
            raise unavailable(cfg, what, f"{type(e).__name__}: {e}") from None
        for method in ("get_text_features", "get_image_features"):
            if not callable(getattr(model, method, None)):
                raise ConfigError(
                    "semantic.clip_model",
                    f"{type(model).__name__} has no {method}: not a CLIP-like model",
                )
        model.eval()
        self.model = model.to(device)
        self.device = device
        self.dtype = dtype
        self.pad = "max_length" if "siglip" in str(model.config.model_type) else True
        mean = getattr(self.processor, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        r, g, b = (round(float(m) * 255) for m in mean[:3])
        self.mean_rgb = (r, g, b)
        vision = getattr(model.config, "vision_config", None)
        size = int(getattr(vision, "image_size", 224))
        with torch.no_grad():
            probe = self.encode_text(["a photo."])
        scale = getattr(model, "logit_scale", None)
        self.info = ClipInfo(
            backend="transformers",
            model=cfg.clip_model,
            pretrained=None if random else src,
            weights="random" if random else "pretrained",
            state_dict_hash=state_dict_hash(model.state_dict()),
            image_size=size,
            embed_dim=int(probe.shape[-1]),
            logit_scale=float(scale.detach().exp().item()) if scale is not None else 100.0,
            n_params=n_params(model),
        )

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding=self.pad, truncation=True, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        with autocast(self.device, self.dtype):
            out = self.model.get_text_features(**tok)
        return normalise(_features(out))

    @torch.no_grad()
    def encode_images(self, images: list[np.ndarray]) -> torch.Tensor:
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"]
        with autocast(self.device, self.dtype):
            out = self.model.get_image_features(pixel_values=pixels.to(self.device))
        return normalise(_features(out))

    def close(self) -> None:
        self.model = None
