"""Build a SAM 2 model inside (or outside) a Hydra app, with pretrained or random weights.

sam2's own ``build_sam2`` calls Hydra's ``compose()`` on whatever search path is active, which
fails inside a ``@hydra.main`` app (upstream issues 179, 758). We do what it does without
``compose()``: load sam2's model YAML with OmegaConf, apply the same overrides
``build_sam2`` applies, ``hydra.utils.instantiate`` the model, and load the state dict the way
``sam2.build_sam._load_checkpoint`` does (strict: missing or unexpected keys are errors).
``tests/integration/test_model_build.py`` proves the result equals ``build_sam2``'s.

The video predictor (:func:`build_video_model`, ``task=video``) is built the same way with the
overrides ``build_sam2_video_predictor`` applies (the ``SAM2VideoPredictor`` target, or
``SAM2VideoPredictorVOS`` for ``vos_optimized``, and its post-processing overrides), plus the
predictor settings of ``video.*`` as ``tools/vos_inference.py`` passes them
(``++model.non_overlap_masks=...``); ``tests/integration/test_video_model_build.py`` proves it
equals ``build_sam2_video_predictor``'s.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sam_bench.config import ModelConfig
from sam_bench.errors import CheckpointUnavailable, SamBenchError
from sam_bench.models.checkpoints import resolve_checkpoint, sha256_file, state_dict_hash
from sam_bench.models.families import (
    FAMILIES,
    VIDEO_UNSUPPORTED,
    build_family_model,
    build_family_video_model,
)

log = logging.getLogger(__name__)

#: What ``build_sam2(..., apply_postprocessing=True)`` adds to the model config.
POSTPROCESSING_OVERRIDES: dict[str, Any] = {
    "model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability": True,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": 0.05,
    "model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": 0.98,
}

#: The video predictor classes ``build_sam2_video_predictor`` instantiates.
VIDEO_PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"
VIDEO_PREDICTOR_VOS = "sam2.sam2_video_predictor.SAM2VideoPredictorVOS"

#: What ``build_sam2_video_predictor(..., apply_postprocessing=True)`` adds to the model config.
VIDEO_POSTPROCESSING_OVERRIDES: dict[str, Any] = {
    **POSTPROCESSING_OVERRIDES,
    "model.binarize_mask_from_pts_for_mem_enc": True,
    "model.fill_hole_area": 8,
}


class VideoPredictorSettings(Protocol):
    """What the video predictor's build reads of ``task=video``'s settings (``video.*``,
    :class:`sam_bench.tasks.video.settings.VideoConfig`)."""

    apply_postprocessing: bool
    non_overlap_masks: bool
    fill_hole_area: int | None
    vos_optimized: bool


UNTRAINED_BANNER = (
    "UNTRAINED MODEL: random weights (no checkpoint). Accuracy figures measure nothing but the "
    "harness; latency and memory are real."
)


@dataclass
class WeightsInfo:
    """Where a model's weights came from (recorded with every result)."""

    kind: str
    """``pretrained`` or ``random``."""
    sha256: str | None
    """sha256 of the checkpoint file (``None`` for random weights)."""
    state_dict_hash: str
    """:func:`state_dict_hash` of the loaded weights (identifies random weights too)."""
    checkpoint_path: str | None
    requested: str
    """The ``model.weights`` setting that led here (``auto`` may end up ``random``)."""
    fallback_reason: str | None = None
    """Why ``auto`` fell back to random weights."""

    @property
    def label(self) -> str:
        """``random`` or the file's sha256: the ``weights`` column of the summary."""
        return "random" if self.kind == "random" else str(self.sha256)

    @property
    def untrained(self) -> bool:
        return self.kind == "random"


def sam2_package_dir() -> Path:
    """The installed ``sam2`` package folder, found without importing it."""
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise SamBenchError("the `sam2` package is not installed (pip install sam2==1.1.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def _load_model_yaml(cfg: ModelConfig) -> Any:
    path = sam2_package_dir() / cfg.sam2_config
    if not path.is_file():
        raise SamBenchError(f"sam2 model config not found: {path} (model.sam2_config)")
    return OmegaConf.load(path)


def model_config(cfg: ModelConfig) -> Any:
    """sam2's model config for ``cfg`` with ``build_sam2``'s overrides applied (resolved)."""
    conf = _load_model_yaml(cfg)
    if cfg.apply_postprocessing:
        for key, value in POSTPROCESSING_OVERRIDES.items():
            OmegaConf.update(conf, key, value, force_add=True)
    OmegaConf.resolve(conf)
    return conf


def video_model_config(cfg: ModelConfig, video: VideoPredictorSettings) -> Any:
    """sam2's model config for the video predictor (resolved): ``build_sam2_video_predictor``'s
    overrides for ``video.vos_optimized`` and ``video.apply_postprocessing``, with
    ``non_overlap_masks`` as ``vos_inference.py`` passes it, and ``video.fill_hole_area`` when
    set (it then wins over the post-processing default of 8, which sam2's builder would keep).
    ``model.apply_postprocessing`` (the image model's option) is not used."""
    conf = _load_model_yaml(cfg)
    overrides: dict[str, Any] = {"model._target_": VIDEO_PREDICTOR}
    if video.vos_optimized:
        overrides = {"model._target_": VIDEO_PREDICTOR_VOS, "model.compile_image_encoder": True}
    overrides["model.non_overlap_masks"] = bool(video.non_overlap_masks)
    if video.apply_postprocessing:
        overrides.update(VIDEO_POSTPROCESSING_OVERRIDES)
    if video.fill_hole_area is not None:
        overrides["model.fill_hole_area"] = int(video.fill_hole_area)
    for key, value in overrides.items():
        OmegaConf.update(conf, key, value, force_add=True)
    OmegaConf.resolve(conf)
    return conf


def instantiate_model(cfg: ModelConfig, seed: int, conf: Any = None) -> torch.nn.Module:
    """The architecture with freshly initialised weights, deterministic from ``seed``
    (``conf``: a resolved sam2 model config; default :func:`model_config`)."""
    conf = model_config(cfg) if conf is None else conf
    torch.manual_seed(seed)
    return instantiate(conf.model, _recursive_=True)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load an official checkpoint (``{"model": state_dict}``) strictly, as sam2 does."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)["model"]
    except Exception as e:  # corrupt file, wrong format
        raise SamBenchError(f"cannot read checkpoint {path}: {e}") from e
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise SamBenchError(
            f"checkpoint {path} does not fit the model config: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Is model.sam2_config the right one for this file?"
        )


def build_video_model(
    cfg: ModelConfig,
    video: VideoPredictorSettings,
    device: torch.device,
    seed: int,
    *,
    progress: bool = True,
) -> tuple[torch.nn.Module, WeightsInfo]:
    """Build ``SAM2VideoPredictor`` (or ``SAM2VideoPredictorVOS``) for ``cfg`` with the
    predictor settings of ``video`` (:func:`video_model_config`), weights as
    :func:`build_model` loads them. The transformers families get their own video model
    behind sam2's predictor calls
    (:func:`sam_bench.models.families.build_family_video_model`), on the eager runtime only."""
    if cfg.family in FAMILIES:
        if cfg.runtime != "eager":
            why = "the runtimes replace sam2's modules; transformers' video model runs as is"
            raise SamBenchError(
                VIDEO_UNSUPPORTED.format(
                    family=cfg.family, setting=f"model.runtime={cfg.runtime}", why=why
                )
            )
        return _family_info(cfg, build_family_video_model(cfg, video, seed), device)
    return build_model(cfg, device, seed, progress=progress, conf=video_model_config(cfg, video))


def _build_family(
    cfg: ModelConfig, device: torch.device, seed: int, conf: Any
) -> tuple[torch.nn.Module, WeightsInfo]:
    built = build_family_model(cfg, model_config(cfg) if conf is None else conf, seed)
    return _family_info(cfg, built, device)


def _family_info(
    cfg: ModelConfig, built: Any, device: torch.device
) -> tuple[torch.nn.Module, WeightsInfo]:
    """A built family model on ``device`` and its weights record (random: untrained)."""
    if built.fallback_reason:
        log.warning("model.weights=auto: %s; using random weights", built.fallback_reason)
    info = WeightsInfo(
        kind="pretrained" if built.pretrained else "random",
        sha256=None,
        # the family model's weights, not the shell's unused sam2 memory modules
        state_dict_hash=built.state_dict_hash or state_dict_hash(built.model.state_dict()),
        checkpoint_path=built.source,
        requested=cfg.weights,
        fallback_reason=built.fallback_reason,
    )
    return built.model.to(device).eval(), info


def build_model(
    cfg: ModelConfig,
    device: torch.device,
    seed: int,
    *,
    progress: bool = True,
    conf: Any = None,
) -> tuple[torch.nn.Module, WeightsInfo]:
    """Build the model named by ``cfg`` on ``device`` in eval mode (``conf``: a resolved sam2
    model config to instantiate instead of :func:`model_config`'s).

    ``weights=pretrained`` raises :class:`CheckpointUnavailable` without a checkpoint;
    ``weights=auto`` falls back to random weights and logs :data:`UNTRAINED_BANNER`.
    Families served through transformers (``edgetam``, ``sam3_tracker``) are built by
    :func:`sam_bench.models.families.build_family_model` (image tasks; video:
    :func:`build_video_model`).
    """
    if cfg.family in FAMILIES:
        return _build_family(cfg, device, seed, conf)
    ckpt: Path | None = None
    fallback: str | None = None
    if cfg.weights in ("pretrained", "auto"):
        try:
            ckpt = resolve_checkpoint(cfg, progress=progress)
        except CheckpointUnavailable as e:
            if cfg.weights == "pretrained":
                raise
            fallback = str(e).splitlines()[0]
            log.warning("model.weights=auto: no checkpoint (%s); using random weights", fallback)
    model = instantiate_model(cfg, seed, conf)
    sha = None
    if ckpt is not None:
        load_weights(model, ckpt)
        sha = sha256_file(ckpt)
    info = WeightsInfo(
        kind="pretrained" if ckpt is not None else "random",
        sha256=sha,
        state_dict_hash=state_dict_hash(model.state_dict()),
        checkpoint_path=str(ckpt) if ckpt is not None else None,
        requested=cfg.weights,
        fallback_reason=fallback,
    )
    model = model.to(device)
    model.eval()
    return model, info
