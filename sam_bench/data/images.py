"""Decode an image file into :class:`RawImage`: pixels exactly as stored, never reduced to 8 bits.

Which decoder reads what (chosen from the file's first bytes, not its suffix):

- TIFF: :mod:`tifffile` (uint8/uint16/uint32/float, 1-bit, planar or interleaved samples).
  Only the first page is read. ``MINISWHITE`` data are inverted (0 = black) and palette TIFFs
  expanded to RGB, both with a note; CMYK TIFFs are refused.
- PNG with 16-bit colour (RGB, RGBA, gray + alpha): OpenCV, because Pillow silently reduces
  16-bit colour PNGs to 8 bits.
- Everything else (PNG, JPEG, BMP, GIF, WebP...): Pillow, with every mode mapped explicitly:
  ``1`` -> bool, ``L``/``LA``/``RGB``/``RGBA`` -> uint8, ``I;16*`` -> uint16, ``I`` -> int32
  (uint16 for PNG, whose depth is at most 16 bits), ``F`` -> float32. Palette images (``P``,
  ``PA``) are expanded to RGB or RGBA (RGBA when the palette has transparency), other modes
  (``CMYK``, ``YCbCr``...) converted to RGB; each such conversion is noted. EXIF orientation is
  *not* applied (annotations refer to the stored pixels); a non-trivial orientation is noted.

Any failure (missing, truncated, not an image, unsupported layout) raises :class:`SampleError`
naming the file and the reason.

**Size limit.** An image with more pixels (width x height) than ``max_pixels`` (the setting
``limits.max_image_pixels``, default :data:`DEFAULT_MAX_IMAGE_PIXELS`) is refused from its
header, before its pixels are decoded: Pillow's ``Image.open`` and tifffile read only the
header, and a 16-bit colour PNG's size is read from its IHDR chunk. Pillow refuses on its own
images over ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (~179 MP) as "decompression bombs"; that is
reported as the same kind of error.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sam_bench.config import LimitsConfig
from sam_bench.data.base import RawImage
from sam_bench.errors import SampleError

DEFAULT_MAX_IMAGE_PIXELS: int = LimitsConfig.max_image_pixels
"""The default of ``limits.max_image_pixels`` (64 MP), used when a caller passes none."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> RawImage:
    """Read one image file as stored.

    Args:
        path: Image file (any format Pillow, tifffile or OpenCV decodes).
        max_pixels: Refuse images with more pixels (width x height) than this, from the
            header, before decoding (``limits.max_image_pixels``). ``None``: no limit.

    Returns:
        :class:`RawImage` with ``pixels`` HxW or HxWxC (C in 1..4) in the stored dtype
        (bool, uint8, uint16, int32, float32...), a ``mode`` such as ``"PIL:RGBA"``,
        ``"PIL:I;16"``, ``"tiff:uint16x1"`` or ``"cv2:uint16x3"``, and ``notes`` listing any
        conversion the reader had to make.

    Raises:
        SampleError: the file is missing, unreadable, truncated, not an image, has a pixel
            layout sam_bench does not handle, or is larger than ``max_pixels``.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(32)
    except FileNotFoundError:
        raise SampleError(path, "image file not found") from None
    except OSError as e:
        raise SampleError(path, f"cannot open image file: {e.strerror or e}") from None
    if not head:
        raise SampleError(path, "image file is empty")

    if head.startswith(_TIFF_MAGICS):
        raw = _read_tiff(path, max_pixels)
    elif head.startswith(_PNG_MAGIC) and _png_is_16bit_colour(head):
        width, height = struct.unpack(">II", head[16:24])
        check_size(path, width, height, max_pixels)
        raw = _read_png16_colour(path)
    else:
        raw = _read_pil(path, max_pixels)

    px = raw.pixels
    if px.ndim not in (2, 3) or (px.ndim == 3 and not 1 <= px.shape[2] <= 4):
        raise SampleError(path, f"unsupported pixel layout {px.shape} ({raw.mode})")
    if px.shape[0] == 0 or px.shape[1] == 0:
        raise SampleError(path, f"image has no pixels (shape {px.shape})")
    if not px.dtype.isnative:
        raw.pixels = px.astype(px.dtype.newbyteorder("="))
    return raw


def check_size(path: Path | str, width: int, height: int, max_pixels: int | None) -> None:
    """Raise :class:`SampleError` when a ``width`` x ``height`` image is over ``max_pixels``.

    The reason names the size, the limit and the setting that raises it.
    """
    if max_pixels is None or width * height <= max_pixels:
        return
    raise SampleError(
        path,
        f"image is {width}x{height} = {width * height / 1e6:.3g} megapixels, over "
        f"limits.max_image_pixels={max_pixels} ({max_pixels / 1e6:.3g} MP); not decoded "
        f"(raise limits.max_image_pixels to process it: AMG keeps one full-size mask per "
        f"candidate, {width * height / 1e6:.3g} MB each)",
    )


# --------------------------------------------------------------------------------------------
# Pillow


def _read_pil(path: Path, max_pixels: int | None) -> RawImage:
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            if max_pixels is not None:  # sam_bench's own limit applies (below), from the
                # header; Pillow's own bomb check would refuse a huge header first, saying less
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im_ctx = Image.open(path)
            finally:
                if max_pixels is not None:
                    Image.MAX_IMAGE_PIXELS = pillow_limit
        with im_ctx as im:
            check_size(path, im.width, im.height, max_pixels)  # header only so far
            im.load()  # decode now: truncated data raises here
            fmt = im.format or "?"
            n_frames = getattr(im, "n_frames", 1)
            orientation = im.getexif().get(0x0112, 1)
            pixels, mode = _pil_pixels(path, im, fmt, notes)
    except SampleError:
        raise
    except UnidentifiedImageError:
        raise SampleError(path, "not an image file Pillow can identify") from None
    except Image.DecompressionBombError as e:  # only with limits.max_image_pixels=null
        raise SampleError(
            path,
            f"image too large for Pillow's decompression-bomb check, not decoded ({e}); set "
            "limits.max_image_pixels to decide the limit yourself",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise SampleError(path, f"cannot decode image: {e}") from None
    if n_frames > 1:
        notes.append(f"{fmt} has {n_frames} frames; first frame read")
    if orientation not in (None, 1):
        notes.append(f"EXIF orientation {orientation} ignored (pixels as stored)")
    return RawImage(pixels=pixels, mode=mode, notes=notes)


def _pil_pixels(path: Path, im: Image.Image, fmt: str, notes: list[str]) -> tuple[np.ndarray, str]:
    """Map one Pillow image to an array, explicitly per mode."""
    mode = im.mode
    tag = f"PIL:{mode}"
    if mode in ("1", "L", "LA", "RGB", "RGBA", "F"):
        return np.array(im), tag
    if mode.startswith("I;16"):
        return np.array(im).astype(np.uint16), tag
    if mode == "I":
        arr = np.array(im)
        if fmt == "PNG":  # PNG samples are at most 16 bits; Pillow widened them to int32
            notes.append("PNG decoded by Pillow as 32-bit 'I'; stored as uint16")
            return arr.astype(np.uint16), tag
        return arr.astype(np.int32), tag
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        target = "RGBA" if has_alpha else "RGB"
        notes.append(f"palette image expanded to {target}")
        return np.array(im.convert(target)), tag
    if mode == "RGBX":
        notes.append("RGBX padding byte dropped")
        return np.array(im.convert("RGB")), tag
    if mode == "La":  # premultiplied alpha
        notes.append("premultiplied LA converted to LA")
        return np.array(im.convert("LA")), tag
    if mode == "RGBa":
        notes.append("premultiplied RGBA converted to RGBA")
        return np.array(im.convert("RGBA")), tag
    # CMYK, YCbCr, LAB, HSV, I;16 variants with odd layouts...: let Pillow make RGB
    try:
        rgb = im.convert("RGB")
    except (ValueError, OSError) as e:
        raise SampleError(path, f"unsupported Pillow mode {mode}: {e}") from None
    notes.append(f"{mode} converted to RGB by Pillow")
    return np.array(rgb), tag


# --------------------------------------------------------------------------------------------
# 16-bit colour PNG (Pillow would truncate it to 8 bits)


def _png_is_16bit_colour(head: bytes) -> bool:
    """IHDR bit depth 16 with colour type gray+alpha (4), RGB (2) or RGBA (6)."""
    if len(head) < 26 or head[12:16] != b"IHDR":
        return False
    return head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16_colour(path: Path) -> RawImage:
    import cv2

    buf = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise SampleError(path, "cannot decode 16-bit PNG (truncated or corrupt)")
    colour_type = _png_colour_type(path)
    notes = ["16-bit RGB/RGBA/LA PNG decoded with OpenCV (Pillow would reduce it to 8 bits)"]
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]  # BGR -> RGB
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]  # BGRA -> RGBA
        if colour_type == 4:  # gray + alpha came back as BGRA with B = G = R
            arr = arr[:, :, [0, 3]]
    arr = np.ascontiguousarray(arr)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return RawImage(pixels=arr, mode=f"cv2:{arr.dtype.name}x{channels}", notes=notes)


def _png_colour_type(path: Path) -> int:
    with path.open("rb") as f:
        return f.read(26)[25]


# --------------------------------------------------------------------------------------------
# TIFF


def _read_tiff(path: Path, max_pixels: int | None) -> RawImage:
    import tifffile

    notes: list[str] = []
    try:
        with tifffile.TiffFile(path) as tf:
            n_pages = len(tf.pages)
            page = tf.pages.first
            check_size(path, int(page.imagewidth), int(page.imagelength), max_pixels)
            arr = page.asarray()
            axes = page.axes
            photometric = int(page.photometric)
            colormap = page.colormap
    except SampleError:
        raise
    except Exception as e:  # tifffile raises many types for corrupt files
        raise SampleError(path, f"cannot decode TIFF: {type(e).__name__}: {e}") from None
    if n_pages > 1:
        notes.append(f"TIFF has {n_pages} pages; first page read")

    # normalise the axes to Y, X[, S]
    squeeze = [i for i, a in enumerate(axes) if a not in "YXS" and arr.shape[i] == 1]
    if squeeze:
        arr = np.squeeze(arr, axis=tuple(squeeze))
        axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
    if axes == "SYX":
        arr = np.moveaxis(arr, 0, -1)
        axes = "YXS"
        notes.append("planar TIFF samples moved last")
    if axes not in ("YX", "YXS"):
        raise SampleError(path, f"unsupported TIFF layout: axes {page.axes}, shape {arr.shape}")

    if photometric == 5:  # SEPARATED (CMYK)
        raise SampleError(path, "CMYK TIFF is not supported; convert it to RGB")
    if photometric == 3 and colormap is not None and arr.ndim == 2:  # PALETTE
        arr = np.ascontiguousarray(np.asarray(colormap).T[arr])
        notes.append("palette TIFF expanded to RGB (16-bit colour map)")
    elif photometric == 0:  # MINISWHITE: 0 is white
        if arr.dtype == bool:
            arr = ~arr
        elif np.issubdtype(arr.dtype, np.unsignedinteger):
            arr = np.iinfo(arr.dtype).max - arr
        elif np.issubdtype(arr.dtype, np.floating):
            arr = 1.0 - arr
        notes.append("TIFF MINISWHITE inverted (0 = black)")

    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return RawImage(pixels=arr, mode=f"tiff:{arr.dtype.name}x{channels}", notes=notes)
