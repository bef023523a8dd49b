"""Convert a :class:`RawImage` into the HxWx3 uint8 RGB C-contiguous array SAM 2 takes.

The steps, in this order (each one taken is returned as a short text):

1. **Channels**: HxW and HxWx1 are gray, HxWx2 is gray + alpha, HxWx3 RGB, HxWx4 RGBA.
2. **Bit depth** (``bit_depth``, only for non-uint8 colour data; bool is always 0/255):
   ``auto`` (default) maps integers by the range of the smallest of
   :data:`AUTO_BITS` bits that holds the image's maximum (12-bit data in a 16-bit file:
   0..4095), integers with negative values by their min..max, floats within 0..1 as 0..1 and
   other floats by their min..max; ``range`` maps the dtype's full range to 0..255 (uint16:
   ``v * 255 / 65535``; floats: 0..1, clipped); ``minmax`` the image's own min..max,
   ``percentile`` its ``percentile_low`` .. ``percentile_high`` percentiles (clipped).
   Statistics are taken over all colour channels together, so colour balance is kept. NaNs
   become 0 (and are left out of the statistics).
3. **Alpha** (``alpha``): ``drop`` discards it; ``white`` composites over white
   (``c * a + 255 * (1 - a)``, with ``a`` the alpha scaled by its dtype's range).
4. **Colour** (``color``): ``gray`` turns RGB into BT.601 luma (OpenCV ``RGB2GRAY``).
5. **Stretch** (``stretch``): ``percentile`` maps each channel's ``percentile_low`` ..
   ``percentile_high`` to 0..255 (clipped); a channel whose two percentiles are equal is left
   as it is.
6. **CLAHE** (``clahe``): OpenCV CLAHE on the gray image, or on the L channel of LAB for colour.
7. **Gray -> RGB**: gray is replicated to three channels, the only form SAM 2 takes.

Conversions made by the *reader* (palette expansion...) are in ``RawImage.notes``, not here.

**Low contrast.** An image that went through the bit-depth step and whose final 8-bit values
(before step 7) span less than :data:`LOW_CONTRAST_FRACTION` of 0..255 between their
0.5th and 99.5th percentiles gets one more step, ``"warning: low contrast: ..."`` (the
"12-bit data scaled by 65535" trap: an almost black image on which SAM 2 finds few masks).
The shared loop logs such a warning once per job and counts it in
``task_info.input_warnings``. 8-bit images are the user's pixels as stored and are not
checked.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sam_bench.config import PreprocessConfig
from sam_bench.data.base import RawImage
from sam_bench.errors import SampleError

AUTO_BITS = (8, 10, 12, 14, 16, 24, 32)
"""Bit depths ``bit_depth=auto`` chooses from (the smallest that holds the image's maximum;
capped by the container's own width)."""

LOW_CONTRAST_FRACTION = 0.10
"""A converted image whose 0.5th..99.5th percentile spans less than this fraction of 0..255
is warned about. The trap it catches, 12-bit data scaled by the 16-bit range, spans at most
16 / 255 = 6.3%; the embedded synthetic low-contrast scenes (hard but workable, 8-bit so
not checked) span 11-13%."""

LOW_CONTRAST_PERCENTILES = (0.5, 99.5)
"""Percentiles of the spread measured by the low-contrast check (robust to a few hot or dead
pixels, sensitive enough that objects covering > 0.5% of an image count)."""


def to_model_input(
    raw: RawImage, cfg: PreprocessConfig, *, path: Path | str | None = None
) -> tuple[np.ndarray, list[str]]:
    """Apply every :class:`PreprocessConfig` option to one image.

    Args:
        raw: Pixels as stored (any dtype, HxW or HxWxC with C in 1..4).
        cfg: Preprocessing options.
        path: Image file, only used to name it in errors.

    Returns:
        ``(rgb, steps)``: an HxWx3 uint8 C-contiguous RGB array and the steps taken, in order
        (e.g. ``["uint16->uint8 range", "gray->rgb replicate"]``). Empty for an 8-bit RGB
        image with default options.

    Raises:
        SampleError: the pixel array has a layout no step handles.
    """
    steps: list[str] = []
    colour, alpha = _split_channels(raw.pixels, path)
    converted = colour.dtype not in (np.uint8, np.bool_)
    colour = _to_uint8(colour, cfg, steps, path)
    if alpha is not None:
        colour = _apply_alpha(colour, alpha, cfg.alpha, steps)
    if cfg.color == "gray" and colour.shape[2] == 3:
        colour = cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2GRAY)[:, :, None]
        steps.append("rgb->gray (BT.601 luma)")
    if cfg.stretch == "percentile":
        colour = _stretch(colour, cfg.percentile_low, cfg.percentile_high, steps)
    if cfg.clahe:
        colour = _clahe(colour, cfg.clahe_clip_limit, cfg.clahe_tile_grid_size, steps)
    if converted:
        warning = low_contrast_warning(colour, cfg)
        if warning:
            steps.append(warning)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
        steps.append("gray->rgb replicate")
    return np.ascontiguousarray(colour, dtype=np.uint8), steps


# --------------------------------------------------------------------------------------------
# steps


def _split_channels(
    px: np.ndarray, path: Path | str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour as HxWx1 or HxWx3, and the alpha plane (HxW) or None."""
    if px.ndim == 2:
        return px[:, :, None], None
    if px.ndim == 3 and px.shape[2] in (1, 3):
        return px, None
    if px.ndim == 3 and px.shape[2] in (2, 4):
        return px[:, :, :-1], px[:, :, -1]
    raise SampleError(path or "<image>", f"cannot preprocess pixel array of shape {px.shape}")


def _to_uint8(
    x: np.ndarray, cfg: PreprocessConfig, steps: list[str], path: Path | str | None
) -> np.ndarray:
    """Bit-depth step: any dtype -> uint8 (uint8 passes through untouched)."""
    if x.dtype == np.uint8:
        return x
    name = x.dtype.name
    if x.dtype == bool:
        steps.append("bool->uint8 0/255")
        return np.where(x, np.uint8(255), np.uint8(0))
    if x.dtype.kind not in "uif":
        raise SampleError(path or "<image>", f"unsupported pixel dtype {name}")

    v = x.astype(np.float64)
    extra = ""
    finite: np.ndarray | None = None  # the values the statistics are taken over
    if x.dtype.kind == "f":
        ok = np.isfinite(v)
        if not ok.all():
            finite = v[ok]
        if np.isnan(v).any():
            extra = f" ({int(np.isnan(v).sum())} NaN->0)"
            v = np.nan_to_num(v, nan=0.0)

    if cfg.bit_depth == "auto":
        lo, hi, label = _auto_range(x, v if finite is None else finite)
        steps.append(f"{name}->uint8 auto: {label}{extra}")
    elif cfg.bit_depth == "range":
        if x.dtype.kind == "f":
            lo, hi = 0.0, 1.0
            n_out = int(((v < 0) | (v > 1)).sum())
            if n_out:
                extra += f" ({n_out} values outside 0..1 clipped)"
        else:
            info = np.iinfo(x.dtype)
            lo, hi = float(info.min), float(info.max)
        steps.append(f"{name}->uint8 range{extra}")
    elif cfg.bit_depth == "minmax":
        lo, hi = _minmax(v if finite is None else finite)
        steps.append(f"{name}->uint8 minmax [{lo:g}, {hi:g}]{extra}")
    else:  # percentile
        stats = v if finite is None else finite
        if stats.size:
            lo, hi = (
                float(p) for p in np.percentile(stats, [cfg.percentile_low, cfg.percentile_high])
            )
        else:
            lo = hi = 0.0
        steps.append(
            f"{name}->uint8 percentile {cfg.percentile_low:g}..{cfg.percentile_high:g} "
            f"[{lo:g}, {hi:g}]{extra}"
        )
    if hi <= lo:
        steps[-1] += " (constant: all 0)"
        return np.zeros(x.shape, np.uint8)
    return _linear_to_uint8(v, lo, hi)


def _minmax(values: np.ndarray) -> tuple[float, float]:
    if not values.size:
        return 0.0, 0.0
    return float(values.min()), float(values.max())


def _auto_range(x: np.ndarray, values: np.ndarray) -> tuple[float, float, str]:
    """``bit_depth=auto``: the input range mapped to 0..255 and how it was chosen.

    Integers without negative values: ``0 .. 2**b - 1`` for the smallest ``b`` of
    :data:`AUTO_BITS` (below the container's width, else the container's width) that holds
    the maximum. Integers with negative values, and floats outside 0..1: min..max. Floats
    within 0..1: 0..1.
    """
    if x.dtype.kind in "ui":
        lo_i, hi_i = (int(x.min()), int(x.max())) if x.size else (0, 0)
        if lo_i < 0:
            return float(lo_i), float(hi_i), f"minmax [{lo_i}, {hi_i}] (negative values)"
        width = int(np.iinfo(x.dtype).max).bit_length()  # uint16: 16, int16: 15
        bits = next((b for b in AUTO_BITS if b < width and hi_i <= 2**b - 1), width)
        top = 2**bits - 1
        return 0.0, float(top), f"{bits}-bit range 0..{top} (image max {hi_i})"
    lo_v, hi_v = _minmax(values)
    if lo_v >= 0.0 and hi_v <= 1.0:
        return 0.0, 1.0, f"float range 0..1 (image {lo_v:g}..{hi_v:g})"
    return lo_v, hi_v, f"minmax [{lo_v:g}, {hi_v:g}] (values outside 0..1)"


def low_contrast_warning(colour: np.ndarray, cfg: PreprocessConfig) -> str | None:
    """The ``warning: low contrast`` step for an 8-bit image (HxWxC uint8), or None.

    The spread is measured between the :data:`LOW_CONTRAST_PERCENTILES` of all values (every
    channel together), from their histogram.
    """
    hist = np.bincount(colour.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    n = int(cdf[-1])
    if n == 0:
        return None
    p_lo, p_hi = LOW_CONTRAST_PERCENTILES
    lo = int(np.searchsorted(cdf, n * p_lo / 100.0, side="right"))
    hi = int(np.searchsorted(cdf, n * p_hi / 100.0, side="left"))
    lo = min(lo, hi)
    if (hi - lo) / 255.0 >= LOW_CONTRAST_FRACTION:
        return None
    if cfg.bit_depth == "range":
        hint = ", try preprocess.bit_depth=auto or preprocess=percentile"
    elif cfg.stretch != "percentile":
        hint = ", try preprocess=percentile"
    else:
        hint = ""
    return (
        f"warning: low contrast: the converted image spans {lo}..{hi} of 0..255 "
        f"({p_lo:g}th..{p_hi:g}th percentile, {100.0 * (hi - lo) / 255.0:.1f}% of the range, "
        f"under {100 * LOW_CONTRAST_FRACTION:g}%); SAM 2 may find few masks{hint}"
    )


def _linear_to_uint8(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map lo..hi linearly to 0..255, rounding to nearest and clipping."""
    out = np.rint((v - lo) * 255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def _alpha_unit(a: np.ndarray) -> np.ndarray:
    """Alpha plane scaled to 0..1 by its dtype's range."""
    if a.dtype == bool:
        return a.astype(np.float64)
    if a.dtype.kind == "f":
        return np.clip(np.nan_to_num(a.astype(np.float64), nan=1.0), 0.0, 1.0)
    info = np.iinfo(a.dtype)
    return (a.astype(np.float64) - info.min) / (info.max - info.min)


def _apply_alpha(colour: np.ndarray, alpha: np.ndarray, how: str, steps: list[str]) -> np.ndarray:
    a = _alpha_unit(alpha)
    opaque = bool((a >= 1.0).all())
    if how == "drop":
        steps.append("alpha dropped" + (" (fully opaque)" if opaque else ""))
        return colour
    steps.append("alpha over white" + (" (fully opaque: no change)" if opaque else ""))
    if opaque:
        return colour
    out = colour.astype(np.float64) * a[:, :, None] + 255.0 * (1.0 - a[:, :, None])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _stretch(colour: np.ndarray, low: float, high: float, steps: list[str]) -> np.ndarray:
    out = np.empty_like(colour)
    ranges = []
    for c in range(colour.shape[2]):
        ch = colour[:, :, c]
        lo, hi = (float(p) for p in np.percentile(ch, [low, high]))
        ranges.append(f"{lo:g}-{hi:g}")
        out[:, :, c] = ch if hi <= lo else _linear_to_uint8(ch.astype(np.float64), lo, hi)
    steps.append(f"stretch percentile {low:g}..{high:g} per channel [{', '.join(ranges)}]")
    return out


def _clahe(colour: np.ndarray, clip: float, tiles: int, steps: list[str]) -> np.ndarray:
    clahe = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles)))
    label = f"CLAHE clip {clip:g} tiles {tiles}x{tiles}"
    if colour.shape[2] == 1:
        steps.append(label + " on gray")
        return clahe.apply(np.ascontiguousarray(colour[:, :, 0]))[:, :, None]
    lab = cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = clahe.apply(np.ascontiguousarray(lab[:, :, 0]))
    steps.append(label + " on L of LAB")
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
