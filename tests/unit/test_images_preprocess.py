"""read_image (every stored form) and to_model_input (every PreprocessConfig option)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from sam_bench.config import PreprocessConfig
from sam_bench.data.base import RawImage
from sam_bench.data.images import read_image
from sam_bench.errors import SampleError
from sam_bench.loop import WARNING_PREFIX
from sam_bench.preprocess import to_model_input

DEFAULT = PreprocessConfig()


def _convert(raw: RawImage, **kw: object) -> tuple[np.ndarray, list[str]]:
    out, steps = to_model_input(raw, PreprocessConfig(**kw))  # type: ignore[arg-type]
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == raw.pixels.shape[:2]
    assert out.flags["C_CONTIGUOUS"]
    return out, steps


def _save_pil(im: Image.Image, path: Path, **kw: object) -> Path:
    im.save(path, **kw)
    return path


# --------------------------------------------------------------------------------------------
# every stored form -> HxWx3 uint8 with the right values and steps


def test_png_16bit_gray_range(tmp_path: Path) -> None:
    a = np.array([[0, 257, 65535, 32768]], np.uint16)
    p = _save_pil(Image.fromarray(a), tmp_path / "g16.png")
    raw = read_image(p)
    assert raw.mode == "PIL:I;16"
    assert raw.pixels.dtype == np.uint16
    np.testing.assert_array_equal(raw.pixels, a)
    out, steps = _convert(raw, bit_depth="range")
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])  # 32768*255/65535 = 127.50
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert steps == ["uint16->uint8 range", "gray->rgb replicate"]
    auto, steps = _convert(raw)  # max 65535: auto keeps the 16-bit range
    np.testing.assert_array_equal(auto, out)
    assert steps == [
        "uint16->uint8 auto: 16-bit range 0..65535 (image max 65535)",
        "gray->rgb replicate",
    ]


def test_png_16bit_gray_minmax_and_percentile(tmp_path: Path) -> None:
    a = np.array([[100, 200, 300]], np.uint16)
    raw = read_image(_save_pil(Image.fromarray(a), tmp_path / "g16.png"))
    out, steps = _convert(raw, bit_depth="minmax")
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])  # 100*255/200 = 127.5 -> 128
    assert steps[0] == "uint16->uint8 minmax [100, 300]"
    b = np.arange(101, dtype=np.uint16).reshape(1, 101) * 10  # 0, 10, ..., 1000
    out, steps = _convert(
        RawImage(b, "test"), bit_depth="percentile", percentile_low=10, percentile_high=90
    )
    # percentiles 100 and 900: 0 -> 0 (clipped), 500 -> 127.5 -> 128, 1000 -> 255 (clipped)
    assert steps[0] == "uint16->uint8 percentile 10..90 [100, 900]"
    assert [out[0, i, 0] for i in (0, 10, 30, 50, 90, 100)] == [0, 0, 64, 128, 255, 255]


def test_png_16bit_rgb_not_truncated(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 257, 1000
    p = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(p), rgb[..., ::-1])  # OpenCV writes BGR
    raw = read_image(p)
    assert raw.mode == "cv2:uint16x3"
    assert raw.pixels.dtype == np.uint16
    np.testing.assert_array_equal(raw.pixels, rgb)
    assert any("OpenCV" in n for n in raw.notes)
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out[0, 0], [255, 1, 4])  # 1000*255/65535 = 3.89
    assert steps == ["uint16->uint8 auto: 16-bit range 0..65535 (image max 65535)"]


def test_png_16bit_rgba(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint16)
    rgba[..., 0], rgba[..., 3] = 65535, 0
    p = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(p), rgba[..., [2, 1, 0, 3]])
    raw = read_image(p)
    assert raw.mode == "cv2:uint16x4"
    np.testing.assert_array_equal(raw.pixels, rgba)
    out, steps = _convert(raw, alpha="white", bit_depth="range")
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # fully transparent -> white
    # an all-white model input is flagged, after every step
    assert steps[:2] == ["uint16->uint8 range", "alpha over white"]
    assert len(steps) == 3 and steps[2].startswith("warning: low contrast: ")
    assert "spans 255..255 of 0..255" in steps[2]


def test_png_16bit_gray_alpha(tmp_path: Path) -> None:
    # neither Pillow nor OpenCV writes 16-bit gray + alpha: build the PNG by hand
    la = np.zeros((2, 3, 2), ">u2")
    la[..., 0] = [[0, 1000, 65535], [5, 6, 7]]
    la[..., 1] = [[65535, 0, 30000], [1, 2, 3]]
    rows = b"".join(b"\x00" + la[r].tobytes() for r in range(2))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data))
        return struct.pack(">I", len(data)) + tag + data + crc

    p = tmp_path / "la16.png"
    p.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 16, 4, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    raw = read_image(p)
    assert raw.mode == "cv2:uint16x2"
    np.testing.assert_array_equal(raw.pixels, la.astype(np.uint16))
    out, steps = _convert(raw, bit_depth="range")
    np.testing.assert_array_equal(out[0, :, 0], [0, 4, 255])
    assert steps == ["uint16->uint8 range", "alpha dropped", "gray->rgb replicate"]


def test_tiff_16bit(tmp_path: Path) -> None:
    a = np.array([[0, 65535], [257, 514]], np.uint16)
    p = tmp_path / "t16.tif"
    tifffile.imwrite(p, a)
    raw = read_image(p)
    assert raw.mode == "tiff:uint16x1"
    np.testing.assert_array_equal(raw.pixels, a)
    out, steps = _convert(raw, bit_depth="range")
    np.testing.assert_array_equal(out[..., 0], [[0, 255], [1, 2]])
    assert steps == ["uint16->uint8 range", "gray->rgb replicate"]


def test_tiff_float(tmp_path: Path) -> None:
    a = np.array([[-0.5, 0.0, 0.5], [1.0, 2.0, np.nan]], np.float32)
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, a)
    raw = read_image(p)
    assert raw.mode == "tiff:float32x1"
    assert raw.pixels.dtype == np.float32
    out, steps = _convert(raw, bit_depth="range")
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 128], [255, 255, 0]])
    assert steps[0] == "float32->uint8 range (1 NaN->0) (2 values outside 0..1 clipped)"
    out, steps = _convert(raw, bit_depth="minmax")  # finite range -0.5..2; NaN -> 0
    np.testing.assert_array_equal(out[..., 0], [[0, 51, 102], [153, 255, 51]])
    assert steps[0] == "float32->uint8 minmax [-0.5, 2] (1 NaN->0)"
    auto, steps = _convert(raw)  # values outside 0..1: auto takes min..max
    np.testing.assert_array_equal(auto, out)
    assert steps[0] == "float32->uint8 auto: minmax [-0.5, 2] (values outside 0..1) (1 NaN->0)"


def test_tiff_rgb_planar_and_pages(tmp_path: Path) -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    p = tmp_path / "planar.tif"
    tifffile.imwrite(p, np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    raw = read_image(p)
    np.testing.assert_array_equal(raw.pixels, rgb)
    assert "planar TIFF samples moved last" in raw.notes
    p2 = tmp_path / "pages.tif"
    with tifffile.TiffWriter(p2) as tw:
        tw.write(np.full((4, 5), 7, np.uint16))
        tw.write(np.full((4, 5), 9, np.uint16))
    raw = read_image(p2)
    assert (raw.pixels == 7).all()
    assert raw.notes == ["TIFF has 2 pages; first page read"]


def test_tiff_1bit(tmp_path: Path) -> None:
    b = np.array([[True, False, True], [False, False, True]])
    p = tmp_path / "bit.tif"
    tifffile.imwrite(p, b, photometric="minisblack")
    raw = read_image(p)
    assert raw.pixels.dtype == bool
    np.testing.assert_array_equal(raw.pixels, b)
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out[..., 1], b * 255)
    assert steps == ["bool->uint8 0/255", "gray->rgb replicate"]
    p2 = tmp_path / "bit_white.tif"
    tifffile.imwrite(p2, b, photometric="miniswhite")  # stored 1 = black
    raw = read_image(p2)
    np.testing.assert_array_equal(raw.pixels, ~b)
    assert raw.notes == ["TIFF MINISWHITE inverted (0 = black)"]


def test_png_1bit(tmp_path: Path) -> None:
    b = np.array([[True, False], [False, True]])
    raw = read_image(_save_pil(Image.fromarray(b), tmp_path / "bit.png"))
    assert raw.mode == "PIL:1"
    assert raw.pixels.dtype == bool
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out[..., 2], [[255, 0], [0, 255]])
    assert steps == ["bool->uint8 0/255", "gray->rgb replicate"]


def test_gray_8bit(tmp_path: Path) -> None:
    a = np.array([[0, 17, 255]], np.uint8)
    raw = read_image(_save_pil(Image.fromarray(a), tmp_path / "g.png"))
    assert raw.mode == "PIL:L"
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out, np.repeat(a[:, :, None], 3, axis=2))
    assert steps == ["gray->rgb replicate"]


def test_rgb_jpeg_no_steps(tmp_path: Path) -> None:
    a = np.full((8, 8, 3), (200, 100, 50), np.uint8)
    raw = read_image(_save_pil(Image.fromarray(a), tmp_path / "x.jpg", quality=100))
    assert raw.mode == "PIL:RGB"
    out, steps = _convert(raw)
    assert steps == []
    assert np.abs(out.astype(int) - a).max() <= 2


def test_rgba_drop_and_white(tmp_path: Path) -> None:
    a = np.array([[[100, 50, 0, 128], [10, 20, 30, 255], [0, 0, 0, 0]]], np.uint8)
    raw = read_image(_save_pil(Image.fromarray(a), tmp_path / "rgba.png"))
    assert raw.mode == "PIL:RGBA"
    assert raw.pixels.shape == (1, 3, 4)
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out[0], a[0, :, :3])
    assert steps == ["alpha dropped"]
    out, steps = _convert(raw, alpha="white")
    # a = 128/255: 100*a + 255*(1-a) = 50.2 + 127 = 177.2; 50 -> 152.1; 0 -> 127
    np.testing.assert_array_equal(out[0], [[177, 152, 127], [10, 20, 30], [255, 255, 255]])
    assert steps == ["alpha over white"]


def test_rgba_opaque_is_noted() -> None:
    px = np.full((2, 2, 4), 255, np.uint8)
    _, steps = _convert(RawImage(px, "test"))
    assert steps == ["alpha dropped (fully opaque)"]


def test_la(tmp_path: Path) -> None:
    a = np.array([[[40, 255], [90, 0]]], np.uint8)
    raw = read_image(_save_pil(Image.fromarray(a), tmp_path / "la.png"))
    assert raw.mode == "PIL:LA"
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out[0], [[40, 40, 40], [90, 90, 90]])
    assert steps == ["alpha dropped", "gray->rgb replicate"]
    out, steps = _convert(raw, alpha="white")
    np.testing.assert_array_equal(out[0], [[40, 40, 40], [255, 255, 255]])
    assert steps == ["alpha over white", "gray->rgb replicate"]


def test_palette(tmp_path: Path) -> None:
    im = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    im.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
    raw = read_image(_save_pil(im, tmp_path / "p.png"))
    assert raw.mode == "PIL:P"
    assert raw.notes == ["palette image expanded to RGB"]
    out, steps = _convert(raw)
    np.testing.assert_array_equal(out[0], [[10, 20, 30], [40, 50, 60], [70, 80, 90]])
    assert steps == []
    raw = read_image(_save_pil(im, tmp_path / "pt.png", transparency=1))
    assert raw.notes == ["palette image expanded to RGBA"]
    assert raw.pixels.shape == (1, 3, 4)
    out, _ = _convert(raw, alpha="white")
    np.testing.assert_array_equal(out[0], [[10, 20, 30], [255, 255, 255], [70, 80, 90]])


def test_exif_orientation_is_noted_not_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    p = _save_pil(Image.new("RGB", (4, 3)), tmp_path / "o.jpg", exif=exif)
    raw = read_image(p)
    assert raw.pixels.shape == (3, 4, 3)
    assert raw.notes == ["EXIF orientation 6 ignored (pixels as stored)"]


# --------------------------------------------------------------------------------------------
# preprocessing options


def test_percentile_stretch_hand_checked() -> None:
    gray = np.arange(101, dtype=np.uint8).reshape(1, 101)  # percentiles are exactly 10 and 90
    out, steps = _convert(
        RawImage(gray, "test"), stretch="percentile", percentile_low=10, percentile_high=90
    )
    # (v - 10) * 255 / 80: 5 -> 0, 10 -> 0, 30 -> 63.75, 50 -> 127.5, 90 -> 255, 95 -> 255
    assert [out[0, v, 0] for v in (5, 10, 30, 50, 90, 95)] == [0, 0, 64, 128, 255, 255]
    assert steps == ["stretch percentile 10..90 per channel [10-90]", "gray->rgb replicate"]


def test_percentile_stretch_per_channel_and_constant() -> None:
    rgb = np.zeros((1, 101, 3), np.uint8)
    rgb[0, :, 0] = np.arange(101)
    rgb[0, :, 1] = 42  # constant channel: left as it is
    rgb[0, :, 2] = np.arange(101) * 2
    out, steps = _convert(
        RawImage(rgb, "test"), stretch="percentile", percentile_low=10, percentile_high=90
    )
    assert steps == ["stretch percentile 10..90 per channel [10-90, 42-42, 20-180]"]
    assert (out[0, :, 1] == 42).all()
    np.testing.assert_array_equal(out[0, :, 0], out[0, :, 2])


def test_color_gray() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    out, steps = _convert(RawImage(rgb, "test"), color="gray")
    np.testing.assert_array_equal(out[0, :, 0], [76, 150, 29, 255])  # BT.601 luma
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert steps == ["rgb->gray (BT.601 luma)", "gray->rgb replicate"]


def test_clahe_gray_matches_opencv() -> None:
    rng = np.random.default_rng(0)
    gray = (100 + rng.integers(0, 20, size=(64, 64))).astype(np.uint8)
    out, steps = _convert(RawImage(gray, "test"), clahe=True, clahe_clip_limit=3.0)
    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(gray)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert steps == ["CLAHE clip 3 tiles 8x8 on gray", "gray->rgb replicate"]


def test_clahe_colour_on_lab_lightness() -> None:
    rng = np.random.default_rng(1)
    rgb = (100 + rng.integers(0, 20, size=(64, 64, 3))).astype(np.uint8)
    out, steps = _convert(RawImage(rgb, "test"), clahe=True, clahe_tile_grid_size=4)
    assert steps == ["CLAHE clip 2 tiles 4x4 on L of LAB"]
    assert out.std() > rgb.std()  # contrast went up
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(lab[..., 0])
    np.testing.assert_array_equal(out, cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def test_step_order_everything() -> None:
    px = np.zeros((4, 4, 4), np.uint16)
    px[..., 0] = np.arange(16).reshape(4, 4) * 1000
    px[..., 3] = 65535
    _, steps = _convert(
        RawImage(px, "test"), bit_depth="minmax", color="gray", stretch="percentile", clahe=True
    )
    # CLAHE with 8x8 tiles on a 4x4 image makes it all white: the low-contrast check sees the
    # final 8-bit image, before the replication to RGB
    assert [s.split(" ")[0] for s in steps] == [
        "uint16->uint8",
        "alpha",
        "rgb->gray",
        "stretch",
        "CLAHE",
        "warning:",
        "gray->rgb",
    ]


def test_bad_layout_is_sample_error() -> None:
    with pytest.raises(SampleError, match="shape"):
        to_model_input(RawImage(np.zeros((2, 2, 5), np.uint8), "test"), DEFAULT, path="x.tif")


# --------------------------------------------------------------------------------------------
# unreadable files


def _truncated(tmp_path: Path, name: str, write: Callable[[Path], object]) -> Path:
    p = tmp_path / name
    write(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _noisy(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=shape).astype(dtype)


@pytest.mark.parametrize(
    "name, write",
    [
        ("cut.png", lambda p: Image.fromarray(_noisy((64, 64, 3))).save(p)),
        ("cut.jpg", lambda p: Image.fromarray(_noisy((64, 64, 3))).save(p, quality=95)),
        ("cut16.png", lambda p: cv2.imwrite(str(p), _noisy((64, 64, 3), np.uint16))),
        ("cut.tif", lambda p: tifffile.imwrite(p, _noisy((64, 64), np.uint16))),
    ],
)
def test_truncated_file_is_sample_error(
    tmp_path: Path, name: str, write: Callable[[Path], object]
) -> None:
    p = _truncated(tmp_path, name, write)
    with pytest.raises(SampleError) as e:
        read_image(p)
    assert e.value.path == str(p)
    assert str(p) in str(e.value)


def test_non_image_empty_and_missing(tmp_path: Path) -> None:
    txt = tmp_path / "notes.png"
    txt.write_text("this is not an image")
    with pytest.raises(SampleError, match=r"notes\.png: not an image"):
        read_image(txt)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(SampleError, match="empty"):
        read_image(empty)
    with pytest.raises(SampleError, match="not found"):
        read_image(tmp_path / "nope.png")


# --------------------------------------------------------------------------------------------
# bit_depth=auto and the low-contrast warning (the "12-bit data in 16-bit files" trap)


def _kind(step: str) -> str:
    """The warning kind the shared loop derives from a step (its once-per-job key)."""
    assert step.startswith(WARNING_PREFIX)
    return step[len(WARNING_PREFIX) :].split(":")[0].split("(")[0].strip()


def test_12bit_data_in_16bit_tiff_is_visible_by_default(tmp_path: Path) -> None:
    # the microscopy case: values 116..4095 stored as uint16
    rng = np.random.default_rng(0)
    a = rng.integers(116, 4096, size=(32, 48)).astype(np.uint16)
    a[0, :3] = [116, 2048, 4095]
    p = tmp_path / "12bit.tif"
    tifffile.imwrite(p, a)
    raw = read_image(p)
    out, steps = _convert(raw)
    # 116 * 255 / 4095 = 7.22, 2048 * 255 / 4095 = 127.53, 4095 -> 255
    np.testing.assert_array_equal(out[0, :3, 0], [7, 128, 255])
    expected = np.rint(a.astype(np.float64) * 255.0 / 4095.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    assert steps == [
        "uint16->uint8 auto: 12-bit range 0..4095 (image max 4095)",
        "gray->rgb replicate",
    ]
    # the container's range makes it almost black (0..16), and says so
    dark, steps = _convert(raw, bit_depth="range")
    assert dark.max() == 16  # 4095 * 255 / 65535 = 15.93
    assert steps[0] == "uint16->uint8 range"
    assert _kind(steps[1]) == "low contrast"
    assert "preprocess.bit_depth=auto" in steps[1]
    assert steps[2] == "gray->rgb replicate"


@pytest.mark.parametrize(
    "dtype, top, bits",
    [
        (np.uint16, 255, 8),  # 8-bit data in a 16-bit container: unchanged values
        (np.uint16, 256, 10),
        (np.uint16, 1023, 10),
        (np.uint16, 1024, 12),
        (np.uint16, 4095, 12),
        (np.uint16, 4096, 14),
        (np.uint16, 16383, 14),
        (np.uint16, 16384, 16),
        (np.uint16, 65535, 16),
        (np.uint32, 65536, 24),
        (np.uint32, 2**24, 32),
        (np.int16, 20000, 15),  # the container's own width caps the choice
        (np.int32, 100, 8),
    ],
)
def test_auto_picks_the_smallest_bit_depth_holding_the_max(
    dtype: type, top: int, bits: int
) -> None:
    a = np.array([[0, top // 2, top]], dtype)
    out, steps = _convert(RawImage(a, "test"))
    full = 2**bits - 1
    assert (
        steps[0]
        == f"{np.dtype(dtype).name}->uint8 auto: {bits}-bit range 0..{full} (image max {top})"
    )
    expected = [round(v * 255 / full + 1e-9) for v in (0, top // 2, top)]  # no .5 ties here
    np.testing.assert_array_equal(out[0, :, 0], expected)


def test_auto_negative_integers_and_floats() -> None:
    out, steps = _convert(RawImage(np.array([[-100, 0, 100]], np.int16), "test"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])  # 100 * 255 / 200 = 127.5
    assert steps[0] == "int16->uint8 auto: minmax [-100, 100] (negative values)"
    out, steps = _convert(RawImage(np.array([[0.0, 0.25, 1.0]], np.float32), "test"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 64, 255])  # 0.25 * 255 = 63.75
    assert steps[0] == "float32->uint8 auto: float range 0..1 (image 0..1)"
    # float counts (0..4095) are not clipped to white: min..max
    out, steps = _convert(RawImage(np.array([[100.0, 2100.0, 4100.0]], np.float32), "test"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255])
    assert steps[0] == "float32->uint8 auto: minmax [100, 4100] (values outside 0..1)"


def test_auto_colour_keeps_balance() -> None:
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, 0] = [4095, 2048, 0]
    rgb[0, 1] = [0, 1000, 3000]
    out, steps = _convert(RawImage(rgb, "test"))
    assert steps == ["uint16->uint8 auto: 12-bit range 0..4095 (image max 4095)"]
    # one scale for all channels: 2048 -> 127.53, 1000 -> 62.27, 3000 -> 186.81
    np.testing.assert_array_equal(out[0], [[255, 128, 0], [0, 62, 187]])


def test_low_contrast_threshold_hand_checked() -> None:
    # 8-bit data in uint16 (auto: 8-bit range, values unchanged); half at 100, half at 100 + d
    def steps_for(d: int) -> list[str]:
        a = np.full((10, 10), 100, np.uint16)
        a[:, 5:] = 100 + d
        return _convert(RawImage(a, "test"))[1]

    assert steps_for(26) == [  # 26 / 255 = 10.2%: enough
        "uint16->uint8 auto: 8-bit range 0..255 (image max 126)",
        "gray->rgb replicate",
    ]
    steps = steps_for(25)  # 25 / 255 = 9.8%
    assert len(steps) == 3 and _kind(steps[1]) == "low contrast"
    assert "spans 100..125 of 0..255" in steps[1] and "9.8% of the range" in steps[1]
    assert "try preprocess=percentile" in steps[1]


def test_low_contrast_ignores_hot_pixels_but_sees_small_objects() -> None:
    a = np.full((100, 100), 50, np.uint16)
    a.flat[:20] = 255  # 0.2% hot pixels: still a flat image
    assert _kind(_convert(RawImage(a, "test"))[1][1]) == "low contrast"
    a.flat[:100] = 255  # 1% bright objects: contrast enough
    assert _convert(RawImage(a, "test"))[1] == [
        "uint16->uint8 auto: 8-bit range 0..255 (image max 255)",
        "gray->rgb replicate",
    ]


def test_low_contrast_not_checked_for_8bit_or_after_a_stretch() -> None:
    flat8 = np.full((8, 8), 30, np.uint8)  # the user's 8-bit pixels as stored: no warning
    assert _convert(RawImage(flat8, "test"))[1] == ["gray->rgb replicate"]
    dim = np.arange(64, dtype=np.uint16).reshape(8, 8) + 1000  # 1000..1063 of 12 bits
    steps = _convert(RawImage(dim, "test"))[1]
    assert _kind(steps[1]) == "low contrast"
    out, steps = _convert(RawImage(dim, "test"), bit_depth="percentile", stretch="percentile")
    assert not any(s.startswith(WARNING_PREFIX) for s in steps)
    assert out.min() == 0 and out.max() == 255


# --------------------------------------------------------------------------------------------
# the size limit (limits.max_image_pixels): refused from the header, before decoding


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR says width x height (8-bit gray) with no pixel data at all."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(tag + data))
        return struct.pack(">I", len(data)) + tag + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_very_large_image_is_refused_from_its_header(tmp_path: Path) -> None:
    p = _png_header_only(tmp_path / "huge.png", 12000, 9000)  # 108 MP, default limit 64 MP
    with pytest.raises(SampleError) as e:
        read_image(p)
    assert e.value.path == str(p)
    assert e.value.reason.startswith(
        "image is 12000x9000 = 108 megapixels, over limits.max_image_pixels=64000000 (64 MP)"
    )
    # no limit: Pillow warns about its size, then decoding fails (there are no pixels)
    with (
        pytest.warns(Image.DecompressionBombWarning),
        pytest.raises(SampleError, match="cannot decode image"),
    ):
        read_image(p, max_pixels=None)


def test_a_header_past_pillows_bomb_limit_gets_the_same_clear_reason(tmp_path: Path) -> None:
    """20000x20000 is past twice Pillow's MAX_IMAGE_PIXELS, where Pillow refuses to open the
    file at all: sam_bench's own limit still reads the header and names size and setting."""
    p = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # 400 MP
    assert 2 * (Image.MAX_IMAGE_PIXELS or 0) < 20000 * 20000
    with pytest.raises(SampleError) as e:
        read_image(p)
    assert e.value.reason.startswith(
        "image is 20000x20000 = 400 megapixels, over limits.max_image_pixels=64000000"
    )
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own limit is back in place
    with pytest.raises(SampleError, match=r"decompression-bomb check.*limits\.max_image_pixels"):
        read_image(p, max_pixels=None)  # no limit of ours: Pillow's, and how to set ours


@pytest.mark.parametrize(
    "name, write",
    [
        ("g.png", lambda p: Image.fromarray(_noisy((40, 50))).save(p)),
        ("c.jpg", lambda p: Image.fromarray(_noisy((40, 50, 3))).save(p, quality=90)),
        ("c16.png", lambda p: cv2.imwrite(str(p), _noisy((40, 50, 3), np.uint16))),
        ("t.tif", lambda p: tifffile.imwrite(p, _noisy((40, 50), np.uint16))),
    ],
)
def test_size_limit_every_decoder(
    tmp_path: Path, name: str, write: Callable[[Path], object]
) -> None:
    p = tmp_path / name
    write(p)
    assert read_image(p, max_pixels=2000).pixels.shape[:2] == (40, 50)  # 2000 pixels: ok
    with pytest.raises(SampleError, match=r"image is 50x40 = 0\.002 megapixels, over limits"):
        read_image(p, max_pixels=1999)
    # header only: the same refusal when the pixel data is cut off
    cut = _truncated(tmp_path, "cut_" + name, write)
    with pytest.raises(SampleError, match=r"over limits\.max_image_pixels=1999"):
        read_image(cut, max_pixels=1999)
