"""sam2's CUDA extension (``sam2._C``) on a GPU, against sam_bench's CPU connected components
(``make test-gpu``; every test here is marked ``gpu`` and skipped, with the reason, where CUDA
is unavailable).

Both paths of :mod:`sam_bench.models.connected_components` on CUDA tensors:

* the extension, when it loads (``make install`` builds it where ``nvcc`` is found, or
  ``make install-cuda-ext``): its kernel directly and through sam2's own
  ``get_connected_components`` give the CPU step's component areas and partition, and the
  record names it (``cc_impl``: ``cuda_extension``). Where it does not load the test skips
  saying why, or fails with ``REQUIRE_SAM2_EXT=1`` (``benchmarks/gpu_check.sh`` sets it after
  building the extension);
* the CPU step for CUDA tensors, when the extension is not used (not built, or failed on a
  call): same results, back on the tensors' device, and the record says ``opencv_cpu``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sam_bench.environment import cuda_extension_built, cuda_extension_status, describe
from sam_bench.models import connected_components as cc

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


def masks(seed: int = 0) -> torch.Tensor:
    """Random binary masks (N, 1, H, W) with many components, touching diagonals included;
    an empty and a full mask among them."""
    m = torch.from_numpy(np.random.default_rng(seed).random((8, 1, 64, 80)) > 0.55)
    m[0] = False
    m[1] = True
    return m


def assert_same_components(labels: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor) -> None:
    """``labels`` / ``counts`` (from a CUDA run) against the CPU step on ``mask``: identical
    areas per pixel, foreground exactly where the mask is, and the same partition."""
    want_labels, want_counts = cc.connected_components_cpu(mask)
    assert labels.shape == counts.shape == mask.shape
    assert torch.equal(counts.cpu().to(torch.int32), want_counts)
    ours, ref = labels.cpu().numpy(), want_labels.numpy()
    assert ((ours > 0) == mask.numpy()).all()
    for i in range(mask.shape[0]):
        pairs = {(a, b) for a, b in zip(ours[i, 0].ravel(), ref[i, 0].ravel(), strict=True) if b}
        # a one-to-one map between the two labellings of the foreground
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


@pytest.fixture
def extension():
    """``sam2._C`` when it loads; else a skip with the reason (a failure with
    REQUIRE_SAM2_EXT=1)."""
    loads, error = cuda_extension_status()
    if not loads:
        why = error or "sam2 was installed without it (SAM2_BUILD_CUDA=0, no nvcc at install)"
        if os.environ.get("REQUIRE_SAM2_EXT", "") == "1":
            pytest.fail(f"REQUIRE_SAM2_EXT=1 but sam2's CUDA extension does not load: {why}")
        pytest.skip(f"sam2's CUDA extension does not load: {why}")
    return importlib.import_module("sam2._C")


def test_extension_kernel_matches_the_cpu_step(extension) -> None:  # type: ignore[no-untyped-def]
    mask = masks()
    labels, counts = extension.get_connected_componnets(mask.to(CUDA, torch.uint8).contiguous())
    assert labels.device.type == "cuda" and counts.device.type == "cuda"
    assert_same_components(labels, counts, mask)


def test_sam2_code_path_runs_the_extension_and_the_record_says_so(
    extension, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import sam2.utils.misc as misc

    monkeypatch.setattr(cc, "_call_error", None)
    cc.install()
    calls: list[torch.Tensor] = []
    kernel = extension.get_connected_componnets

    def counted(mask: torch.Tensor):  # type: ignore[no-untyped-def]
        calls.append(mask)
        return kernel(mask)

    monkeypatch.setattr(extension, "get_connected_componnets", counted)
    mask = masks(1)
    labels, counts = misc.get_connected_components(mask.to(CUDA))
    assert len(calls) == 1 and calls[0].is_cuda  # the kernel ran, not the CPU step
    assert_same_components(labels, counts, mask)
    assert cc.implementation(CUDA) == "cuda_extension"
    env = describe(CUDA, "fp32")
    assert (env["cuda_extension"], env["cuda_extension_built"]) == (True, True)


def test_cpu_step_serves_cuda_tensors_when_the_extension_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not built, or failed on a call (forced here when it loads): the CPU step runs, its
    results come back on the GPU, and the record says so."""
    import sam2.utils.misc as misc

    if cuda_extension_status()[0]:
        monkeypatch.setattr(cc, "_call_error", "RuntimeError: forced by the test")
    cc.install()
    mask = masks(2)
    labels, counts = misc.get_connected_components(mask.to(CUDA))
    assert labels.device.type == "cuda" and counts.device.type == "cuda"
    assert_same_components(labels, counts, mask)
    assert cc.implementation(CUDA) == "opencv_cpu"


def test_record_is_what_a_fresh_import_does() -> None:
    loads = (
        subprocess.run([sys.executable, "-c", "import sam2._C"], capture_output=True).returncode
        == 0
    )
    env = describe(CUDA, "fp32")
    assert env["cuda_extension"] is loads
    assert env["cuda_extension_built"] is cuda_extension_built()
