"""EdgeTAM (``transformers.EdgeTamModel``): SAM 2's prompt path on a RepViT-M1 backbone.

Offline (``model.weights=random``, or ``auto`` without a hub) the model is
:func:`edgetam_config` at random initialisation: transformers' ``EdgeTamConfig`` defaults
(the published EdgeTAM's layout: 4-level RepViT-M1 timm backbone, 256-channel FPN, SAM 2's
prompt encoder and mask decoder, 1024-pixel input, ImageNet normalisation) with the timm
architecture set to ``repvit_m1`` (transformers' default config misspells that key, so it
would otherwise build a ResNet-50). Needs ``timm``.

Video (``task=video``): ``transformers.EdgeTamVideoModel`` with :func:`edgetam_video_config`,
i.e. the image model's vision, prompt-encoder and mask-decoder configs above inside
transformers' ``EdgeTamVideoConfig`` defaults for everything the video model adds (memory
attention with RoPE, 2-D spatial perceiver, memory encoder, 7 memories, 16 object pointers).
transformers' own ``EdgeTamVideoConfig()`` would build a Hiera (SAM 2) backbone, not RepViT-M1,
so the vision config is given explicitly. Frames go through transformers'
``Sam2VideoProcessor`` (:func:`sam_bench.models.families.video.family_processor`).
"""

from __future__ import annotations

from typing import Any

from sam_bench.errors import SamBenchError

#: The published checkpoint on the Hugging Face hub (``model.checkpoint`` overrides it).
HUB_ID = "yonigozlan/EdgeTAM-hf"
IMAGE_SIZE = 1024
BACKBONE_STRIDE = 16
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)

#: The oldest transformers that builds :func:`edgetam_config` offline (5.0-5.19 download the
#: timm backbone's config from the hub when the model is built; tested 2026-12-07).
MIN_TRANSFORMERS = "5.20.0"


def check_transformers(version: str | None = None) -> None:
    """Raise :class:`SamBenchError` (one line naming :data:`MIN_TRANSFORMERS`) when
    ``version`` (default: the installed transformers') is older."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = str(transformers.__version__)
    if Version(version) < Version(MIN_TRANSFORMERS):
        raise SamBenchError(
            f"model.family=edgetam with random weights needs transformers>={MIN_TRANSFORMERS} "
            f"(installed: {version}, which downloads EdgeTAM's timm backbone config from the "
            f"hub): pip install -U 'transformers>={MIN_TRANSFORMERS}'"
        )


def edgetam_config() -> Any:
    """The documented random-init config (see the module docstring)."""
    from transformers import EdgeTamConfig

    check_transformers()
    config: Any = EdgeTamConfig()
    config.vision_config.backbone_config.architecture = "repvit_m1"
    return config


def random_edgetam() -> Any:
    """``EdgeTamModel(edgetam_config())`` in eval mode (seed torch first for determinism)."""
    from transformers import EdgeTamModel

    return EdgeTamModel(edgetam_config()).eval()


def pretrained_edgetam(source: str) -> Any:
    """``EdgeTamModel.from_pretrained(source)`` (hub id or ``save_pretrained`` folder)."""
    from transformers import EdgeTamModel

    return EdgeTamModel.from_pretrained(source).eval()


def edgetam_video_config() -> Any:
    """The documented random-init video config (see the module docstring)."""
    from transformers import EdgeTamVideoConfig

    image = edgetam_config()
    return EdgeTamVideoConfig(
        vision_config=image.vision_config.to_dict(),
        prompt_encoder_config=image.prompt_encoder_config.to_dict(),
        mask_decoder_config=image.mask_decoder_config.to_dict(),
    )


def random_edgetam_video() -> Any:
    """``EdgeTamVideoModel(edgetam_video_config())`` in eval mode (seed torch first)."""
    from transformers import EdgeTamVideoModel

    return EdgeTamVideoModel(edgetam_video_config()).eval()


def pretrained_edgetam_video(source: str) -> Any:
    """``EdgeTamVideoModel.from_pretrained(source)`` (hub id or ``save_pretrained`` folder)."""
    from transformers import EdgeTamVideoModel

    return EdgeTamVideoModel.from_pretrained(source).eval()
