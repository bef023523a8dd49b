"""The semantic task's pure steps on hand-made inputs: the overlap rule, the per-pixel map,
the crops CLIP sees, the saved PNG form, and the config checks."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam_bench.clip.crops import crop_box, make_crop
from sam_bench.errors import ConfigError
from sam_bench.tasks.semantic.labels import label_png, paint_label_map, priority_order
from sam_bench.tasks.semantic.metrics import UNLABELLED
from sam_bench.tasks.semantic.settings import SemanticConfig

U = UNLABELLED


def _rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _masks() -> list[np.ndarray]:
    """On a 4x6 image: A (left 4 columns, 16 px), B (columns 2-3, 8 px), C (top-right 2x2)."""
    a = np.zeros((4, 6), bool)
    a[:, :4] = True
    b = np.zeros((4, 6), bool)
    b[:, 2:4] = True
    c = np.zeros((4, 6), bool)
    c[:2, 4:] = True
    return [a, b, c]


def test_priority_order_by_iou_then_area_then_index() -> None:
    areas = np.array([16, 8, 4, 8])
    ious = np.array([0.9, 0.5, 0.9, 0.5])
    # iou: highest IoU first; ties: smaller area; then index
    assert priority_order(areas, ious, "iou").tolist() == [2, 0, 1, 3]
    # area: smallest first; ties: higher IoU; then index
    assert priority_order(areas, ious, "area").tolist() == [2, 1, 3, 0]
    with pytest.raises(ValueError, match="overlap rule"):
        priority_order(areas, ious, "largest")


def test_overlap_rule_decides_the_shared_pixels() -> None:
    a, b, c = _masks()
    rles = [_rle(m) for m in (a, b, c)]
    labels = [1, 2, 3]
    areas = [int(m.sum()) for m in (a, b, c)]
    ious = [0.9, 0.6, 0.7]  # the big mask is the most confident
    by_iou = paint_label_map(rles, labels, areas, ious, "iou", 4, 6)
    expected_iou = np.array([[1, 1, 1, 1, 3, 3]] * 2 + [[1, 1, 1, 1, U, U]] * 2)
    np.testing.assert_array_equal(by_iou, expected_iou)
    by_area = paint_label_map(rles, labels, areas, ious, "area", 4, 6)
    expected_area = np.array([[1, 1, 2, 2, 3, 3]] * 2 + [[1, 1, 2, 2, U, U]] * 2)
    np.testing.assert_array_equal(by_area, expected_area)
    assert by_iou.dtype == np.int32


def test_unlabelled_masks_claim_no_pixel() -> None:
    a, b, c = _masks()
    rles = [_rle(m) for m in (a, b, c)]
    areas = [16, 8, 4]
    # B wins the shared columns by area but is below min_confidence: A shows through there
    out = paint_label_map(rles, [1, U, U], areas, [0.9, 0.6, 0.7], "area", 4, 6)
    np.testing.assert_array_equal(out, np.array([[1, 1, 1, 1, U, U]] * 4))
    nothing = paint_label_map([], [], [], [], "iou", 3, 2)
    np.testing.assert_array_equal(nothing, np.full((3, 2), U))


def test_label_png_keeps_indices_and_marks_unlabelled() -> None:
    png, value = label_png(np.array([[0, 11, U]], dtype=np.int32))
    assert value == 255 and png.dtype == np.uint8 and png.tolist() == [[0, 11, 255]]
    png, value = label_png(np.array([[300, U]], dtype=np.int32))
    assert value == 65535 and png.dtype == np.uint16 and png.tolist() == [[300, 65535]]


def test_crop_box_padding_and_square() -> None:
    # box x=10, y=20, w=10, h=4; 10% padding: x 9..21, y 19.6..24.4 -> rounded outwards
    assert crop_box([10, 20, 10, 4], 0.1, square=False) == (9, 19, 21, 25)
    # square about the centre (15, 22): side 12
    assert crop_box([10, 20, 10, 4], 0.1, square=True) == (9, 16, 21, 28)
    assert crop_box([3, 3, 0, 0], 0.0, square=False) == (3, 3, 4, 4)  # at least one pixel


def test_crop_modes_on_a_hand_made_image() -> None:
    image = np.zeros((6, 8, 3), np.uint8)
    image[..., 0] = np.arange(8, dtype=np.uint8)[None, :] * 10  # red ramp along x
    image[..., 1] = 200
    mask = np.zeros((6, 8), bool)
    mask[2:4, 2:5] = True  # box XYWH (2, 2, 3, 2)
    fill = (1, 2, 3)
    box = make_crop(image, mask, [2, 2, 3, 2], mode="box", padding=0, square=False, fill=fill)
    np.testing.assert_array_equal(box, image[2:4, 2:5])
    # padding 1.0 -> x -1..8, y 0..6: one column left of the image gets the fill colour
    padded = make_crop(image, mask, [2, 2, 3, 2], mode="blank", padding=1.0, square=False,
                       fill=fill)  # fmt: skip
    assert padded.shape == (6, 9, 3)
    np.testing.assert_array_equal(padded[:, 0], np.tile(fill, (6, 1)))  # outside the image
    np.testing.assert_array_equal(padded[2:4, 3:6], image[2:4, 2:5])  # the mask, unchanged
    np.testing.assert_array_equal(padded[0, 1:], np.tile(fill, (8, 1)))  # background blanked
    blurred = make_crop(image, mask, [2, 2, 3, 2], mode="blur", padding=1.0, square=False,
                        blur_sigma=2.0, fill=fill)  # fmt: skip
    np.testing.assert_array_equal(blurred[2:4, 3:6], image[2:4, 2:5])  # the mask is sharp
    outside = blurred[0, 1:]  # background blurred: the ramp smoothed, green kept
    assert (outside[:, 1] == 200).all()
    assert not np.array_equal(outside[:, 0], image[0, :, 0])
    with pytest.raises(ValueError, match="crop mode"):
        make_crop(image, mask, [2, 2, 3, 2], mode="cutout")


def test_crop_entirely_outside_the_image_is_the_fill() -> None:
    image = np.full((4, 4, 3), 50, np.uint8)
    out = make_crop(image, np.zeros((4, 4), bool), [10, 10, 2, 2], padding=0, square=False,
                    fill=(9, 9, 9))  # fmt: skip
    assert out.shape == (2, 2, 3) and (out == 9).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"templates": ["a photo of a cat."]}, "semantic.templates"),
        ({"templates": ["{} and {}"]}, "semantic.templates"),
        ({"templates": []}, "semantic.templates"),
        ({"crop": "cutout"}, "semantic.crop"),
        ({"overlap": "largest"}, "semantic.overlap"),
        ({"min_confidence": 1.5}, "semantic.min_confidence"),
        ({"backend": "clip"}, "semantic.backend"),
        ({"batch_size": 0}, "semantic.batch_size"),
        ({"padding": -0.1}, "semantic.padding"),
        ({"synonyms": "first"}, "semantic.synonyms"),
        ({"clip_weights": "none"}, "semantic.clip_weights"),
    ],
)
def test_semantic_settings_are_checked_naming_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        SemanticConfig(**kwargs)


def test_config_id_names_local_clip_weights_by_content(tmp_path) -> None:
    from dataclasses import asdict

    from sam_bench.tasks.semantic.task import clip_identity

    def ident(**kwargs) -> dict:
        return clip_identity(asdict(SemanticConfig(**kwargs)))

    a, b, c = tmp_path / "a.pt", tmp_path / "sub" / "b.pt", tmp_path / "c.pt"
    b.parent.mkdir()
    for path, data in ((a, b"weights"), (b, b"weights"), (c, b"other")):
        path.write_bytes(data)
    assert ident(clip_pretrained=str(a)) == ident(clip_pretrained=str(b))  # same bytes
    assert ident(clip_pretrained=str(a)) != ident(clip_pretrained=str(c))
    assert str(tmp_path) not in str(ident(clip_pretrained=str(a)))
    assert ident(clip_pretrained="openai")["clip_pretrained"] == "openai"  # a tag stays
    # a save_pretrained folder (transformers) or open_clip's local-dir: the files' content
    for d, data in ((tmp_path / "m1", b"x"), (tmp_path / "m2", b"x"), (tmp_path / "m3", b"y")):
        d.mkdir()
        (d / "model.safetensors").write_bytes(data)
    hf = [ident(backend="transformers", clip_model=str(tmp_path / m)) for m in ("m1", "m2", "m3")]
    assert hf[0] == hf[1] != hf[2] and str(tmp_path) not in str(hf[0])
    oc = [ident(clip_model=f"local-dir:{tmp_path / m}") for m in ("m1", "m2")]
    assert oc[0] == oc[1] and oc[0]["clip_model"].startswith("local-dir:sha256:")
    # settings that do not apply
    assert ident(blur_sigma=2.0) == ident()  # crop=blank
    assert ident(crop="blur", blur_sigma=2.0) != ident(crop="blur")
    assert ident(clip_weights="random", clip_pretrained="openai") == ident(clip_weights="random")
    assert ident(min_confidence=0.5) != ident()
