"""Dataset loaders (coco, instance_folder, dsb, synthetic) and the registry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import sam_bench.data.coco as coco_module
from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.coco import CocoDataset
from sam_bench.data.dsb import DsbDataset
from sam_bench.data.instance_folder import InstanceFolderDataset, read_label_map
from sam_bench.data.registry import _takes_limits, build_dataset, embedded_synthetic_root
from sam_bench.errors import ConfigError, DatasetError, SampleError

COCO_JSON = "coco_tiny_train2017/small_coco/instances_train2017_small.json"
COCO_IMAGES = "coco_tiny_train2017/small_coco/train_2017_small"
DSB = "dsb2018_nuclei_subset"

# pycocotools' mask.decode triggers a NumPy 2 copy-keyword DeprecationWarning on every call
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _decode(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode(rle).astype(bool)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------------------------
# COCO on the real shared sample


@pytest.mark.shared_data
def test_coco_shared_sample_matches_pycocotools(shared_data: Path) -> None:
    ann_file = shared_data / COCO_JSON
    ds = build_dataset(
        DatasetConfig(
            format="coco", annotations=str(ann_file), images=str(shared_data / COCO_IMAGES)
        ),
        Path("/"),
    )
    refs = ds.refs()
    assert len(refs) == 16
    assert [int(r.image_id) for r in refs] == sorted(int(r.image_id) for r in refs)

    ref_api = COCO(str(ann_file))
    total, crowd_images = 0, []
    for ref in refs:
        sample = ds.load(ref)
        img_id = int(ref.image_id)
        info = ref_api.imgs[img_id]
        assert sample.raw.pixels.shape[:2] == (info["height"], info["width"])
        assert (sample.gt.height, sample.gt.width) == (info["height"], info["width"])
        anns = sorted(ref_api.imgToAnns[img_id], key=lambda a: a["id"])
        assert len(sample.gt.rles) == len(anns)
        for rle, crowd, ann in zip(sample.gt.rles, sample.gt.iscrowd, anns, strict=True):
            assert isinstance(rle["counts"], bytes)
            np.testing.assert_array_equal(_decode(rle), ref_api.annToMask(ann).astype(bool))
            assert crowd == bool(ann["iscrowd"])
        if any(sample.gt.iscrowd):
            crowd_images.append((img_id, sum(sample.gt.iscrowd)))
        total += len(sample.gt.rles)
    assert total == 197
    assert crowd_images == [(184613, 1)]


@pytest.mark.shared_data
def test_coco_shared_limit_and_fingerprint(shared_data: Path) -> None:
    cfg = DatasetConfig(
        format="coco",
        annotations=str(shared_data / COCO_JSON),
        images=str(shared_data / COCO_IMAGES),
    )
    full = build_dataset(cfg, Path("/"))
    assert full.warnings() == []  # every annotation has its image, no link leads out
    cfg.limit = 3
    first3 = build_dataset(cfg, Path("/"))
    assert first3.refs() == full.refs()[:3]
    fp = full.fingerprint()
    assert len(fp) == 64
    assert fp == full.fingerprint()
    assert first3.fingerprint() != fp


# --------------------------------------------------------------------------------------------
# DSB and instance_folder on the real shared sample


@pytest.mark.shared_data
def test_dsb_shared_sample(shared_data: Path) -> None:
    root = shared_data / DSB / "data" / "train"
    labels_dir = shared_data / DSB / "derived" / "instance_labels"
    ds = build_dataset(DatasetConfig(format="dsb", root=str(root)), Path("/"))
    refs = ds.refs()
    ids = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert [r.image_id for r in refs] == ids
    assert len(refs) == 12
    total = 0
    for ref in refs:
        sample = ds.load(ref)
        mask_files = sorted((root / ref.image_id / "masks").glob("*.png"))
        assert len(sample.gt.rles) == len(mask_files)
        assert not any(sample.gt.iscrowd)
        # derived id map: k = k-th mask file, later masks win where masks overlap
        labels = np.array(Image.open(labels_dir / f"{ref.image_id}.png"))
        assert labels.shape == sample.raw.pixels.shape[:2]
        assert int(labels.max()) == len(mask_files)
        later = np.zeros(labels.shape, bool)
        for k in range(len(mask_files), 0, -1):
            m = _decode(sample.gt.rles[k - 1])
            np.testing.assert_array_equal(labels == k, m & ~later)
            later |= m
        total += len(mask_files)
    assert total == 518  # 699 in all, 181 of them in data/test


@pytest.mark.shared_data
def test_dsb_root_one_level_too_high(shared_data: Path) -> None:
    with pytest.raises(DatasetError, match="did you mean"):
        DsbDataset(shared_data / DSB / "data")


@pytest.mark.shared_data
def test_instance_folder_on_derived_labels(shared_data: Path, tmp_path: Path) -> None:
    # derived/instance_labels/<id>.png matches <split>/<id>/images/<id>.png by stem, but the
    # images are nested: link them into one flat folder (links in tmp_path, nothing copied).
    root = shared_data / DSB / "data" / "train"
    images = tmp_path / "images"
    images.mkdir()
    for d in sorted(root.iterdir()):
        (images / f"{d.name}.png").symlink_to(d / "images" / f"{d.name}.png")
    labels = shared_data / DSB / "derived" / "instance_labels"  # 15 maps; 12 have an image here
    ds = build_dataset(
        DatasetConfig(format="instance_folder", images=str(images), labels=str(labels)), Path("/")
    )
    dsb = DsbDataset(root)
    assert [r.image_id for r in ds.refs()] == [r.image_id for r in dsb.refs()]
    # the links lead out of the images folder (followed by default), 3 maps have no image
    warned = {w["kind"]: w for w in ds.warnings()}
    assert set(warned) == {"orphan_labels", "external_links"}
    assert warned["orphan_labels"]["count"] == 3
    assert warned["external_links"]["count"] == 12
    assert dsb.warnings() == []  # the real DSB layout has nothing to warn about
    for ref, dref in zip(ds.refs(), dsb.refs(), strict=True):
        s, d = ds.load(ref), dsb.load(dref)
        assert len(s.gt.rles) == len(d.gt.rles)
        if ref.image_id == "gnf_dna-11":  # 12 overlapping pixels: later mask wins in the map
            diff = sum(
                int((_decode(a) != _decode(b)).sum())
                for a, b in zip(s.gt.rles, d.gt.rles, strict=True)
            )
            assert 0 < diff <= 12
        else:
            assert [r["counts"] for r in s.gt.rles] == [r["counts"] for r in d.gt.rles]


# --------------------------------------------------------------------------------------------
# COCO edge cases on small datasets made in tmp_path


def _coco_dir(tmp_path: Path, images: list[dict[str, Any]], anns: list[dict[str, Any]]) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return path


def _square_poly(x: int, y: int, s: int) -> list[float]:
    return [x, y, x + s, y, x + s, y + s, x, y + s]


def test_coco_rle_forms_match_pycocotools(tmp_path: Path) -> None:
    h, w = 20, 30
    _png(tmp_path / "images" / "a.png", np.zeros((h, w, 3), np.uint8))
    m = np.zeros((h, w), np.uint8)
    m[3:9, 4:15] = 1
    compressed = mask_utils.encode(np.asfortranarray(m))
    flat = m.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:  # uncompressed RLE: run lengths starting with zeros
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    anns = [
        {"id": 3, "image_id": 1, "segmentation": [_square_poly(2, 2, 6), _square_poly(20, 10, 5)]},
        {"id": 1, "image_id": 1, "segmentation": {"size": [h, w], "counts": runs}, "iscrowd": 1},
        {
            "id": 2,
            "image_id": 1,
            "segmentation": {"size": [h, w], "counts": compressed["counts"].decode()},
        },
    ]
    for a in anns:
        a.update(category_id=1, area=1, bbox=[0, 0, 1, 1], iscrowd=a.get("iscrowd", 0))
    ann_file = _coco_dir(tmp_path, [{"id": 1, "file_name": "a.png", "height": h, "width": w}], anns)
    ds = CocoDataset(ann_file, tmp_path / "images")
    sample = ds.load(ds.refs()[0])
    ref_api = COCO(str(ann_file))
    expected = [
        ref_api.annToMask(a) for a in sorted(ref_api.dataset["annotations"], key=lambda a: a["id"])
    ]
    assert len(sample.gt.rles) == 3
    for rle, exp in zip(sample.gt.rles, expected, strict=True):
        np.testing.assert_array_equal(_decode(rle), exp.astype(bool))
    assert sample.gt.iscrowd == [True, False, False]  # annotation-id order
    assert sample.gt.n_instances == 2
    np.testing.assert_array_equal(_decode(sample.gt.rles[0]), m.astype(bool))


@pytest.mark.parametrize(
    "segmentation, reason",
    [
        ([[1, 1, 5, 1, 5]], "polygon 0 has 5 coordinates"),
        ([[1, 1, 5, 1, "x", 5]], "polygon 0 is not a list of numbers"),
        ([], "empty polygon list"),
        ({"size": [10, 10], "counts": [100]}, "RLE size .* does not match"),
        ({"size": [20, 30], "counts": [10, 5]}, "sum to 15, not 600"),
        ({"size": [20, 30], "counts": "0`0"}, "compressed RLE"),
        ({"size": [20, 30], "counts": "abc\x7f"}, "invalid character"),
        ("nonsense", "neither polygons nor RLE"),
    ],
)
def test_coco_malformed_annotation_costs_its_image(
    tmp_path: Path, segmentation: Any, reason: str
) -> None:
    for name in ("a.png", "b.png"):
        _png(tmp_path / "images" / name, np.zeros((20, 30), np.uint8))
    anns = [
        {"id": 41, "image_id": 1, "segmentation": segmentation, "iscrowd": 0},
        {"id": 42, "image_id": 2, "segmentation": [_square_poly(1, 1, 4)], "iscrowd": 0},
    ]
    images = [
        {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
        {"id": 2, "file_name": "b.png", "height": 20, "width": 30},
    ]
    ds = CocoDataset(_coco_dir(tmp_path, images, anns), tmp_path / "images")
    bad, good = ds.refs()
    with pytest.raises(SampleError, match=f"annotation 41: .*{reason}") as e:
        ds.load(bad)
    assert e.value.path.endswith("a.png")
    assert len(ds.load(good).gt.rles) == 1


def test_coco_path_escape_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _png(tmp_path / "secret.png", np.zeros((4, 4), np.uint8))  # exists, outside images/
    _png(tmp_path / "images" / "ok.png", np.zeros((4, 4), np.uint8))
    names = ["../secret.png", str(tmp_path / "secret.png"), "sub/../../secret.png", "C:\\x.png"]
    images = [{"id": i + 1, "file_name": n, "height": 4, "width": 4} for i, n in enumerate(names)]
    images.append({"id": 99, "file_name": "sub/../ok.png", "height": 4, "width": 4})
    ds = CocoDataset(_coco_dir(tmp_path, images, []), tmp_path / "images")
    read: list[Path] = []
    real_read = coco_module.read_image
    monkeypatch.setattr(
        coco_module, "read_image", lambda p, **kw: read.append(Path(p)) or real_read(p, **kw)
    )
    refs = ds.refs()
    for ref in refs[:4]:
        with pytest.raises(SampleError, match="outside the images folder"):
            ds.load(ref)
    assert read == []
    assert ds.load(refs[4]).gt.rles == []  # "sub/../ok.png" stays inside: fine
    assert read == [tmp_path / "images" / "ok.png"]
    ds.fingerprint()  # hashes names only for unsafe entries: must not fail


def test_coco_broken_and_missing_images_cost_one_image(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", np.zeros((6, 8, 3), np.uint8))
    (tmp_path / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _png(tmp_path / "images" / "c.png", np.zeros((6, 8, 3), np.uint8))
    _png(tmp_path / "images" / "d.png", np.zeros((5, 8, 3), np.uint8))  # wrong size
    images = [
        {"id": i, "file_name": f"{c}.png", "height": 6, "width": 8}
        for i, c in zip((4, 1, 3, 2, 5), "edcba", strict=True)  # listed out of order
    ]
    ds = CocoDataset(_coco_dir(tmp_path, images, []), tmp_path / "images")
    refs = ds.refs()
    assert [r.image_id for r in refs] == ["1", "2", "3", "4", "5"]
    outcome = {}
    for ref in refs:
        try:
            ds.load(ref)
            outcome[ref.path.name] = "ok"
        except SampleError as e:
            outcome[ref.path.name] = e.reason
            assert e.path.endswith(ref.path.name)
    assert outcome["a.png"] == "ok" and outcome["c.png"] == "ok"
    assert outcome["b.png"].startswith("cannot decode image")
    assert outcome["d.png"] == "image is 8x5 but ann.json says 8x6"
    assert outcome["e.png"].startswith("image file not found")


def test_coco_dataset_errors(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    missing = tmp_path / "nope.json"
    with pytest.raises(DatasetError, match=str(missing)):
        CocoDataset(missing, tmp_path / "images")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match=f"{bad}.*not valid JSON"):
        CocoDataset(bad, tmp_path / "images")
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="no 'images' list"):
        CocoDataset(wrong, tmp_path / "images")
    ok = _coco_dir(tmp_path, [], [])
    with pytest.raises(DatasetError, match="images folder not found"):
        CocoDataset(ok, tmp_path / "missing_images")


# --------------------------------------------------------------------------------------------
# instance_folder and dsb on small datasets made in tmp_path


def test_instance_folder_label_forms(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    lab16 = np.zeros((10, 12), np.uint16)
    lab16[1:3, 1:4], lab16[5:9, 6:11] = 700, 3  # ids need not be dense
    _png(images / "a.png", np.zeros((10, 12, 3), np.uint8))
    _png(labels / "a.png", lab16)
    _png(images / "b.jpg", np.zeros((10, 12, 3), np.uint8))
    tifffile.imwrite(labels / "b.tif", lab16.astype(np.uint32))
    _png(images / "c.png", np.zeros((10, 12), np.uint8))
    pal = Image.frombytes("P", (12, 10), (lab16 > 0).astype(np.uint8).tobytes())
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.save(labels / "c.png")
    _png(images / "d.png", np.zeros((10, 12), np.uint8))  # no label
    _png(images / "e.png", np.zeros((10, 12), np.uint8))
    _png(labels / "e.png", np.zeros((9, 12), np.uint8))  # wrong size
    _png(images / "f.png", np.zeros((10, 12), np.uint8))
    _png(labels / "f.png", np.zeros((10, 12, 3), np.uint8))  # RGB label

    ds = InstanceFolderDataset(images, labels)
    refs = ds.refs()
    assert [r.path.name for r in refs] == ["a.png", "b.jpg", "c.png", "d.png", "e.png", "f.png"]
    for ref in refs[:2]:
        gt = ds.load(ref).gt
        assert len(gt.rles) == 2 and gt.iscrowd == [False, False]
        np.testing.assert_array_equal(_decode(gt.rles[0]), lab16 == 3)  # increasing id order
        np.testing.assert_array_equal(_decode(gt.rles[1]), lab16 == 700)
    gt = ds.load(refs[2]).gt  # palette indices, not colours
    assert len(gt.rles) == 1
    np.testing.assert_array_equal(_decode(gt.rles[0]), lab16 > 0)
    with pytest.raises(SampleError, match=re.escape("no label file d.png/.tif/.tiff")):
        ds.load(refs[3])
    with pytest.raises(SampleError, match=re.escape("label is 12x9 but image e.png is 12x10")):
        ds.load(refs[4])
    with pytest.raises(SampleError, match="single-channel"):
        ds.load(refs[5])
    assert InstanceFolderDataset(images, labels, limit=2).refs() == refs[:2]


def test_instance_folder_dataset_errors(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    with pytest.raises(DatasetError, match="images folder not found"):
        InstanceFolderDataset(images, labels)
    images.mkdir()
    labels.mkdir()
    with pytest.raises(DatasetError, match="no image"):
        InstanceFolderDataset(images, labels)
    _png(images / "x.png", np.zeros((2, 2), np.uint8))
    _png(images / "x.jpg", np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match="share the stem"):
        InstanceFolderDataset(images, labels)


def _dsb_sample(root: Path, sid: str, masks: list[np.ndarray], shape: tuple[int, int]) -> None:
    _png(root / sid / "images" / f"{sid}.png", np.zeros((*shape, 4), np.uint8))
    for i, m in enumerate(masks):
        _png(root / sid / "masks" / f"m{i:02d}.png", m)


def test_dsb_small(tmp_path: Path) -> None:
    root = tmp_path / "train"
    a = np.zeros((8, 8), np.uint8)
    a[1:3, 1:3] = 255
    b = np.zeros((8, 8), np.uint8)
    b[2:6, 2:6] = 17  # anti-aliased value: > 0 counts
    _dsb_sample(root, "s2", [a, b, np.zeros((8, 8), np.uint8)], (8, 8))  # empty mask skipped
    _dsb_sample(root, "s1", [a], (8, 8))
    _dsb_sample(root, "s3", [np.zeros((7, 8), np.uint8)], (8, 8))  # wrong size
    (root / "s4" / "images").mkdir(parents=True)  # image missing
    ds = DsbDataset(root)
    refs = ds.refs()
    assert [r.image_id for r in refs] == ["s1", "s2", "s3", "s4"]
    assert len(ds.load(refs[0]).gt.rles) == 1
    gt = ds.load(refs[1]).gt
    assert len(gt.rles) == 2
    np.testing.assert_array_equal(_decode(gt.rles[1]), b > 0)
    assert (_decode(gt.rles[0]) & _decode(gt.rles[1])).sum() == 1  # overlap kept
    with pytest.raises(SampleError, match="mask is 8x7 but image is 8x8") as e:
        ds.load(refs[2])
    assert e.value.path.endswith("m00.png")
    with pytest.raises(SampleError, match="image file not found"):
        ds.load(refs[3])
    assert DsbDataset(root, limit=2).refs() == refs[:2]
    with pytest.raises(DatasetError, match="not found"):
        DsbDataset(tmp_path / "missing")


# --------------------------------------------------------------------------------------------
# registry: synthetic, relative paths, limits, errors, fingerprints


def test_embedded_synthetic_default() -> None:
    ds = build_dataset(DatasetConfig(), Path("/nonexistent"))
    assert ds.name == "synthetic"
    refs = ds.refs()
    assert len(refs) == 8
    assert refs[0].path.parent == embedded_synthetic_root() / "images"
    sample = ds.load(refs[0])
    assert sample.raw.pixels.shape == (240, 320, 3)
    assert sample.gt.n_instances > 0


def test_synthetic_scenes_and_limit() -> None:
    ds = build_dataset(DatasetConfig(scenes=["dense_small", "gray_lowcontrast"]), Path("."))
    assert [r.path.name for r in ds.refs()] == [
        "gray_lowcontrast_00.png",
        "dense_small_00.png",
        "gray_lowcontrast_01.png",
        "dense_small_01.png",
    ]
    ds = build_dataset(DatasetConfig(scenes=["textured"], limit=1), Path("."))
    assert [r.path.name for r in ds.refs()] == ["textured_00.png"]
    with pytest.raises(DatasetError, match="'textur' \\(did you mean 'textured'\\?\\)"):
        build_dataset(DatasetConfig(scenes=["textur"]), Path("."))


def test_relative_paths_and_limit_for_every_format(tmp_path: Path) -> None:
    shutil.copytree(embedded_synthetic_root(), tmp_path / "syn")
    cfg = DatasetConfig(format="synthetic", root="syn", limit=3)
    assert [r.image_id for r in build_dataset(cfg, tmp_path).refs()] == ["1", "2", "3"]
    cfg = DatasetConfig(
        format="coco", annotations="syn/annotations.json", images="syn/images", limit=3
    )
    assert [r.image_id for r in build_dataset(cfg, tmp_path).refs()] == ["1", "2", "3"]
    lab = tmp_path / "labels"
    lab.mkdir()
    cfg = DatasetConfig(format="instance_folder", images="syn/images", labels="labels", limit=3)
    assert [r.path.name for r in build_dataset(cfg, tmp_path).refs()] == [
        "color_00.png",
        "color_01.png",
        "dense_small_00.png",
    ]


def test_unknown_format_lists_what_exists() -> None:
    cfg = DatasetConfig()
    cfg.format = "cocoo"
    with pytest.raises(DatasetError, match=r"did you mean 'coco'.*available: synthetic, coco"):
        build_dataset(cfg, Path("."))


def test_fingerprint_tracks_content_not_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(embedded_synthetic_root(), a)
    shutil.copytree(embedded_synthetic_root(), b)
    fa = build_dataset(DatasetConfig(root=str(a)), tmp_path).fingerprint()
    assert fa == build_dataset(DatasetConfig(root=str(b)), tmp_path).fingerprint()
    assert fa == build_dataset(DatasetConfig(), tmp_path).fingerprint()
    assert fa != build_dataset(DatasetConfig(root=str(a), limit=7), tmp_path).fingerprint()
    ann = b / "annotations.json"
    ann.write_bytes(ann.read_bytes().replace(b'"iscrowd": 0', b'"iscrowd": 1', 1))
    assert fa != build_dataset(DatasetConfig(root=str(b)), tmp_path).fingerprint()


# --------------------------------------------------------------------------------------------
# what loaders warn about: orphan labels, unknown image ids, links out of the dataset folder


def _kinds(ds: Any) -> dict[str, dict[str, Any]]:
    found = ds.warnings()
    for w in found:
        assert set(w) >= {"kind", "message", "count", "examples"}
        assert str(w["count"]) in w["message"]
    return {w["kind"]: w for w in found}


def test_instance_folder_orphan_labels_and_broken_links(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    lab = np.zeros((6, 6), np.uint8)
    lab[1:3, 1:3] = 1
    for stem in ("a", "b"):
        _png(images / f"{stem}.png", np.zeros((6, 6), np.uint8))
        _png(labels / f"{stem}.png", lab)
    ds = InstanceFolderDataset(images, labels)
    assert ds.warnings() == []
    for stem in ("z1", "z2", "z3", "z4", "z5", "z6"):  # label files with no image
        _png(labels / f"{stem}.png", lab)
    (images / "gone.png").symlink_to(tmp_path / "nowhere.png")  # dangling: left out
    ds = InstanceFolderDataset(images, labels, limit=1)
    assert [r.image_id for r in ds.refs()] == ["a"]
    warned = _kinds(ds)
    assert set(warned) == {"orphan_labels", "broken_links"}
    orphans = warned["orphan_labels"]
    assert orphans["count"] == 6  # the whole folder, whatever the limit
    assert orphans["examples"] == ["z1.png", "z2.png", "z3.png", "z4.png", "z5.png"]
    assert orphans["message"].endswith("(e.g. z1.png, z2.png, z3.png, z4.png, z5.png and 1 more)")
    assert str(labels) in orphans["message"]
    assert warned["broken_links"]["examples"] == ["images/gone.png"]
    assert len(ds.load(ds.refs()[0]).gt.rles) == 1  # the rest works as before


def test_coco_annotations_of_unknown_image_ids(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", np.zeros((10, 10), np.uint8))
    anns = [
        {"id": 1, "image_id": 1, "segmentation": [_square_poly(1, 1, 4)], "iscrowd": 0},
        {"id": 7, "image_id": 999, "segmentation": [_square_poly(1, 1, 4)], "iscrowd": 0},
        {"id": 8, "image_id": "1", "segmentation": [_square_poly(1, 1, 4)], "iscrowd": 0},
        {"id": 9, "image_id": 999, "segmentation": [_square_poly(2, 2, 4)], "iscrowd": 0},
    ]
    images = [{"id": 1, "file_name": "a.png", "height": 10, "width": 10}]
    ds = CocoDataset(_coco_dir(tmp_path, images, anns), tmp_path / "images")
    warned = _kinds(ds)
    assert set(warned) == {"unknown_image_ids"}
    w = warned["unknown_image_ids"]
    assert w["count"] == 2
    assert w["examples"] == ["annotation 7 (image_id 999)", "annotation 9 (image_id 999)"]
    assert "ann.json" in w["message"]
    # ids compare as text (as load() matches them): "1" is image 1, so its 2 annotations load
    assert len(ds.load(ds.refs()[0]).gt.rles) == 2


def test_synthetic_warns_about_nothing() -> None:
    assert build_dataset(DatasetConfig(), Path(".")).warnings() == []


def test_dsb_orphan_masks_and_ignored_files(tmp_path: Path) -> None:
    root = tmp_path / "train"
    m = np.zeros((8, 8), np.uint8)
    m[1:3, 1:3] = 255
    _dsb_sample(root, "s1", [m], (8, 8))
    assert DsbDataset(root).warnings() == []
    _png(root / "s2" / "masks" / "m00.png", m)  # masks, no image
    (root / "s1" / "masks" / "m01.tif").write_bytes(b"II*\x00")  # not a PNG: not read
    ds = DsbDataset(root)
    warned = _kinds(ds)
    assert set(warned) == {"orphan_labels", "ignored_files"}
    assert warned["orphan_labels"]["examples"] == ["s2"]
    assert warned["ignored_files"]["examples"] == ["s1/masks/m01.tif"]
    assert len(ds.load(ds.refs()[0]).gt.rles) == 1
    with pytest.raises(SampleError, match="image file not found"):  # listed: an image error
        ds.load(ds.refs()[1])


def _outside_image(tmp_path: Path) -> Path:
    return _png(tmp_path / "elsewhere" / "secret.png", np.full((6, 6), 9, np.uint8))


def test_instance_folder_external_links_follow_and_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sam_bench.data.instance_folder as folder_module

    images, labels = tmp_path / "data" / "images", tmp_path / "data" / "labels"
    lab = np.zeros((6, 6), np.uint8)
    lab[2:4, 2:4] = 1
    _png(images / "a.png", np.zeros((6, 6), np.uint8))
    (images / "b.png").symlink_to(_outside_image(tmp_path))  # leads out of the folder
    (images / "c.png").symlink_to(images / "a.png")  # a link inside the folder: fine
    for stem in "abc":
        _png(labels / f"{stem}.png", lab)
    follow = InstanceFolderDataset(images, labels)
    w = _kinds(follow)["external_links"]
    assert w["count"] == 1
    assert w["examples"] == [f"b.png -> {(tmp_path / 'elsewhere' / 'secret.png').resolve()}"]
    assert "dataset.external_links=follow" in w["message"]
    assert follow.load(follow.refs()[1]).raw.pixels.max() == 9  # read, as before

    skip = InstanceFolderDataset(images, labels, external_links="skip")
    assert "not read" in _kinds(skip)["external_links"]["message"]
    read: list[Path] = []
    real_read = folder_module.read_image
    monkeypatch.setattr(
        folder_module, "read_image", lambda p, **kw: read.append(Path(p)) or real_read(p, **kw)
    )
    a, b, c = skip.refs()
    with pytest.raises(SampleError, match="resolves outside the dataset folder") as e:
        skip.load(b)
    assert e.value.path.endswith("b.png") and "dataset.external_links=skip" in e.value.reason
    assert read == []  # never opened
    assert len(skip.load(a).gt.rles) == 1 and len(skip.load(c).gt.rles) == 1
    # the fingerprint counts the refused file as missing: follow and skip differ
    assert skip.fingerprint() != follow.fingerprint()
    assert (
        skip.fingerprint()
        == InstanceFolderDataset(images, labels, external_links="skip").fingerprint()
    )


def test_label_link_out_of_the_labels_folder_is_skipped(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    _png(images / "a.png", np.zeros((6, 6), np.uint8))
    labels.mkdir()
    (labels / "a.png").symlink_to(_outside_image(tmp_path))
    ds = InstanceFolderDataset(images, labels, external_links="skip")
    assert _kinds(ds)["external_links"]["examples"][0].startswith("a.png -> ")
    with pytest.raises(SampleError, match="label file resolves outside"):
        ds.load(ds.refs()[0])


def test_linked_dataset_folder_is_not_outside(tmp_path: Path) -> None:
    # the folder given in the config may itself be a link: only links out of it count
    real = tmp_path / "real"
    _png(real / "images" / "a.png", np.zeros((6, 6), np.uint8))
    _png(real / "labels" / "a.png", np.zeros((6, 6), np.uint8))
    (tmp_path / "linked").symlink_to(real)
    ds = InstanceFolderDataset(tmp_path / "linked" / "images", tmp_path / "linked" / "labels")
    assert ds.warnings() == []


def test_coco_and_dsb_external_links(tmp_path: Path) -> None:
    outside = _outside_image(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "sub").symlink_to(outside.parent)  # a linked sub-folder
    images = [{"id": 1, "file_name": "sub/secret.png", "height": 6, "width": 6}]
    ann = _coco_dir(tmp_path, images, [])
    w = _kinds(CocoDataset(ann, tmp_path / "images"))["external_links"]
    assert w["examples"] == [f"sub/secret.png -> {outside.resolve()}"]
    skip = CocoDataset(ann, tmp_path / "images", external_links="skip")
    with pytest.raises(SampleError, match="resolves outside the dataset folder"):
        skip.load(skip.refs()[0])

    root = tmp_path / "train"
    m = np.zeros((6, 6), np.uint8)
    m[1:3, 1:3] = 255
    _dsb_sample(tmp_path / "other", "s2", [m, m], (6, 6))
    _dsb_sample(root, "s1", [m], (6, 6))
    (root / "s2").symlink_to(tmp_path / "other" / "s2")  # a whole sample from elsewhere
    ds = DsbDataset(root)
    assert _kinds(ds)["external_links"]["count"] == 3  # its image and 2 masks
    assert len(ds.load(ds.refs()[1]).gt.rles) == 2
    skip_dsb = DsbDataset(root, external_links="skip")
    assert len(skip_dsb.load(skip_dsb.refs()[0]).gt.rles) == 1
    with pytest.raises(SampleError, match="image file resolves outside"):
        skip_dsb.load(skip_dsb.refs()[1])


def test_external_links_setting_is_checked_and_reaches_loaders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.external_links"):
        DatasetConfig(external_links="maybe")
    images, labels = tmp_path / "images", tmp_path / "labels"
    labels.mkdir()
    images.mkdir()
    (images / "a.png").symlink_to(_outside_image(tmp_path))
    _png(labels / "a.png", np.zeros((6, 6), np.uint8))
    cfg = DatasetConfig(
        format="instance_folder", images=str(images), labels=str(labels), external_links="skip"
    )
    ds = build_dataset(cfg, Path("/"))
    with pytest.raises(SampleError, match="external_links=skip"):
        ds.load(ds.refs()[0])


# --------------------------------------------------------------------------------------------
# limits.max_image_pixels: a too-large image is an image error, the others go on


def test_large_image_is_an_image_error_others_go_on(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    for stem, shape in (("big", (40, 50)), ("small", (20, 25))):
        _png(images / f"{stem}.png", np.zeros(shape, np.uint8))
        _png(labels / f"{stem}.png", np.zeros(shape, np.uint8))
    ds = InstanceFolderDataset(images, labels, max_image_pixels=1000)
    big, small = ds.refs()
    with pytest.raises(
        SampleError, match=r"image is 50x40 = .* over limits\.max_image_pixels=1000"
    ):
        ds.load(big)
    assert ds.load(small).raw.pixels.shape == (20, 25)


def test_label_map_size_limit(tmp_path: Path) -> None:
    pal = Image.frombytes("P", (50, 40), bytes(2000))
    pal.putpalette([0, 0, 0, 255, 0, 0])
    pal.save(tmp_path / "p.png")
    tifffile.imwrite(tmp_path / "t.tif", np.zeros((40, 50), np.uint16))
    for name in ("p.png", "t.tif"):
        assert read_label_map(tmp_path / name, max_pixels=2000).shape == (40, 50)
        with pytest.raises(SampleError, match="over limits"):
            read_label_map(tmp_path / name, max_pixels=1999)


def test_limits_reach_every_builtin_format(tmp_path: Path) -> None:
    # the embedded scenes are 320x240 = 76800 pixels
    syn = embedded_synthetic_root()
    at, under = LimitsConfig(max_image_pixels=76800), LimitsConfig(max_image_pixels=76799)
    lab = tmp_path / "labels"
    _png(lab / "color_00.png", np.zeros((240, 320), np.uint8))
    dsb = tmp_path / "dsb"
    (dsb / "s1" / "images").mkdir(parents=True)
    (dsb / "s1" / "images" / "s1.png").symlink_to(syn / "images" / "color_00.png")
    (dsb / "s1" / "masks").mkdir()
    cfgs = [
        DatasetConfig(),
        DatasetConfig(
            format="coco", annotations=str(syn / "annotations.json"), images=str(syn / "images")
        ),
        DatasetConfig(format="instance_folder", images=str(syn / "images"), labels=str(lab)),
        DatasetConfig(format="dsb", root=str(dsb)),
    ]
    for cfg in cfgs:
        ok = build_dataset(cfg, Path("/"), limits=at)
        ref = ok.refs()[0]
        assert ok.load(ref).raw.pixels.shape[:2] == (240, 320), cfg.format
        refused = build_dataset(cfg, Path("/"), limits=under)
        with pytest.raises(SampleError, match=r"over limits\.max_image_pixels=76799"):
            refused.load(ref)
        default = build_dataset(cfg, Path("/"))  # no limits given: the 64 MP default
        assert default.load(ref).raw.pixels.shape[:2] == (240, 320)


def test_builders_without_limits_keyword_still_work() -> None:
    from sam_bench.data import coco, dsb, instance_folder
    from sam_bench.data.registry import build_synthetic

    for builder in (
        coco.from_config,
        dsb.from_config,
        instance_folder.from_config,
        build_synthetic,
    ):
        assert _takes_limits(builder)

    def legacy(cfg: DatasetConfig, base_dir: Path) -> Any:
        return (cfg, base_dir)

    def open_kwargs(cfg: DatasetConfig, base_dir: Path, **kw: Any) -> Any:
        return kw

    assert not _takes_limits(legacy)
    assert _takes_limits(open_kwargs)
