"""The fast AMG engine's per-mask post-processing: sam2's numbers from cheaper passes.

After upsampling, sam2's AMG thresholds every candidate's logits, scores its stability
(``sam2.utils.amg.calculate_stability_score``: two more thresholdings, each counted by two
torch integer sums), boxes it (``batched_mask_to_box``: maxima of the boolean mask over rows
and over columns, with index arithmetic on H- and W-sized tensors) and encodes it. On a CPU,
torch's reductions of boolean tensors are slow next to numpy's (measured here: 4-100x for
the same counts and ``any``), so on the CPU:

* :func:`stability_and_binary` makes the same three comparisons with torch (same kernels,
  same float32 thresholds) and counts them with ``np.count_nonzero``; the counts are exact
  integers, divided as int32 tensors the way sam2 divides them, so the scores are the same
  bits.
* :func:`mask_boxes` takes each mask's row and column projections with numpy's ``any`` and
  reads the first and last set index from them: the same integers as sam2's arithmetic
  (``[0, 0, 0, 0]`` for an empty mask), as int64.
* :func:`encode_rles` writes each chunk of masks once, transposed, into a column-major uint8
  buffer of the full image size (the crop placed inside) and encodes it with pycocotools.

On other devices the first two call sam2's own functions (their tensors stay on the device).
``tests/unit/test_engine_postprocess.py`` checks every function against sam2's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

#: Masks per pycocotools call (bounds the column-major buffer: RLE_CHUNK x H x W bytes).
RLE_CHUNK = 64


def stability_and_binary(
    masks: torch.Tensor, mask_threshold: float, offset: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``calculate_stability_score(masks, mask_threshold, offset)`` and ``masks >
    mask_threshold`` for N x H x W float logits: (float32 N, bool N x H x W)."""
    if masks.device.type != "cpu":
        from sam2.utils.amg import calculate_stability_score

        return calculate_stability_score(masks, mask_threshold, offset), masks > mask_threshold
    n = masks.shape[0]
    pixels = int(np.prod(masks.shape[1:]))
    buf = torch.empty(masks.shape, dtype=torch.bool)
    counts = []
    for threshold in (mask_threshold + offset, mask_threshold - offset):
        torch.gt(masks, threshold, out=buf)
        counts.append(np.count_nonzero(buf.numpy().reshape(n, pixels), axis=1).astype(np.int32))
    intersections, unions = (torch.from_numpy(c) for c in counts)
    torch.gt(masks, mask_threshold, out=buf)
    return intersections / unions, buf


def mask_boxes(binary: torch.Tensor) -> torch.Tensor:
    """``batched_mask_to_box(binary)`` for N x H x W boolean masks: XYXY int64 boxes (last
    row and column inclusive), ``[0, 0, 0, 0]`` for an empty mask (and, as sam2 returns
    them, float zeros of shape N x 4 when there are no pixels at all)."""
    if binary.device.type != "cpu" or binary.numel() == 0:
        from sam2.utils.amg import batched_mask_to_box

        out: torch.Tensor = batched_mask_to_box(binary)
        return out
    n, h, w = binary.shape
    arr = binary.numpy()
    rows = np.asarray(arr.any(axis=2))  # N x H
    cols = np.asarray(arr.any(axis=1))  # N x W
    boxes = np.zeros((n, 4), dtype=np.int64)
    filled = np.asarray(rows.any(axis=1))
    if filled.any():
        r, c = rows[filled], cols[filled]
        boxes[filled, 0] = c.argmax(axis=1)
        boxes[filled, 1] = r.argmax(axis=1)
        boxes[filled, 2] = w - 1 - c[:, ::-1].argmax(axis=1)
        boxes[filled, 3] = h - 1 - r[:, ::-1].argmax(axis=1)
    return torch.from_numpy(boxes)


def encode_rles(
    binary: torch.Tensor, crop_box: list[int], orig_size: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[int]]:
    """Compressed RLEs (full image size, the crop placed at ``crop_box``) and areas of
    crop-sized N x h x w boolean masks, ``RLE_CHUNK`` masks per pycocotools call."""
    x0, y0, x1, y1 = crop_box
    h, w = orig_size
    full_image = (x0, y0, x1, y1) == (0, 0, w, h)
    rles: list[dict[str, Any]] = []
    areas: list[int] = []
    for s in range(0, binary.shape[0], RLE_CHUNK):
        crop = binary[s : s + RLE_CHUNK].to("cpu").numpy()
        n, h_crop, w_crop = crop.shape
        # counted in place (a torch sum of bools would first copy them as int64)
        areas.extend(int(a) for a in np.count_nonzero(crop.reshape(n, h_crop * w_crop), axis=1))
        # column-major H x W x n: each mask's pixels in pycocotools' order, written once
        arr = (np.empty if full_image else np.zeros)((h, w, n), dtype=np.uint8, order="F")
        arr[y0:y1, x0:x1, :] = crop.transpose(1, 2, 0)
        rles.extend(mask_utils.encode(arr))
    return rles, areas
