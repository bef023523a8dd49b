"""``dataset=semantic_folder``: the class list syntax (synonyms, comments, errors naming the
line), loading label maps (unknown values refused), the optional instance maps, the
fingerprint, and the CamVid sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_bench.config import DatasetConfig
from sam_bench.data.semantic_folder import (
    ClassInfo,
    SemanticFolderDataset,
    from_config,
    parse_classes,
)
from sam_bench.errors import ConfigError, DatasetError, SampleError


def test_class_list_syntax_with_synonyms_and_comments() -> None:
    text = """# CamVid
    0 Sky
    3 Road | street |asphalt
    11\tUnlabelled

    6 SignSymbol | traffic sign
    """
    classes = parse_classes(text, "c.txt")
    assert [c.index for c in classes] == [0, 3, 6, 11]  # sorted by index
    road = classes[1]
    assert road == ClassInfo(3, ("Road", "street", "asphalt")) and road.name == "Road"
    assert classes[2].names == ("SignSymbol", "traffic sign")
    assert classes[3].names == ("Unlabelled",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 Sky\nx Road\n", r"c\.txt:2: expected '<index> <name>"),
        ("0 Sky\n0 Road\n", r"c\.txt:2: class index 0 listed twice \('Sky' and 'Road'\)"),
        ("3 Road | | street\n", r"c\.txt:1: empty class name"),
        ("3\n", r"c\.txt:1: empty class name"),
        ("-1 Sky\n", r"c\.txt:1: class index must be >= 0"),
        ("# nothing\n\n", r"c\.txt: no class listed"),
    ],
)
def test_bad_class_lists_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        parse_classes(text, "c.txt")


def _write(folder: Path, name: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)


def _dataset(tmp_path: Path, *, labels: np.ndarray | None = None, void: int | None = 9,
             instances: bool = False) -> SemanticFolderDataset:  # fmt: skip
    rgb = np.zeros((4, 5, 3), np.uint8)
    _write(tmp_path / "img", "b.png", rgb)
    _write(tmp_path / "img", "a.png", rgb)
    lab = np.array([[0, 0, 1, 1, 9]] * 4, np.uint8) if labels is None else labels
    _write(tmp_path / "lab", "a.png", lab)
    _write(tmp_path / "lab", "b.png", np.zeros((4, 5), np.uint8))
    (tmp_path / "classes.txt").write_text("0 sky\n1 road | street\n9 void\n")
    inst = None
    if instances:
        ids = np.zeros((4, 5), np.uint8)
        ids[:2, :2] = 1
        ids[2:, 2:4] = 7
        _write(tmp_path / "inst", "a.png", ids)
        _write(tmp_path / "inst", "b.png", np.zeros((4, 5), np.uint8))
        inst = tmp_path / "inst"
    return SemanticFolderDataset(tmp_path / "img", tmp_path / "lab", tmp_path / "classes.txt",
                                 void_index=void, instances=inst)  # fmt: skip


def test_loads_label_maps_matched_by_stem(tmp_path: Path) -> None:
    ds = _dataset(tmp_path)
    assert [r.image_id for r in ds.refs()] == ["a", "b"]
    assert ds.provides == ("semantic",)
    sample = ds.load(ds.refs()[0])
    assert sample.semantic is not None and sample.gt is None
    np.testing.assert_array_equal(sample.semantic.labels[0], [0, 0, 1, 1, 9])
    assert sample.semantic.void_index == 9
    classes = ds.semantic_classes()
    assert [c.name for c in classes.labelled] == ["sky", "road"]  # void is never a prediction
    assert classes.name_of(9) == "void"


def test_values_outside_the_class_list_are_item_errors(tmp_path: Path) -> None:
    lab = np.array([[0, 4, 5, 9, 9]] * 4, np.uint8)
    ds = _dataset(tmp_path, labels=lab)
    with pytest.raises(SampleError, match="class values 4, 5 are not in the class list"):
        ds.load(ds.refs()[0])
    # without a void index, 9 is still listed as a class: it is allowed (and scored)
    ok = _dataset(tmp_path / "b", labels=np.array([[0, 9, 9, 1, 1]] * 4, np.uint8), void=None)
    assert ok.load(ok.refs()[0]).semantic is not None


def test_missing_label_and_wrong_size_are_item_errors(tmp_path: Path) -> None:
    _dataset(tmp_path)
    (tmp_path / "lab" / "b.png").unlink()
    ds = SemanticFolderDataset(tmp_path / "img", tmp_path / "lab", tmp_path / "classes.txt")
    with pytest.raises(SampleError, match=r"no label file b\.png"):
        ds.load(ds.refs()[1])
    _write(tmp_path / "lab", "a.png", np.zeros((3, 5), np.uint8))
    with pytest.raises(SampleError, match=r"label is 5x3 but image a\.png is 5x4"):
        ds.load(ds.refs()[0])


def test_instance_maps_give_instances_too(tmp_path: Path) -> None:
    ds = _dataset(tmp_path, instances=True)
    assert ds.provides == ("semantic", "instances")
    sample = ds.load(ds.refs()[0])
    assert sample.gt is not None and len(sample.gt.rles) == 2
    from pycocotools import mask as mask_utils

    assert [int(mask_utils.area(r)) for r in sample.gt.rles] == [4, 4]


def test_fingerprint_follows_classes_void_and_labels(tmp_path: Path) -> None:
    base = _dataset(tmp_path).fingerprint()
    assert _dataset(tmp_path).fingerprint() == base
    assert _dataset(tmp_path, void=None).fingerprint() != base
    (tmp_path / "classes.txt").write_text("0 sky\n1 road\n9 void\n")
    changed = SemanticFolderDataset(tmp_path / "img", tmp_path / "lab", tmp_path / "classes.txt",
                                    void_index=9).fingerprint()  # fmt: skip
    assert changed != base


def test_config_requires_its_paths_and_reports_missing_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.classes"):
        DatasetConfig(format="semantic_folder", images="i", labels="l")
    cfg = DatasetConfig(format="semantic_folder", images="img", labels="lab", classes="nope.txt")
    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    with pytest.raises(DatasetError, match="class list file not found"):
        from_config(cfg, tmp_path)
    (tmp_path / "c.txt").write_text("11 Unlabelled\n")
    cfg = DatasetConfig(format="semantic_folder", images="img", labels="lab", classes="c.txt",
                        void_index=11)  # fmt: skip
    with pytest.raises(DatasetError, match="every listed class is the void class"):
        from_config(cfg, tmp_path)


@pytest.mark.shared_data
def test_camvid_sample(shared_data: Path) -> None:
    root = shared_data / "camvid_subset"
    cfg = DatasetConfig(
        format="semantic_folder", images=str(root / "CamVid/test"),
        labels=str(root / "CamVid/testannot"), classes=str(root / "classes.txt"),
        void_index=11, limit=2,
    )  # fmt: skip
    ds = from_config(cfg, Path("/"))
    assert [r.image_id for r in ds.refs()] == ["0001TP_008550", "0001TP_009270"]
    classes = ds.semantic_classes()
    assert len(classes.labelled) == 11 and classes.name_of(11) == "Unlabelled"
    s = ds.load(ds.refs()[0])
    assert s.raw is not None and s.raw.pixels.shape == (360, 480, 3)
    assert s.semantic is not None and s.semantic.labels.shape == (360, 480)
    assert set(np.unique(s.semantic.labels).tolist()) <= set(range(12))
    assert len(ds.fingerprint()) == 64


def test_input_traps_like_every_loader(tmp_path: Path) -> None:
    """Orphan label files and links out of the folder are reported; an image over
    ``limits.max_image_pixels`` is an item error; ``external_links=skip`` refuses a link."""
    _dataset(tmp_path)
    _write(tmp_path / "lab", "zz.png", np.zeros((4, 5), np.uint8))  # no image zz
    outside = tmp_path / "elsewhere"
    _write(outside, "c.png", np.zeros((4, 5, 3), np.uint8))
    (tmp_path / "img" / "c.png").symlink_to(outside / "c.png")
    _write(tmp_path / "lab", "c.png", np.zeros((4, 5), np.uint8))
    args = (tmp_path / "img", tmp_path / "lab", tmp_path / "classes.txt")
    ds = SemanticFolderDataset(*args, max_image_pixels=19)
    kinds = {w["kind"]: w for w in ds.warnings()}
    assert kinds["orphan_labels"]["examples"] == ["zz.png"]
    assert kinds["external_links"]["count"] == 1
    with pytest.raises(SampleError, match=r"limits\.max_image_pixels=19"):
        ds.load(ds.refs()[0])  # 5x4 = 20 pixels
    assert SemanticFolderDataset(*args).load(ds.refs()[2]).semantic is not None  # follow
    skip = SemanticFolderDataset(*args, external_links="skip")
    with pytest.raises(SampleError, match="resolves outside the dataset folder"):
        skip.load(skip.refs()[2])
    assert skip.fingerprint() != SemanticFolderDataset(*args).fingerprint()
