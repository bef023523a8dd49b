"""``task=video`` with the transformers families (``model=edgetam``, ``model=sam3_tracker``):
the video task's own ``track()`` drives :class:`FamilyVideoPredictor`, and every frame's
logits (so every mask pixel) equal those of transformers' documented video loop
(``init_video_session`` -> ``add_inputs_to_inference_session`` -> ``model(session, frame)``
-> ``propagate_in_video_iterator`` -> ``post_process_masks(binarize=False)``) called here
directly on the same model object, frames and prompts, with transformers' own processor.

The frames: a small synthetic video (an embedded image shifted a few pixels per frame, JPEG
files) so the tests need no shared data. Random init (the documented offline configs).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from sam_bench.errors import SamBenchError
from sam_bench.metrics.cost import StageTimes
from sam_bench.models.build import build_video_model
from sam_bench.models.checkpoints import state_dict_hash
from sam_bench.models.families import edgetam, sam3_tracker
from sam_bench.models.families.video import FamilyVideoPredictor, family_processor
from sam_bench.tasks.video.inputs import Prompt, VideoInput, link_frames
from sam_bench.tasks.video.settings import VideoConfig
from sam_bench.tasks.video.tracking import paint, track
from tests.hf_fixtures import embedded_image
from tests.hf_fixtures import family_cfg as _cfg

pytest.importorskip("transformers", minversion="5.0")

N_FRAMES = 3
SHIFT = 6
"""Pixels the scene moves right per frame."""


def _settings(**kw: Any) -> SimpleNamespace:
    base = {
        "apply_postprocessing": False, "non_overlap_masks": True, "fill_hole_area": None,
        "vos_optimized": False,
    }  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A 3-frame synthetic video (JPEG files, 240 x 320), the scene moving right."""
    src = tmp_path_factory.mktemp("frames")
    image = embedded_image(0)
    out = []
    for i in range(N_FRAMES):
        path = src / f"frame_{i}.jpg"
        Image.fromarray(np.roll(image, SHIFT * i, axis=1)).save(path, quality=95)
        out.append(path)
    return out


@pytest.fixture(scope="module")
def edgetam_video() -> tuple[FamilyVideoPredictor, Any]:
    predictor, info = build_video_model(
        _cfg("edgetam"), _settings(), torch.device("cpu"), seed=0, progress=False
    )
    assert isinstance(predictor, FamilyVideoPredictor)
    return predictor, info


def _square(h: int, w: int, y0: int, x0: int, side: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def _reference(
    hf: Any, processor: Any, frames: list[Path], prompts: list[Prompt], non_overlap: bool
) -> dict[int, tuple[list[int], torch.Tensor]]:
    """transformers' documented video loop, on the frame files themselves: per prompted
    frame, add its prompts (running the frame after each, as the docs do), then propagate up
    to the next prompted frame; logits at the video's size."""
    video = [Image.open(p).convert("RGB") for p in frames]
    session = processor.init_video_session(video=video, inference_device="cpu")
    size = [[int(session.video_height), int(session.video_width)]]
    starts = sorted({p.frame for p in prompts})
    out: dict[int, tuple[list[int], torch.Tensor]] = {}
    with torch.inference_mode():
        for k, start in enumerate(starts):
            for p in (p for p in prompts if p.frame == start):
                if p.mask is not None:
                    kw: dict[str, Any] = {"input_masks": p.mask}
                elif p.point is not None:
                    kw = {"input_points": [[[list(p.point)]]], "input_labels": [[[1]]]}
                else:
                    assert p.box is not None
                    kw = {"input_boxes": [[list(p.box)]]}
                processor.add_inputs_to_inference_session(
                    inference_session=session, frame_idx=start, obj_ids=p.obj, **kw
                )
                hf(inference_session=session, frame_idx=start)
            end = starts[k + 1] - 1 if k + 1 < len(starts) else len(frames) - 1
            for o in hf.propagate_in_video_iterator(
                session, start_frame_idx=start, max_frame_num_to_track=end - start
            ):
                logits = processor.post_process_masks(
                    [o.pred_masks], original_sizes=size, binarize=False,
                    apply_non_overlapping_constraints=non_overlap,
                )[0]  # fmt: skip
                out[o.frame_idx] = (list(o.object_ids), logits)
    return out


def _run_track(
    predictor: FamilyVideoPredictor, frames: list[Path], prompts: list[Prompt], tmp: Path
) -> tuple[list[np.ndarray | None], dict[int, tuple[list[int], torch.Tensor]]]:
    """The video task's ``track()`` on the adapter; also what ``propagate_in_video`` yielded
    (recorded on the way, unchanged)."""
    seen: dict[int, tuple[list[int], torch.Tensor]] = {}
    propagate = predictor.propagate_in_video

    def recording(*args: Any, **kwargs: Any) -> Any:
        for frame_idx, obj_ids, logits in propagate(*args, **kwargs):
            seen[frame_idx] = (list(obj_ids), logits.clone())
            yield frame_idx, obj_ids, logits

    h, w = np.asarray(Image.open(frames[0])).shape[:2]
    folder = tmp / "linked"
    link_frames(frames, folder)
    inputs = VideoInput(folder, frames, h, w, prompts)
    cfg = SimpleNamespace(video=VideoConfig(), dtype="fp32")
    predictor.propagate_in_video = recording  # type: ignore[method-assign]
    try:
        prediction = track(predictor, inputs, cfg, torch.device("cpu"), StageTimes())  # type: ignore[arg-type]
    finally:
        del predictor.propagate_in_video
    return prediction.labels, seen


def _check(predictor: FamilyVideoPredictor, frames: list[Path], prompts: list[Prompt], tmp: Path,
           processor: Any) -> None:  # fmt: skip
    labels, seen = _run_track(predictor, frames, prompts, tmp)
    ref = _reference(predictor.hf, processor, frames, prompts, non_overlap=True)
    assert sorted(seen) == sorted(ref) == list(range(N_FRAMES))
    for f in range(N_FRAMES):
        ids, logits = seen[f]
        ref_ids, ref_logits = ref[f]
        assert ids == ref_ids, f
        assert logits.shape == (len(ids), 1, 240, 320)
        assert torch.equal(logits, ref_logits), f"frame {f}: logits differ"
        # the task's label map: every pixel as transformers' masks paint it
        assert labels[f] is not None
        assert np.array_equal(labels[f], paint(ref_logits, ref_ids, 0.0)), f


def _edgetam_processor() -> Any:
    """transformers' processor as EdgeTAM's model card loads it (``Sam2VideoProcessor``):
    its defaults are EdgeTAM's (1024 px, ImageNet normalisation)."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor()
    )


@pytest.mark.slow  # ~6 EdgeTAM frames, adapter and reference (~60 s on a busy 2-core CPU)
def test_edgetam_mask_then_late_click_match_transformers(
    edgetam_video: Any, frames: list[Path], tmp_path: Path
) -> None:
    """A mask prompt on frame 0 and a second object clicked on frame 1 (a later start: the
    video is propagated to frame 0, the new object prompted on 1, then propagated on)."""
    predictor, _ = edgetam_video
    prompts = [
        Prompt(1, 0, "mask", mask=_square(240, 320, 60, 80, 50)),
        Prompt(2, 1, "click", point=(220 + SHIFT, 150)),
    ]
    _check(predictor, frames, prompts, tmp_path, _edgetam_processor())


@pytest.mark.slow  # ~6 EdgeTAM frames, adapter and reference (~60 s on a busy 2-core CPU)
def test_edgetam_two_boxes_then_a_click_on_frame_2_match_transformers(
    edgetam_video: Any, frames: list[Path], tmp_path: Path
) -> None:
    """Two boxes on frame 0 (two objects prompted before the first propagation), a click on
    frame 2: three objects, two start frames, overlapping objects (non-overlap constraint)."""
    predictor, _ = edgetam_video
    prompts = [
        Prompt(1, 0, "box", box=(40.0, 30.0, 200.0, 160.0)),
        Prompt(3, 0, "box", box=(120.0, 90.0, 300.0, 230.0)),
        Prompt(7, 2, "click", point=(60 + 2 * SHIFT, 200)),
    ]
    _check(predictor, frames, prompts, tmp_path, _edgetam_processor())


def test_edgetam_video_build_is_untrained_and_seeded(edgetam_video: Any) -> None:
    predictor, info = edgetam_video
    assert info.kind == "random" and info.untrained and info.label == "random"
    torch.manual_seed(0)
    hf = edgetam.random_edgetam_video()
    theirs = hf.state_dict()
    ours = predictor.hf.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    # the documented config: RepViT-M1 backbone (not the Hiera of EdgeTamVideoConfig()),
    # EdgeTAM's memory (perceiver), sam2's warm-up names
    assert predictor.hf.config.vision_config.backbone_config.architecture == "repvit_m1"
    assert type(predictor.hf.vision_encoder).__name__ == "EdgeTamVisionModel"
    assert predictor.num_maskmem == 7 and predictor.max_obj_ptrs_in_encoder == 16
    # video.apply_postprocessing=false reaches the decoder (transformers' default is on)
    assert predictor.hf.mask_decoder.dynamic_multimask_via_stability is False
    # the processor built offline equals transformers' defaults for EdgeTAM
    ours_p, ref_p = predictor.processor, _edgetam_processor()
    assert ours_p.target_size == ref_p.target_size == 1024
    for key in ("size", "image_mean", "image_std", "resample", "do_rescale", "rescale_factor"):
        assert getattr(ours_p.video_processor, key) == getattr(ref_p.video_processor, key), key


def test_edgetam_video_from_a_saved_folder(tmp_path: Path) -> None:
    torch.manual_seed(5)
    hf = edgetam.random_edgetam_video()
    hf.save_pretrained(tmp_path / "edgetam-video")
    cfg = _cfg("edgetam", weights="pretrained", checkpoint=str(tmp_path / "edgetam-video"))
    predictor, info = build_video_model(cfg, _settings(), torch.device("cpu"), 0, progress=False)
    assert info.kind == "pretrained" and not info.untrained
    assert info.checkpoint_path == str(tmp_path / "edgetam-video")
    theirs = hf.state_dict()
    for key, value in predictor.hf.state_dict().items():  # type: ignore[operator]
        assert torch.equal(value, theirs[key]), key
    # the recorded hash is the transformers model's weights (what runs), not the wrapper's
    assert info.state_dict_hash == state_dict_hash(theirs)


@pytest.mark.parametrize(
    ("settings", "runtime", "named"),
    [
        ({"vos_optimized": True}, "eager", "video.vos_optimized=true"),
        ({"apply_postprocessing": True}, "eager", "video.fill_hole_area=8"),
        ({"fill_hole_area": 4}, "eager", "video.fill_hole_area=4"),
        ({}, "compile", "model.runtime=compile"),
    ],
)
@pytest.mark.parametrize("family", ["edgetam", "sam3_tracker"])
def test_unsupported_video_settings_are_refused_in_one_line(
    family: str, settings: dict[str, Any], runtime: str, named: str
) -> None:
    with pytest.raises(SamBenchError, match="is not supported") as info:
        build_video_model(
            _cfg(family, runtime=runtime), _settings(**settings), torch.device("cpu"), 0,
            progress=False,
        )  # fmt: skip
    assert named in str(info.value) and "\n" not in str(info.value)


def test_apply_postprocessing_with_no_hole_filling_reaches_the_decoder() -> None:
    predictor, _ = build_video_model(
        _cfg("edgetam"), _settings(apply_postprocessing=True, fill_hole_area=0),
        torch.device("cpu"), 0, progress=False,
    )  # fmt: skip
    assert predictor.hf.mask_decoder.dynamic_multimask_via_stability is True  # type: ignore[union-attr]


def test_frames_are_read_in_sam2_order(tmp_path: Path) -> None:
    from sam_bench.models.families.video import read_jpeg_folder

    for i, name in enumerate(["10.jpg", "2.jpg", "00001.jpeg"]):
        Image.fromarray(np.full((4, 6, 3), 40 * i, dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = read_jpeg_folder(str(tmp_path))
    # 00001 (80), 2 (40), 10 (0): by number, as sam2's reader sorts them
    assert [round(int(np.asarray(f)[0, 0, 0]) / 40) for f in frames] == [2, 1, 0]
    with pytest.raises(SamBenchError, match="not found"):
        read_jpeg_folder(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SamBenchError, match="no JPEG frames"):
        read_jpeg_folder(str(tmp_path / "empty"))


@pytest.mark.slow  # SAM 3's tracker at 1008 px (two-layer ViT), adapter and reference
def test_sam3_tracker_small_backbone_matches_transformers(
    frames: list[Path], tmp_path: Path
) -> None:
    """SAM 3's tracker video model with a two-layer ViT (the documented config's other
    settings: 1008 px, three-level FPN, SAM 3's memory modules and normalisation)."""
    from transformers import Sam3TrackerVideoProcessor

    torch.manual_seed(0)
    hf = sam3_tracker.random_sam3_tracker_video(
        num_hidden_layers=2, global_attn_indexes=[1], hidden_size=128, intermediate_size=256,
        num_attention_heads=4,
    )  # fmt: skip
    hf.mask_decoder.dynamic_multimask_via_stability = False
    processor = family_processor(hf, sam3_tracker.PIXEL_MEAN, sam3_tracker.PIXEL_STD)
    predictor = FamilyVideoPredictor(hf, processor, non_overlap_masks=True)
    assert isinstance(processor, Sam3TrackerVideoProcessor) and processor.target_size == 1008
    prompts = [
        Prompt(1, 0, "box", box=(40.0, 30.0, 200.0, 160.0)),
        Prompt(2, 1, "mask", mask=_square(240, 320, 100, 150, 60)),
    ]
    _check(predictor, frames, prompts, tmp_path, processor)


@pytest.mark.slow  # the documented ViT-L config at random init: minutes per frame on CPU
def test_sam3_tracker_full_config_tracks_untrained(frames: list[Path], tmp_path: Path) -> None:
    predictor, info = build_video_model(
        _cfg("sam3_tracker"), _settings(), torch.device("cpu"), seed=0, progress=False
    )
    assert info.untrained and isinstance(predictor, FamilyVideoPredictor)
    labels, seen = _run_track(
        predictor, frames[:2], [Prompt(1, 0, "click", point=(100, 80))], tmp_path
    )
    assert sorted(seen) == [0, 1] and all(torch.isfinite(seen[f][1]).all() for f in seen)
    assert all(lab is not None and lab.shape == (240, 320) for lab in labels)


def test_sam3_tracker_video_decodes_on_three_levels() -> None:
    """transformers' SAM 3 tracker video model drops the FPN's last level itself: the video
    config keeps four, so the model decodes on 288, 144 and 72 (small ViT, real model)."""
    torch.manual_seed(0)
    hf = sam3_tracker.random_sam3_tracker_video(
        num_hidden_layers=1, global_attn_indexes=[0], hidden_size=64, intermediate_size=128,
        num_attention_heads=2,
    )  # fmt: skip
    with torch.no_grad():
        feats = hf.get_image_features(torch.zeros(1, 3, 1008, 1008)).fpn_hidden_states
    assert [tuple(f.shape) for f in feats] == [(288 * 288, 1, 32), (144 * 144, 1, 64),
                                               (72 * 72, 1, 256)]  # fmt: skip


def test_video_weights_auto_falls_back_to_random_and_pretrained_fails(tmp_path: Path) -> None:
    from sam_bench.errors import CheckpointUnavailable

    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(CheckpointUnavailable, match="cannot load transformers weights"):
        build_video_model(
            _cfg("edgetam", weights="pretrained", checkpoint=missing), _settings(),
            torch.device("cpu"), 0, progress=False,
        )  # fmt: skip
    _, info = build_video_model(
        _cfg("edgetam", weights="auto", checkpoint=missing), _settings(), torch.device("cpu"), 0,
        progress=False,
    )  # fmt: skip
    assert info.untrained and info.fallback_reason and missing in info.fallback_reason
