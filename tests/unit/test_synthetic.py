"""The synthetic scene generator and the embedded dataset it produced."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam_bench.data.registry import embedded_synthetic_root
from sam_bench.data.synthetic import SCENES, generate_dataset, main, make_scene, write_png

EMBEDDED = embedded_synthetic_root()

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_regenerated_dataset_is_byte_identical(tmp_path: Path) -> None:
    """Results on the embedded set stay comparable across versions: the generator must
    rewrite it byte for byte (see sam_bench/datasets/README.md to change it on purpose)."""
    generate_dataset(tmp_path, n_per_scene=2, size=(320, 240))
    committed, fresh = _files(EMBEDDED), _files(tmp_path)
    assert sorted(fresh) == sorted(committed)
    assert fresh["annotations.json"] == committed["annotations.json"]
    for name in sorted(n for n in committed if n.endswith(".png")):
        a = np.array(Image.open(EMBEDDED / name))
        b = np.array(Image.open(tmp_path / name))
        np.testing.assert_array_equal(a, b, err_msg=f"pixels of {name} changed")
        if fresh[name] != committed[name] and "ng" in zlib.ZLIB_RUNTIME_VERSION:
            pytest.skip(f"same pixels, other PNG bytes under zlib {zlib.ZLIB_RUNTIME_VERSION}")
        assert fresh[name] == committed[name], f"{name}: same pixels but different PNG bytes"


def test_embedded_dataset_shape_and_size() -> None:
    files = _files(EMBEDDED)
    assert sum(len(b) for b in files.values()) < 600_000
    data = json.loads(files["annotations.json"])
    # ids interleave the kinds, so dataset.limit=4 gives one image of each
    assert [im["scene"] for im in data["images"]] == [s for _ in range(2) for s in SCENES]
    assert [im["id"] for im in data["images"]] == list(range(1, 9))
    assert data["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    per_image: dict[int, int] = {}
    for a in data["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
        assert isinstance(a["segmentation"]["counts"], str)
        assert a["iscrowd"] == 0 and a["category_id"] == 1
    for im in data["images"]:
        pil = Image.open(EMBEDDED / "images" / im["file_name"])
        assert pil.size == (320, 240) == (im["width"], im["height"])
        assert pil.mode == ("L" if im["scene"] == "gray_lowcontrast" else "RGB")
        n = per_image.get(im["id"], 0)
        assert (30 <= n <= 80) if im["scene"] == "dense_small" else (2 <= n <= 8), im["file_name"]


def test_annotations_are_valid_coco_and_exact() -> None:
    api = COCO(str(EMBEDDED / "annotations.json"))
    for img_id, img in api.imgs.items():
        anns = api.imgToAnns[img_id]
        union = np.zeros((img["height"], img["width"]), np.int32)
        for a in anns:
            m = api.annToMask(a)
            assert m.sum() == a["area"] >= 10
            box = mask_utils.toBbox(api.annToRLE(a)).tolist()
            assert box == a["bbox"]
            union += m
        assert union.max() <= 1  # occlusion: visible parts never overlap


@pytest.mark.parametrize("kind", SCENES)
def test_scene_is_deterministic_and_seeded(kind: str) -> None:
    a = make_scene(kind, seed=5)
    b = make_scene(kind, seed=5)
    c = make_scene(kind, seed=6)
    assert np.array_equal(a.image, b.image)
    assert len(a.masks) == len(b.masks)
    assert all(np.array_equal(x, y) for x, y in zip(a.masks, b.masks, strict=True))
    assert not np.array_equal(a.image, c.image)


def test_occlusion_masks_are_exact() -> None:
    """Without noise every visible mask of a `color` scene has exactly one colour, and masks
    never overlap: later objects cut earlier ones."""
    for seed in range(5):
        scene = make_scene("color", seed=seed, noise=0, n_objects=(8, 8), object_size=(30, 60))
        stack = np.stack(scene.masks)
        assert stack.sum(axis=0).max() <= 1
        for m in scene.masks:
            assert len(np.unique(scene.image[m], axis=0)) == 1


def test_dense_small_and_knobs() -> None:
    scene = make_scene("dense_small", seed=0, size=(160, 120))
    assert scene.image.shape == (120, 160, 3)
    assert all(m.sum() >= 10 for m in scene.masks)
    assert 30 <= len(scene.masks) <= 80
    few = make_scene("dense_small", seed=0, n_objects=(5, 5), object_size=(6, 6), min_area=0)
    assert len(few.masks) <= 5
    flat = make_scene("gray_lowcontrast", seed=0, contrast=0.0, noise=0)
    assert flat.image.ndim == 2
    # contrast 0: objects have the background's value, only the gradient is left
    assert (np.diff(flat.image.astype(int), axis=0) == 0).all()
    with pytest.raises(ValueError, match="unknown scene kind"):
        make_scene("stars")


def test_write_png_roundtrip(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(7, 9, 3)).astype(np.uint8)
    write_png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "a.png")), rgb)
    write_png(tmp_path / "g.png", rgb[..., 0])
    assert Image.open(tmp_path / "g.png").mode == "L"
    with pytest.raises(ValueError):
        write_png(tmp_path / "x.png", rgb.astype(np.uint16))


def test_cli_and_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "syn"
    assert main([str(out), "--n-per-scene", "2", "--scenes", "color", "--width", "64"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert main([str(out), "--n-per-scene", "1", "--scenes", "color", "--width", "64"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["color_00.png"]
    data = json.loads((out / "annotations.json").read_text())
    assert data["images"][0]["width"] == 64
