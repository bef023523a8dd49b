"""A CPU connected-components step so ``min_mask_region_area`` means the same everywhere.

SAM 2 passes ``min_mask_region_area`` to its predictor as ``max_hole_area`` /
``max_sprinkle_area``; ``SAM2Transforms.postprocess_masks`` then fills holes and removes
islands in the 256x256 low-res logits (before upsampling and stability scoring) using
``sam2.utils.misc.get_connected_components``, which needs sam2's CUDA extension. Without it
the step is silently skipped (a warning only), so the same setting gives different masks on
CPU and GPU.

:func:`install` replaces ``sam2.utils.misc.get_connected_components`` with a dispatcher that
keeps the extension for CUDA tensors when it loads, and otherwise labels components with
OpenCV using the same 8-connectivity as the extension (``connected_components.cu``, per its
docstring in ``sam2/utils/misc.py``). sam2 looks the function up at call time, so the official
code path (``postprocess_masks``, ``fill_holes_in_mask_scores``) honours the setting.

The extension is imported once to check that it loads (a file that is there is not enough:
one built for another torch or CUDA fails at import, and sam2 would then skip the step with a
warning). When it fails to load, or fails on a call, the CPU step runs instead, from then on,
and :func:`implementation` says so: it names what actually runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import cv2
import numpy as np
import torch

from sam_bench.environment import cuda_extension_status

log = logging.getLogger(__name__)

_original: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
_call_error: str | None = None
"""Why a call of the loaded extension failed (it is not used again); ``None``: no failure."""


def connected_components_cpu(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and component areas of binary masks, like sam2's CUDA kernel.

    Args:
        mask: ``(N, 1, H, W)`` tensor, nonzero = foreground.

    Returns:
        ``labels`` and ``counts``, both int32 ``(N, 1, H, W)`` on ``mask``'s device: a component
        label (> 0) and the area of that component for foreground pixels, 0 for background.
        Connectivity is 8, as in the CUDA kernel. Label values may differ from the kernel's;
        sam2 only uses ``labels > 0`` and ``counts``.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W), got {tuple(mask.shape)}")
    src = mask.detach().to("cpu", torch.uint8).numpy()
    labels = np.zeros(src.shape, dtype=np.int32)
    counts = np.zeros(src.shape, dtype=np.int32)
    for i in range(src.shape[0]):
        m = np.ascontiguousarray(src[i, 0])
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_32S)
        if n <= 1:
            continue
        areas = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
        areas[0] = 0  # OpenCV's label 0 is the background
        labels[i, 0] = lab
        counts[i, 0] = areas[lab]
    return (
        torch.from_numpy(labels).to(mask.device),
        torch.from_numpy(counts).to(mask.device),
    )


def extension_error() -> str | None:
    """Why sam2's CUDA extension is not used although it is built (it failed to load or on a
    call), or ``None``."""
    return _call_error or cuda_extension_status()[1]


def _extension_usable() -> bool:
    return _call_error is None and cuda_extension_status()[0]


def _run_extension(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sam2's CUDA kernel on ``mask`` (as ``sam2.utils.misc.get_connected_components`` calls
    it); on any failure, :func:`connected_components_cpu`, and the extension is not used
    again in this process."""
    global _call_error
    try:
        ext = importlib.import_module("sam2._C")
        labels, counts = ext.get_connected_componnets(mask.to(torch.uint8).contiguous())
        return labels, counts
    except Exception as e:
        _call_error = f"{type(e).__name__}: {e}"
        log.warning(
            "sam2's CUDA extension failed (%s); connected components run on the CPU from now on",
            _call_error,
        )
        return connected_components_cpu(mask)


def _dispatch(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if mask.is_cuda and _extension_usable():
        return _run_extension(mask)
    return connected_components_cpu(mask)


def install() -> None:
    """Route sam2's connected-components calls through :func:`_dispatch` (idempotent)."""
    global _original
    import sam2.utils.misc as misc

    if misc.get_connected_components is not _dispatch:
        _original = misc.get_connected_components
        misc.get_connected_components = _dispatch


def implementation(device: torch.device) -> str:
    """Which implementation runs for ``device`` now: ``cuda_extension`` (CUDA device, and the
    extension loads and has not failed) or ``opencv_cpu``."""
    if device.type == "cuda" and _extension_usable():
        return "cuda_extension"
    return "opencv_cpu"
