"""SAM 3's tracker (``transformers.Sam3TrackerModel``): SAM 2's prompt path on SAM 3's
ViT-L backbone (1008-pixel input, patch 14, 72x72 embeddings).

Offline the model is :func:`sam3_tracker_config` at random initialisation: transformers'
``Sam3TrackerConfig`` defaults (ViT-L/14, 32 layers, 1024 wide, windowed attention with
global blocks 7/15/23/31, 256-channel FPN) with the FPN limited to the three levels the
tracker decodes with (``scale_factors=[4, 2, 1]``: 288, 144, 72; SAM 3 drops the 0.5 level,
as SAM 2's ``scalp=1`` does), and SAM 3's input normalisation (mean 0.5, std 0.5). The
``sam3`` package itself is not used (it needs CUDA to build). On CPU a random-init image takes
about a minute to encode.

Video (``task=video``): ``transformers.Sam3TrackerVideoModel`` with
:func:`sam3_tracker_video_config`: the image model's vision, prompt-encoder and mask-decoder
configs above inside transformers' ``Sam3TrackerVideoConfig`` defaults for the memory modules
(memory attention, memory encoder, 7 memories, 16 object pointers), except that the FPN keeps
transformers' four levels (``scale_factors=[4, 2, 1, 0.5]``): the video model computes the 0.5
level and drops it itself, so it decodes on the same three levels (288, 144, 72). Frames
go through transformers' ``Sam3TrackerVideoProcessor`` at 1008 px with SAM 3's normalisation
(:func:`sam_bench.models.families.video.family_processor`).
"""

from __future__ import annotations

from typing import Any

#: The published checkpoint on the Hugging Face hub (gated; ``model.checkpoint`` overrides it).
HUB_ID = "facebook/sam3"
IMAGE_SIZE = 1008
BACKBONE_STRIDE = 14
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)


def sam3_tracker_config(**backbone: Any) -> Any:
    """The documented random-init config; ``backbone`` overrides ``Sam3ViTConfig`` fields
    (tests use a shallower ViT to stay fast; the benchmark never does)."""
    from transformers import Sam3TrackerConfig

    config: Any = Sam3TrackerConfig()
    config.vision_config.scale_factors = [4.0, 2.0, 1.0]
    for key, value in backbone.items():
        setattr(config.vision_config.backbone_config, key, value)
    return config


def random_sam3_tracker(**backbone: Any) -> Any:
    """``Sam3TrackerModel(sam3_tracker_config(**backbone))`` in eval mode."""
    from transformers import Sam3TrackerModel

    return Sam3TrackerModel(sam3_tracker_config(**backbone)).eval()


def pretrained_sam3_tracker(source: str) -> Any:
    """``Sam3TrackerModel.from_pretrained(source)`` (hub id or ``save_pretrained`` folder)."""
    from transformers import Sam3TrackerModel

    return Sam3TrackerModel.from_pretrained(source).eval()


def sam3_tracker_video_config(**backbone: Any) -> Any:
    """The documented random-init video config; ``backbone`` as for
    :func:`sam3_tracker_config` (tests only)."""
    from transformers import Sam3TrackerVideoConfig

    image = sam3_tracker_config(**backbone)
    image.vision_config.scale_factors = [4.0, 2.0, 1.0, 0.5]  # the video model drops the last
    return Sam3TrackerVideoConfig(
        vision_config=image.vision_config.to_dict(),
        prompt_encoder_config=image.prompt_encoder_config.to_dict(),
        mask_decoder_config=image.mask_decoder_config.to_dict(),
    )


def random_sam3_tracker_video(**backbone: Any) -> Any:
    """``Sam3TrackerVideoModel(sam3_tracker_video_config(**backbone))`` in eval mode."""
    from transformers import Sam3TrackerVideoModel

    return Sam3TrackerVideoModel(sam3_tracker_video_config(**backbone)).eval()


def pretrained_sam3_tracker_video(source: str) -> Any:
    """``Sam3TrackerVideoModel.from_pretrained(source)`` (hub id or ``save_pretrained``
    folder)."""
    from transformers import Sam3TrackerVideoModel

    return Sam3TrackerVideoModel.from_pretrained(source).eval()
