"""The DAVIS loader (``dataset=davis``): both annotation styles on the shared DAVIS 2016 sample,
a multi-object palette sequence with an object appearing late (made in a temporary folder from
those frames), split files, sequence selection, a video file as input, and per-sequence
errors."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam_bench.data.davis import DavisDataset, read_annotation, read_split
from sam_bench.data.registry import build_dataset
from sam_bench.errors import DatasetError, SampleError
from sam_bench.tasks.video.metrics import prompt_frames
from sam_bench.tasks.video.outputs import davis_palette, write_label_png

SEQ = "blackswan"


@pytest.fixture
def davis(shared_data: Path) -> Path:
    root = shared_data / "davis2016_blackswan"
    if not (root / "DAVIS" / "JPEGImages").is_dir():
        pytest.skip("davis2016_blackswan sample not found")
    return root


def _decoded(video, t: int, obj: int) -> np.ndarray:
    return mask_utils.decode(video.masks[t][obj]).astype(bool)


def test_both_annotation_styles_give_the_same_masks(davis: Path) -> None:
    d16 = DavisDataset(davis / "DAVIS", max_frames=6)
    d17 = DavisDataset(
        davis / "DAVIS", max_frames=6, annotations=davis / "derived" / "Annotations_palette"
    )
    assert [r.image_id for r in d16.refs()] == [SEQ]
    a, b = d16.load(d16.refs()[0]).video, d17.load(d17.refs()[0]).video
    assert a is not None and b is not None
    assert a.styles == ["davis2016"] and b.styles == ["davis2017"]
    assert (a.height, a.width) == (480, 854)
    assert a.frame_names == [f"{t:05d}" for t in range(6)] == b.frame_names
    assert a.object_ids == [1] == b.object_ids
    for t in range(6):
        assert _decoded(a, t, 1).sum() > 1000
        assert np.array_equal(_decoded(a, t, 1), _decoded(b, t, 1))
    # the raw 2016 file is 0/255 grayscale; read as the id map of object 1
    raw = np.array(Image.open(davis / "DAVIS/Annotations/480p/blackswan/00000.png"))
    assert set(np.unique(raw)) == {0, 255}
    ids, style, void = read_annotation(davis / "DAVIS/Annotations/480p/blackswan/00000.png")
    assert style == "davis2016" and not void and np.array_equal(ids, (raw == 255).astype(int))
    # the annotations differ as files: the fingerprints differ
    assert d16.fingerprint() != d17.fingerprint()


def test_palette_of_the_shared_palette_pngs_is_the_davis_palette(davis: Path) -> None:
    im = Image.open(davis / "derived/Annotations_palette/480p/blackswan/00000.png")
    assert im.mode == "P"
    pal = np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3)
    assert np.array_equal(pal, davis_palette()[: len(pal)])


def test_all_frames_and_max_frames(davis: Path) -> None:
    full = DavisDataset(davis / "DAVIS")
    video = full.load(full.refs()[0]).video
    assert video is not None and len(video.frames) == 50 and len(video.masks) == 50
    assert full.fingerprint() != DavisDataset(davis / "DAVIS", max_frames=6).fingerprint()


def _make_davis(davis: Path, root: Path, n: int = 6) -> Path:
    """A DAVIS 2017-style root with the blackswan frames (links) and two-object palette
    masks: object 1 the swan, object 2 a box from frame 3 on; void on frame 1."""
    frames = root / "JPEGImages" / "480p" / "multi"
    anns = root / "Annotations" / "480p" / "multi"
    frames.mkdir(parents=True)
    anns.mkdir(parents=True)
    src = davis / "DAVIS"
    for t in range(n):
        os.symlink(src / f"JPEGImages/480p/blackswan/{t:05d}.jpg", frames / f"{t:05d}.jpg")
        swan = np.array(Image.open(src / f"Annotations/480p/blackswan/{t:05d}.png")) > 0
        lab = np.where(swan, 1, 0).astype(np.uint8)
        if t >= 3:
            lab[20:80, 700:800] = 2
        if t == 1:
            lab[0:10, 0:10] = 255
        write_label_png(anns / f"{t:05d}.png", lab)
    return root


def test_multi_object_palette_sequence_with_a_late_object(davis: Path, tmp_path: Path) -> None:
    root = _make_davis(davis, tmp_path / "D")
    ds = DavisDataset(root)
    video = ds.load(ds.refs()[0]).video
    assert video is not None
    assert video.object_ids == [1, 2]
    assert prompt_frames(video) == {1: 0, 2: 3}
    assert 2 not in video.masks[2] and _decoded(video, 3, 2).sum() == 60 * 100
    assert not _decoded(video, 1, 1)[0:10, 0:10].any()  # void -> background
    assert any("void label 255 on 1 frame" in n for n in video.notes)
    assert video.styles == ["davis2017"]


def test_split_files_and_sequence_selection(davis: Path, tmp_path: Path) -> None:
    root = _make_davis(davis, tmp_path / "D")
    (root / "JPEGImages/480p/other").mkdir()
    os.symlink(davis / "DAVIS/JPEGImages/480p/blackswan/00000.jpg",
               root / "JPEGImages/480p/other/00000.jpg")  # fmt: skip
    assert [r.image_id for r in DavisDataset(root).refs()] == ["multi", "other"]
    (root / "ImageSets/2017").mkdir(parents=True)
    (root / "ImageSets/2017/val.txt").write_text("other\nmulti\n")
    assert [r.image_id for r in DavisDataset(root, split="val").refs()] == ["other", "multi"]
    # the DAVIS 2016 list: frame paths, read per resolution when there is no <year> list
    (root / "ImageSets/480p").mkdir(parents=True)
    (root / "ImageSets/480p/train.txt").write_text(
        "/JPEGImages/480p/multi/00000.jpg /Annotations/480p/multi/00000.png\n"
        "/JPEGImages/480p/multi/00001.jpg /Annotations/480p/multi/00001.png\n"
    )
    assert [r.image_id for r in DavisDataset(root, split="train").refs()] == ["multi"]
    assert read_split(root / "ImageSets/2017/val.txt") == ["other", "multi"]
    with pytest.raises(DatasetError, match=r"dataset.split=test.*2017/test.txt.*lists found"):
        DavisDataset(root, split="test")
    assert [r.image_id for r in DavisDataset(root, sequences=["other"]).refs()] == ["other"]
    with pytest.raises(DatasetError, match=r"'mult'.*did you mean 'multi'"):
        DavisDataset(root, sequences=["mult"])
    assert [r.image_id for r in DavisDataset(root, limit=1).refs()] == ["multi"]
    with pytest.raises(DatasetError, match=r"no JPEGImages/1080p folder.*resolutions found: 480p"):
        DavisDataset(root, resolution="1080p")


def test_bad_sequences_fail_alone(davis: Path, tmp_path: Path) -> None:
    root = _make_davis(davis, tmp_path / "D", n=3)
    frames = root / "JPEGImages/480p"
    # a truncated frame
    (frames / "broken").mkdir()
    data = (davis / "DAVIS/JPEGImages/480p/blackswan/00000.jpg").read_bytes()
    (frames / "broken/00000.jpg").write_bytes(data[: len(data) // 3])
    # no annotation folder
    (frames / "noann").mkdir()
    os.symlink(davis / "DAVIS/JPEGImages/480p/blackswan/00000.jpg", frames / "noann/00000.jpg")
    # an RGB annotation
    (frames / "rgb").mkdir()
    os.symlink(davis / "DAVIS/JPEGImages/480p/blackswan/00000.jpg", frames / "rgb/00000.jpg")
    (root / "Annotations/480p/rgb").mkdir()
    Image.new("RGB", (854, 480)).save(root / "Annotations/480p/rgb/00000.png")
    ds = DavisDataset(root)
    by_id = {r.image_id: r for r in ds.refs()}
    with pytest.raises(SampleError, match=r"cannot read frame 00000.jpg"):
        ds.load(by_id["broken"])
    with pytest.raises(SampleError, match=r"annotation folder of this sequence not found"):
        ds.load(by_id["noann"])
    with pytest.raises(SampleError, match=r"annotation 00000.png is RGB"):
        ds.load(by_id["rgb"])
    assert ds.load(by_id["multi"]).video is not None  # the others still load
    assert len(ds.fingerprint()) == 64


def test_video_file_input(davis: Path, tmp_path: Path) -> None:
    clip = tmp_path / "swan.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (854, 480))
    assert writer.isOpened()
    for t in range(5):
        writer.write(cv2.imread(str(davis / f"DAVIS/JPEGImages/480p/blackswan/{t:05d}.jpg")))
    writer.release()
    masks = tmp_path / "masks"
    masks.mkdir()
    ann = np.array(Image.open(davis / "DAVIS/Annotations/480p/blackswan/00000.png"))
    Image.fromarray(ann).save(masks / "00000.png")  # only the first frame annotated
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=r"dataset.annotations must name"):
        DavisDataset(clip)
    ds = DavisDataset(clip, annotations=masks, max_frames=4, frames_cache=cache)
    assert [r.image_id for r in ds.refs()] == ["swan"]
    video = ds.load(ds.refs()[0]).video
    assert video is not None
    assert len(video.frames) == 4 and video.frame_names == ["00000", "00001", "00002", "00003"]
    assert all(p.parent.parent == cache and p.suffix == ".jpg" for p in video.frames)
    assert (video.height, video.width) == (480, 854)
    assert sorted(video.masks) == [0] and video.object_ids == [1]
    ex = video.extraction
    assert ex is not None and ex["n_frames"] == 4 and not ex["reused"]
    assert ex["sha256"] and ex["opencv"] == cv2.__version__
    assert any("extracted from swan.mp4" in n for n in video.notes)
    again = ds.load(ds.refs()[0]).video
    assert again is not None and again.extraction is not None and again.extraction["reused"]
    # a DAVIS layout whose sequence is a video file in place of its frame folder
    root = tmp_path / "D"
    (root / "JPEGImages/480p").mkdir(parents=True)
    os.symlink(clip, root / "JPEGImages/480p/swan.mp4")
    (root / "Annotations/480p").mkdir(parents=True)
    os.symlink(masks, root / "Annotations/480p/swan")
    ds2 = DavisDataset(root, frames_cache=cache)
    seq = ds2.load(ds2.refs()[0]).video
    assert seq is not None and len(seq.frames) == 5


def test_dataset_config_builds_davis(davis: Path, tmp_path: Path) -> None:
    from sam_bench.config import DatasetConfig

    cfg = DatasetConfig(name="davis", format="davis", root=str(davis / "DAVIS"), max_frames=2)
    ds = build_dataset(cfg, tmp_path)
    assert ds.provides == ("video",) and [r.image_id for r in ds.refs()] == [SEQ]
    from sam_bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dataset.root"):
        DatasetConfig(name="davis", format="davis")
