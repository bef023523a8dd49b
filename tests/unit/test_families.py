"""Model families through transformers (``model=edgetam``, ``model=sam3_tracker``): sam2's
OFFICIAL image predictor and automatic mask generator run on the SAM2Base shell and give the
masks that calling the transformers model directly gives for the same prompts (the reference
implementation here), random init."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from sam_bench.models.build import build_model, model_config
from sam_bench.models.families import build_family_model, edgetam, fit_image_predictor, sam3_tracker
from sam_bench.models.families.shell import build_shell
from tests.hf_fixtures import embedded_image
from tests.hf_fixtures import family_cfg as _cfg

pytest.importorskip("transformers", minversion="5.0")  # edgetam random init: 5.20


def _reference(hf: Any, x: torch.Tensor, coords: torch.Tensor, labels: np.ndarray, mm: bool) -> Any:
    """transformers' own forward: the family model called directly."""
    with torch.no_grad():
        return hf(
            pixel_values=x,
            input_points=coords[None],
            input_labels=torch.as_tensor(labels)[None],
            multimask_output=mm,
        )


def _check_against_reference(shell: Any, hf: Any, image: np.ndarray) -> None:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = fit_image_predictor(SAM2ImagePredictor(shell))
    points = np.array([[[40, 50]], [[150, 120]], [[300, 20]]])
    labels = np.array([[1], [1], [0]])
    with torch.no_grad():
        predictor.set_image(image)
        x = predictor._transforms(image)[None]
        coords = predictor._transforms.transform_coords(
            torch.as_tensor(points, dtype=torch.float32), normalize=True, orig_hw=image.shape[:2]
        )
        for mm in (True, False):
            masks, scores, low = predictor.predict(
                point_coords=points, point_labels=labels, multimask_output=mm, return_logits=True
            )
            ref = _reference(hf, x, coords, labels, mm)
            # the same low-res logits and scores as transformers' forward, bit for bit
            assert np.array_equal(low, ref.pred_masks[0].numpy())
            assert np.array_equal(scores, ref.iou_scores[0].numpy())
            upscaled = predictor._transforms.postprocess_masks(ref.pred_masks[0], image.shape[:2])
            assert np.array_equal(masks > 0, upscaled.numpy() > 0)

        # the automatic mask generator: every candidate kept (thresholds 0, no NMS) equals the
        # reference's mask for the same grid point and output index
        generator = SAM2AutomaticMaskGenerator(
            shell, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
            box_nms_thresh=1.0,
        )  # fmt: skip
        fit_image_predictor(generator.predictor)
        records = generator.generate(image)
        grid = generator.point_grids[0] * np.array(image.shape[:2])[::-1]
        grid_coords = predictor._transforms.transform_coords(
            torch.as_tensor(grid[:, None], dtype=torch.float32),
            normalize=True,
            orig_hw=image.shape[:2],
        )
        ref = _reference(hf, x, grid_coords, np.ones((len(grid), 1), dtype=np.int64), True)
        ref_masks = predictor._transforms.postprocess_masks(ref.pred_masks[0], image.shape[:2]) > 0
        ref_iou = ref.iou_scores[0].numpy()
    assert len(records) == 3 * len(grid)
    for record in records:
        p = int(np.argmin(np.abs(grid - np.array(record["point_coords"][0])).sum(1)))
        m = int(np.argmin(np.abs(ref_iou[p] - record["predicted_iou"])))
        assert ref_iou[p, m] == pytest.approx(record["predicted_iou"], abs=1e-6)
        assert np.array_equal(record["segmentation"], ref_masks[p, m].numpy())


@pytest.mark.slow  # EdgeTAM's encoder, three times, plus 19 decoder calls: ~60 s on a busy CPU
def test_edgetam_shell_matches_transformers() -> None:
    torch.manual_seed(0)
    hf = edgetam.random_edgetam()
    shell = build_shell(
        copy.deepcopy(hf), model_config(_cfg("edgetam")),
        image_size=edgetam.IMAGE_SIZE, backbone_stride=edgetam.BACKBONE_STRIDE,
    )  # fmt: skip
    hf.mask_decoder.dynamic_multimask_via_stability = False  # as the shell (no post-processing)
    _check_against_reference(shell, hf, embedded_image())


def test_edgetam_builds_untrained_with_family_settings() -> None:
    model, info = build_model(_cfg("edgetam"), torch.device("cpu"), seed=0, progress=False)
    assert info.kind == "random" and info.untrained and info.checkpoint_path is None
    torch.manual_seed(0)
    hf = edgetam.random_edgetam()
    # the shell holds the family model's weights and image-path settings
    assert torch.equal(model.no_mem_embed, hf.no_memory_embedding)
    assert model.image_size == 1024 and model.sam_image_embedding_size == 64
    assert model.directly_add_no_mem_embed and model.num_feature_levels == 3
    assert model.bb_feat_sizes == [(256, 256), (128, 128), (64, 64)]
    theirs = hf.mask_decoder.state_dict()
    for key, value in model.sam_mask_decoder.hf.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    # model.apply_postprocessing reaches the decoder (transformers' default would be on)
    assert model.sam_mask_decoder.hf.dynamic_multimask_via_stability is False


@pytest.mark.slow  # two more builds (~15 s each on a busy CPU)
def test_edgetam_build_is_seeded_and_follows_apply_postprocessing() -> None:
    _, info = build_model(_cfg("edgetam"), torch.device("cpu"), seed=0, progress=False)
    _, again = build_model(_cfg("edgetam"), torch.device("cpu"), seed=0, progress=False)
    assert again.state_dict_hash == info.state_dict_hash
    post, _ = build_model(
        _cfg("edgetam", apply_postprocessing=True), torch.device("cpu"), seed=0, progress=False
    )
    assert post.sam_mask_decoder.hf.dynamic_multimask_via_stability is True


_HASH_IN_A_NEW_PROCESS = """
import sys
from sam_bench.models.build import model_config
from sam_bench.models.families import build_family_model
from tests.unit.test_families import _cfg
cfg = _cfg("edgetam")
print(build_family_model(cfg, model_config(cfg), int(sys.argv[1])).state_dict_hash)
"""


@pytest.mark.slow  # three random EdgeTAM builds, one in a new process (~60 s on a busy CPU)
def test_random_family_weights_hash_is_the_family_models_and_seeded() -> None:
    """The recorded hash of a random family model is the transformers model's weights (an
    independent ``random_edgetam()`` from the same seed has it), another seed gives another
    hash, and the same seed gives the same hash in another process."""
    import subprocess
    import sys

    from sam_bench.models.checkpoints import state_dict_hash

    cfg = _cfg("edgetam")
    seed0 = build_family_model(cfg, model_config(cfg), 0).state_dict_hash
    torch.manual_seed(0)
    assert seed0 == state_dict_hash(edgetam.random_edgetam().state_dict())
    assert build_family_model(cfg, model_config(cfg), 1).state_dict_hash != seed0
    out = subprocess.run(
        [sys.executable, "-c", _HASH_IN_A_NEW_PROCESS, "0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == seed0


def test_pretrained_without_hub_is_an_error_and_auto_falls_back(tmp_path: Any) -> None:
    from sam_bench.errors import CheckpointUnavailable

    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(CheckpointUnavailable, match="cannot load transformers weights"):
        build_family_model(_cfg("edgetam", weights="pretrained", checkpoint=missing), None, 0)
    built = build_family_model(
        _cfg("edgetam", weights="auto", checkpoint=missing), model_config(_cfg("edgetam")), 0
    )
    assert not built.pretrained and built.fallback_reason and missing in built.fallback_reason


def test_pretrained_from_a_saved_folder(tmp_path: Any) -> None:
    torch.manual_seed(3)
    hf = edgetam.random_edgetam()
    hf.save_pretrained(tmp_path / "edgetam")
    cfg = _cfg("edgetam", weights="pretrained", checkpoint=str(tmp_path / "edgetam"))
    model, info = build_model(cfg, torch.device("cpu"), seed=0, progress=False)
    assert info.kind == "pretrained" and info.checkpoint_path == str(tmp_path / "edgetam")
    # the recorded hash is the loaded transformers weights' (not the shell's random memory
    # modules, which would make it depend on the seed)
    from sam_bench.models.checkpoints import state_dict_hash

    assert info.state_dict_hash == state_dict_hash(hf.state_dict())
    theirs = hf.state_dict()
    for key, value in model.sam_mask_decoder.hf.state_dict().items():
        assert torch.equal(value, theirs["mask_decoder." + key]), key


@pytest.mark.slow  # ~40 s on a busy 2-core CPU (1008-px input through the predictor)
def test_sam3_tracker_shell_matches_transformers_small_backbone() -> None:
    """SAM 3's tracker at 1008 px (72x72 embeddings, SAM 3's normalisation) with a two-layer
    ViT (the documented config's other settings): the shell, driven by the official predictor
    (fitted to its feature sizes), equals ``Sam3TrackerModel``'s own forward."""
    torch.manual_seed(0)
    hf = sam3_tracker.random_sam3_tracker(
        num_hidden_layers=2, global_attn_indexes=[1], hidden_size=128, intermediate_size=256,
        num_attention_heads=4,
    )  # fmt: skip
    shell = build_shell(
        copy.deepcopy(hf), model_config(_cfg("sam3_tracker")),
        image_size=sam3_tracker.IMAGE_SIZE, backbone_stride=sam3_tracker.BACKBONE_STRIDE,
        pixel_mean=sam3_tracker.PIXEL_MEAN, pixel_std=sam3_tracker.PIXEL_STD,
    )  # fmt: skip
    hf.mask_decoder.dynamic_multimask_via_stability = False
    assert shell.sam_image_embedding_size == 72
    assert shell.bb_feat_sizes == [(288, 288), (144, 144), (72, 72)]
    _check_against_reference_renorm(shell, hf, embedded_image())


def _check_against_reference_renorm(shell: Any, hf: Any, image: np.ndarray) -> None:
    """:func:`_check_against_reference` for a family with its own normalisation: the
    reference gets the image normalised SAM 3's way (mean 0.5, std 0.5)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = fit_image_predictor(SAM2ImagePredictor(shell))
    points = np.array([[[40, 50]], [[150, 120]]])
    labels = np.array([[1], [0]])
    with torch.no_grad():
        predictor.set_image(image)
        x = predictor._transforms(image)[None]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (x * std + mean - 0.5) / 0.5
        coords = predictor._transforms.transform_coords(
            torch.as_tensor(points, dtype=torch.float32), normalize=True, orig_hw=image.shape[:2]
        )
        _, scores, low = predictor.predict(
            point_coords=points, point_labels=labels, multimask_output=True, return_logits=True
        )
        ref = _reference(hf, x, coords, labels, True)
    assert np.array_equal(low, ref.pred_masks[0].numpy())
    assert np.array_equal(scores, ref.iou_scores[0].numpy())


@pytest.mark.slow  # the documented ViT-L config at random init: ~70 s per image on CPU
def test_sam3_tracker_full_config_runs_untrained() -> None:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model, info = build_model(_cfg("sam3_tracker"), torch.device("cpu"), seed=0, progress=False)
    assert info.untrained
    predictor = fit_image_predictor(SAM2ImagePredictor(model))
    with torch.no_grad():
        predictor.set_image(embedded_image())
        masks, scores, _ = predictor.predict(
            point_coords=np.array([[40, 50]]), point_labels=np.array([1])
        )
    assert masks.shape == (3, *embedded_image().shape[:2]) and np.isfinite(scores).all()


def test_edgetam_names_the_transformers_it_needs() -> None:
    """transformers 5.0-5.19 cannot build a random EdgeTAM offline (measured with each
    release installed apart): one line naming the version that can."""
    from sam_bench.errors import SamBenchError

    edgetam.check_transformers(edgetam.MIN_TRANSFORMERS)
    edgetam.check_transformers("5.25.0")
    with pytest.raises(SamBenchError, match=r"transformers>=5\.20\.0") as info:
        edgetam.check_transformers("5.19.0")
    assert "5.19.0" in str(info.value) and "\n" not in str(info.value)
