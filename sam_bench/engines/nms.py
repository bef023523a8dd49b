"""torchvision's box NMS without importing the torchvision package.

``import torchvision`` costs about a second on a small command, almost all of it
``torch._dynamo`` (``torchvision.models`` -> ``ops.roi_align`` -> ``torch._dynamo.utils``).
The fast engine needs only ``batched_nms`` and ``box_area``; the NMS kernel itself is
torchvision's compiled extension, which registers ``torch.ops.torchvision.nms`` when it is
loaded. This module loads that library the way ``torchvision/extension.py`` does (found next to
the package's ``__init__.py`` through ``importlib.util.find_spec``, which does not run the
package) and reproduces ``torchvision.ops.boxes.batched_nms`` around the kernel: the same
branches (the coordinate-offset trick up to 4000 box coordinates on the CPU / 100 000 on other
devices, one NMS per class above that), the same operations, the same order of the returned
indices.

* When the op is already registered (torchvision imported elsewhere), it is used as is.
* Under autocast, torchvision's autocast kernel casts the boxes and scores to float32 before
  NMS; this module does the same cast when autocast is enabled for the boxes' device, so the
  result does not depend on whether torchvision's Python registrations were imported.
* When the library cannot be found or loaded, the functions hand over to
  ``torchvision.ops.boxes`` (the package is then imported: slower, the same algorithm). That
  import happens when this module is imported, at module level on purpose: torchvision's first
  import leaves a reference cycle of frames (``torch.fx.wrap`` keeps its own frame), which
  would keep alive the callers of whatever imports it first (inside the engine, the model).

Checked against torchvision in ``tests/unit/test_nms.py``.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import logging
from typing import Any

import torch

log = logging.getLogger(__name__)

#: torchvision's extension library names, newest first (0.29 ships ``_C_stable``).
_LIBRARIES = ("_C_stable", "_C")

#: Above this many box coordinates (``boxes.numel()``), ``batched_nms`` runs one NMS per class
#: instead of the coordinate trick: torchvision's thresholds per device type.
CPU_VANILLA_ABOVE = 4000
OTHER_VANILLA_ABOVE = 100_000


def _registered() -> bool:
    """Whether ``torch.ops.torchvision.nms`` exists in this process."""
    try:
        torch.ops.torchvision.nms  # noqa: B018 (attribute lookup raises when missing)
    except (AttributeError, RuntimeError):
        return False
    return True


def _library_path() -> str:
    """The path of torchvision's compiled extension, found without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed")
    finder_details = (
        importlib.machinery.ExtensionFileLoader,
        importlib.machinery.EXTENSION_SUFFIXES,
    )
    for folder in spec.submodule_search_locations:
        finder = importlib.machinery.FileFinder(folder, finder_details)
        for name in _LIBRARIES:
            found = finder.find_spec(name)
            if found is not None and found.origin:
                return found.origin
    raise ImportError(f"no torchvision extension ({', '.join(_LIBRARIES)}) found")


@functools.cache
def kernel_loaded() -> bool:
    """Whether ``torch.ops.torchvision.nms`` can be called: already registered, or registered
    now by loading torchvision's extension library (once per process, when this module is
    imported). ``False`` when loading failed for any reason (the functions then use
    ``torchvision.ops.boxes``)."""
    if _registered():
        return True
    try:
        torch.ops.load_library(_library_path())
    except Exception as e:  # missing, built for another torch, ...: the package's own path
        log.debug("torchvision's NMS kernel not loaded directly (%s)", e)
        return False
    return _registered()


#: ``torchvision.ops.boxes`` when the kernel could not be loaded directly (see the module
#: docstring), else ``None``.
_FALLBACK: Any = None
if not kernel_loaded():
    import torchvision.ops.boxes

    _FALLBACK = torchvision.ops.boxes


def _autocast_float(t: torch.Tensor) -> torch.Tensor:
    """What torchvision's autocast kernel for ``nms`` gives the op: float32, except float64
    and non-floating tensors (only when autocast is enabled for ``t``'s device)."""
    if not torch.is_autocast_enabled(t.device.type):
        return t
    return t.float() if t.is_floating_point() and t.dtype is not torch.float64 else t


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.nms``: indices (int64) of the boxes kept, by decreasing score.

    Args:
        boxes: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``.
        scores: ``(N,)`` scores.
        iou_threshold: a box overlapping a higher-scoring kept box by IoU above it is dropped.
    """
    if _FALLBACK is not None:
        out: torch.Tensor = _FALLBACK.nms(boxes, scores, iou_threshold)
        return out
    ops: Any = torch.ops.torchvision
    if boxes.is_quantized:
        kept: torch.Tensor = ops.qnms(boxes.int_repr(), scores.int_repr(), iou_threshold)
        return kept
    kept = ops.nms(_autocast_float(boxes), _autocast_float(scores), iou_threshold)
    return kept


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """``torchvision.ops.batched_nms``: NMS within each class of ``idxs`` (never across),
    indices (int64) of the boxes kept by decreasing score, in torchvision's order."""
    if _FALLBACK is not None:
        out: torch.Tensor = _FALLBACK.batched_nms(boxes, scores, idxs, iou_threshold)
        return out
    limit = CPU_VANILLA_ABOVE if boxes.device.type == "cpu" else OTHER_VANILLA_ABOVE
    if boxes.numel() > limit and not torch._C._get_tracing_state():
        return _per_class(boxes, scores, idxs, iou_threshold)
    return _offset_classes(boxes, scores, idxs, iou_threshold)


def _offset_classes(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """One NMS over all boxes, each class shifted by ``class * (max coordinate + 1)`` so that
    boxes of different classes never overlap (torchvision's coordinate trick)."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    shift = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + shift[:, None], scores, iou_threshold)


def _per_class(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """One NMS per class, then every kept index sorted by decreasing score (torchvision's
    vanilla branch: the same sort, so ties come out in the same order)."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for cls in torch.unique(idxs):
        members = torch.where(idxs == cls)[0]
        keep[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep)[0]
    return kept[scores[kept].sort(descending=True)[1]]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``torchvision.ops.box_area`` for ``(x1, y1, x2, y2)`` boxes: width * height, after
    torchvision's upcast (half floats to float32, small integers to int32)."""
    if boxes.is_floating_point():
        if boxes.dtype not in (torch.float32, torch.float64):
            boxes = boxes.float()
    elif boxes.dtype not in (torch.int32, torch.int64):
        boxes = boxes.int()
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
