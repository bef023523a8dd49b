"""sam_bench's NMS (torchvision's kernel, torchvision's package not imported) equals
``torchvision.ops``: the same indices in the same order, in both ``batched_nms`` branches."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.ops import boxes as tv

from sam_bench.engines import nms

REPO = Path(__file__).resolve().parents[2]


def _boxes(n: int, seed: int, n_classes: int = 4) -> tuple[torch.Tensor, ...]:
    """``n`` boxes in a 200-pixel square with many overlaps, exact duplicates (a quarter of
    them repeat earlier boxes) and score ties (scores drawn from 7 values)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 150
    wh = torch.rand(n, 2, generator=g) * 60 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    if n:
        dup = torch.randint(0, n, (n // 4,), generator=g)
        boxes[torch.randint(0, n, (n // 4,), generator=g)] = boxes[dup]
    scores = torch.randint(0, 7, (n,), generator=g).float() / 7
    idxs = torch.randint(0, n_classes, (n,), generator=g)
    return boxes, scores, idxs


def test_the_kernel_is_loaded() -> None:
    assert nms.kernel_loaded() and nms._FALLBACK is None


@pytest.mark.parametrize("n", [0, 1, 37, 400, 1000, 1001, 3000])
@pytest.mark.parametrize("thresh", [0.0, 0.3, 0.7, 1.0])
def test_batched_nms_equals_torchvision(n: int, thresh: float) -> None:
    """Up to 1000 boxes (4000 coordinates) the coordinate trick, above it one NMS per class:
    torchvision's branches and order, ties and duplicates included."""
    boxes, scores, idxs = _boxes(n, seed=n)
    ours = nms.batched_nms(boxes, scores, idxs, thresh)
    ref = tv.batched_nms(boxes, scores, idxs, thresh)
    assert ours.dtype == ref.dtype == torch.int64
    assert torch.equal(ours, ref)
    if n > 100 and thresh < 1.0:
        assert 0 < len(ref) < n  # the comparison saw boxes suppressed and kept


@pytest.mark.parametrize("n", [5, 300, 2000])
def test_nms_and_single_class_batched_nms_equal_torchvision(n: int) -> None:
    """The fast engine's call: one class (zeros), IoU threshold 0.7, many ties."""
    boxes, scores, _ = _boxes(n, seed=100 + n)
    assert torch.equal(nms.nms(boxes, scores, 0.7), tv.nms(boxes, scores, 0.7))
    zeros = torch.zeros_like(boxes[:, 0])
    assert torch.equal(
        nms.batched_nms(boxes, scores, zeros, 0.7), tv.batched_nms(boxes, scores, zeros, 0.7)
    )


def test_each_branch_equals_torchvisions_and_the_split_is_torchvisions() -> None:
    """Each branch equals torchvision's own on both sides of the CPU threshold (with ties
    the two branches may order kept boxes differently, so the split point matters too):
    1000 boxes (4000 coordinates) take the coordinate trick, 1001 the per-class NMS."""
    assert nms.CPU_VANILLA_ABOVE == 4000
    for n in (1000, 1001):
        boxes, scores, idxs = _boxes(n, seed=7, n_classes=6)
        trick = tv._batched_nms_coordinate_trick(boxes, scores, idxs, 0.5)
        vanilla = tv._batched_nms_vanilla(boxes, scores, idxs, 0.5)
        assert torch.equal(nms._offset_classes(boxes, scores, idxs, 0.5), trick)
        assert torch.equal(nms._per_class(boxes, scores, idxs, 0.5), vanilla)
        assert torch.equal(
            nms.batched_nms(boxes, scores, idxs, 0.5), trick if n == 1000 else vanilla
        )
        assert not torch.equal(trick, vanilla)  # the ties make the branches distinguishable


@pytest.mark.parametrize("n", [300, 1500])
def test_under_bf16_autocast_as_torchvision(n: int) -> None:
    """Under CPU autocast, bf16 scores are cast to float32 before NMS, as torchvision's autocast
    kernel does."""
    boxes, scores, idxs = _boxes(n, seed=3)
    scores = (scores + torch.rand(n, generator=torch.Generator().manual_seed(1)) * 1e-3).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = nms.batched_nms(boxes, scores, idxs, 0.6)
        ref = tv.batched_nms(boxes, scores, idxs, 0.6)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.int16, torch.int64]
)
def test_box_area_equals_torchvision(dtype: torch.dtype) -> None:
    boxes, _, _ = _boxes(50, seed=5)
    boxes = (boxes * 10).to(dtype)
    ours, ref = nms.box_area(boxes), tv.box_area(boxes)
    assert ours.dtype == ref.dtype and torch.equal(ours, ref)


#: In a fresh interpreter: the kernel loads without the torchvision package, gives
#: torchvision's result, and torchvision imports and works afterwards.
CHILD = """
import sys, torch
from sam_bench.engines import nms
assert nms.kernel_loaded() and nms._FALLBACK is None
assert 'torchvision' not in sys.modules and 'torch._dynamo' not in sys.modules, 'imported'
results = [nms.batched_nms(*_boxes(n, seed=n), 0.5) for n in (200, 1500)]
import torchvision.ops
for n, r in zip((200, 1500), results):
    assert torch.equal(r, torchvision.ops.batched_nms(*_boxes(n, seed=n), 0.5))
print('CHILD-OK', [len(r) for r in results])
"""


def _child(code: str, tmp_path: Path) -> None:
    """Run ``code`` (with ``_boxes`` defined) in a fresh interpreter; it must print CHILD-OK."""
    proc = subprocess.run(
        [sys.executable, "-c", "import torch\n" + inspect.getsource(_boxes) + code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0 and "CHILD-OK" in proc.stdout, proc.stderr[-3000:]


def test_the_kernel_loads_without_importing_torchvision(tmp_path: Path) -> None:
    _child(CHILD, tmp_path)


#: In a fresh interpreter where torchvision's extension cannot be found (``find_spec`` says
#: the package is missing): the functions hand over to ``torchvision.ops.boxes``.
FALLBACK_CHILD = """
import importlib.util, sys, torch
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == 'torchvision' else real(name, *a)
from sam_bench.engines import nms
importlib.util.find_spec = real
assert not nms.kernel_loaded() and nms._FALLBACK is not None
assert 'torchvision' in sys.modules
import torchvision.ops
for n in (200, 1500):
    b, s, i = _boxes(n, seed=n)
    assert torch.equal(nms.batched_nms(b, s, i, 0.5), torchvision.ops.batched_nms(b, s, i, 0.5))
    assert torch.equal(nms.nms(b, s, 0.5), torchvision.ops.nms(b, s, 0.5))
print('CHILD-OK')
"""


def test_without_the_library_torchvision_ops_runs(tmp_path: Path) -> None:
    _child(FALLBACK_CHILD, tmp_path)
