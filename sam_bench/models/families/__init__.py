"""Model families served through Hugging Face ``transformers`` (``model=edgetam``,
``model=sam3_tracker``), exposed to sam_bench's tasks through sam2's own surface.

:func:`build_family_model` builds the family's transformers model (hub weights, or random
initialisation with the documented config of :mod:`.edgetam` / :mod:`.sam3_tracker`) and wraps
it in a ``SAM2Base`` shell (:mod:`.shell`) that sam2's ``SAM2ImagePredictor`` and
``SAM2AutomaticMaskGenerator`` drive unchanged. :func:`sam_bench.models.build.build_model`
dispatches here for these families and records the weights as for SAM 2 (random weights are
marked untrained).

Video (``task=video``): :func:`build_family_video_model` builds the family's transformers
video model (``EdgeTamVideoModel`` / ``Sam3TrackerVideoModel``: their own memory modules, which
sam2's ``SAM2VideoPredictor`` cannot drive) behind :class:`.video.FamilyVideoPredictor`, which
answers the sam2 video-predictor calls the task makes through transformers' processor and
inference session. Weights follow the same ``model.weights`` / hub-id rules (a video
checkpoint: the hub ids above hold the video models' weights too); random init uses the
documented video configs (``edgetam_video_config``, ``sam3_tracker_video_config``).
:data:`VIDEO_UNSUPPORTED` is the one-line refusal of the video settings they do not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from sam_bench.config import ModelConfig
from sam_bench.errors import CheckpointUnavailable, SamBenchError
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.families import edgetam, sam3_tracker
from sam_bench.models.families.shell import build_shell
from sam_bench.models.families.video import FamilyVideoPredictor, family_processor
from sam_bench.models.image_predictor import fit_image_predictor

__all__ = [
    "FAMILIES",
    "VIDEO_UNSUPPORTED",
    "FamilyModel",
    "build_family_model",
    "build_family_video_model",
    "check_family_video",
    "fit_image_predictor",
]

#: ``model.family`` values built here.
FAMILIES = ("edgetam", "sam3_tracker")

#: The refusal of a video setting the transformers families do not have (``{family}``,
#: ``{setting}``, ``{why}``).
VIDEO_UNSUPPORTED = (
    "model.family={family}: task=video with {setting} is not supported ({why}); "
    "use a sam2 / sam2.1 model for it"
)


@dataclass
class FamilyModel:
    """A family model in its sam2 shell, and where its weights came from."""

    model: torch.nn.Module
    pretrained: bool
    source: str | None
    """Hub id or folder the weights came from (``None``: random init)."""
    fallback_reason: str | None = None
    """Why ``weights=auto`` fell back to random weights."""
    state_dict_hash: str | None = None
    """:func:`sam_bench.models.checkpoints.state_dict_hash` of the transformers model's state
    dict: the weights the shell runs (its unused sam2 memory modules are left out, so the hash
    of loaded weights does not depend on the seed); ``None``: hash ``model``'s state dict."""


class FamilyVideoSettings(Protocol):
    """What the family video build reads of ``video.*``
    (:class:`sam_bench.tasks.video.settings.VideoConfig`)."""

    apply_postprocessing: bool
    non_overlap_masks: bool
    fill_hole_area: int | None
    vos_optimized: bool


_SPECS: dict[str, Any] = {"edgetam": edgetam, "sam3_tracker": sam3_tracker}


def _random(family: str, video: bool = False) -> Any:
    if family == "edgetam":
        return edgetam.random_edgetam_video() if video else edgetam.random_edgetam()
    return sam3_tracker.random_sam3_tracker_video() if video else sam3_tracker.random_sam3_tracker()


def _pretrained(family: str, source: str, video: bool = False) -> Any:
    loaders = {
        ("edgetam", False): edgetam.pretrained_edgetam,
        ("edgetam", True): edgetam.pretrained_edgetam_video,
        ("sam3_tracker", False): sam3_tracker.pretrained_sam3_tracker,
        ("sam3_tracker", True): sam3_tracker.pretrained_sam3_tracker_video,
    }
    load = loaders[(family, video)]
    try:
        return load(source)
    except Exception as e:  # offline, unknown id, wrong folder
        text = str(e).strip()
        first = text.splitlines()[0] if text else type(e).__name__
        raise CheckpointUnavailable(
            f"model.family={family}: cannot load transformers weights from {source!r} ({first})"
        ) from e


def _load(cfg: ModelConfig, seed: int, video: bool) -> tuple[Any, str | None, str | None]:
    """The family's transformers model (image or video), its source and any fallback."""
    if cfg.family not in _SPECS:
        raise SamBenchError(f"model.family={cfg.family!r} is not a transformers family")
    hf: Any = None
    source: str | None = None
    fallback: str | None = None
    if cfg.weights in ("pretrained", "auto"):
        source = cfg.checkpoint or cfg.checkpoint_file or _SPECS[cfg.family].HUB_ID
        try:
            hf = _pretrained(cfg.family, str(source), video)
        except CheckpointUnavailable as e:
            if cfg.weights == "pretrained":
                raise
            fallback, source = str(e), None
    if hf is None:
        torch.manual_seed(seed)
        hf = _random(cfg.family, video)
    return hf, source, fallback


def build_family_model(cfg: ModelConfig, conf: Any, seed: int) -> FamilyModel:
    """Build ``cfg``'s family model in a ``SAM2Base`` shell instantiated from ``conf`` (the
    resolved sam2 model config of ``model.sam2_config``, post-processing overrides applied).

    Weights: ``model.checkpoint`` (a hub id or a ``save_pretrained`` folder), else the
    family's hub id (``model.checkpoint_file``); ``weights=random`` never loads, ``auto``
    falls back to random init when loading fails. Random init is deterministic from ``seed``.
    """
    hf, source, fallback = _load(cfg, seed, video=False)
    spec = _SPECS[cfg.family]
    model = build_shell(
        hf,
        conf,
        image_size=spec.IMAGE_SIZE,
        backbone_stride=spec.BACKBONE_STRIDE,
        pixel_mean=spec.PIXEL_MEAN,
        pixel_std=spec.PIXEL_STD,
    )
    return FamilyModel(
        model=model,
        pretrained=source is not None,
        source=source,
        state_dict_hash=state_dict_hash(hf.state_dict()),
        fallback_reason=fallback,
    )


def check_family_video(family: str, settings: FamilyVideoSettings) -> None:
    """Refuse, in one line, the video settings the transformers video models do not have."""
    if settings.vos_optimized:
        why = "it compiles sam2's own modules; the family runs transformers' video model"
        raise SamBenchError(
            VIDEO_UNSUPPORTED.format(family=family, setting="video.vos_optimized=true", why=why)
        )
    fill = settings.fill_hole_area
    if fill is None:  # sam2's build default (8 with apply_postprocessing)
        fill = 8 if settings.apply_postprocessing else 0
    if fill:
        why = "transformers' video model fills no holes; set video.fill_hole_area=0"
        raise SamBenchError(
            VIDEO_UNSUPPORTED.format(family=family, setting=f"video.fill_hole_area={fill}", why=why)
        )


def build_family_video_model(
    cfg: ModelConfig, settings: FamilyVideoSettings, seed: int
) -> FamilyModel:
    """``cfg``'s family video model behind :class:`.video.FamilyVideoPredictor`, with the
    ``video.*`` settings it has: ``non_overlap_masks`` (applied to the output masks, as sam2
    does) and ``apply_postprocessing`` (the mask decoder's dynamic multimask via stability;
    transformers' configs default to it on, sam_bench's ``video.apply_postprocessing`` to
    off, like ``tools/vos_inference.py``). Weights as :func:`build_family_model`."""
    check_family_video(cfg.family, settings)
    hf, source, fallback = _load(cfg, seed, video=True)
    hf.mask_decoder.dynamic_multimask_via_stability = bool(settings.apply_postprocessing)
    spec = _SPECS[cfg.family]
    predictor = FamilyVideoPredictor(
        hf,
        family_processor(hf, spec.PIXEL_MEAN, spec.PIXEL_STD),
        non_overlap_masks=settings.non_overlap_masks,
    )
    return FamilyModel(
        model=predictor.eval(),
        pretrained=source is not None,
        source=source,
        state_dict_hash=state_dict_hash(hf.state_dict()),
        fallback_reason=fallback,
    )
