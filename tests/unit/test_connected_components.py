"""The CPU connected-components step against scipy, and through sam2's official code path."""

from __future__ import annotations

import importlib.util
import logging
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from sam_bench.models import connected_components as cc


def test_matches_scipy_8_connectivity_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((6, 1, 40, 50)) > 0.55
    labels, counts = cc.connected_components_cpu(torch.from_numpy(masks))
    assert labels.dtype == torch.int32 and counts.shape == masks.shape
    for i in range(masks.shape[0]):
        ref, n = ndimage.label(masks[i, 0], structure=np.ones((3, 3)))
        sizes = np.bincount(ref.ravel())
        sizes[0] = 0
        np.testing.assert_array_equal(counts[i, 0].numpy(), sizes[ref])
        ours = labels[i, 0].numpy()
        assert ((ours > 0) == masks[i, 0]).all()
        # same partition: each scipy component is exactly one of ours
        for k in range(1, n + 1):
            assert len(np.unique(ours[ref == k])) == 1
        assert len(np.unique(ours[ours > 0])) == n


def test_diagonal_pixels_are_one_component() -> None:
    m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    m[0, 0, 0, 0] = m[0, 0, 1, 1] = m[0, 0, 2, 2] = True
    _, counts = cc.connected_components_cpu(m)
    assert counts.max().item() == 3


def test_official_postprocess_masks_fills_holes_and_removes_islands_on_cpu() -> None:
    """sam2's own ``SAM2Transforms.postprocess_masks`` honours max_hole/sprinkle area on CPU."""
    from sam2.utils.transforms import SAM2Transforms

    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[0, 0, 4:20, 4:20] = 5.0  # object
    logits[0, 0, 10:12, 10:12] = -5.0  # 4-pixel hole
    logits[0, 0, 28:30, 28:30] = 5.0  # 4-pixel island
    tf = SAM2Transforms(resolution=1024, mask_threshold=0.0, max_hole_area=10, max_sprinkle_area=10)
    cc.install()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the upstream "skipping post-processing" warning
        out = tf.postprocess_masks(logits, (32, 32))
    binary = out[0, 0] > 0
    assert binary[10:12, 10:12].all(), "hole filled"
    assert not binary[28:30, 28:30].any(), "island removed"
    assert binary[4:20, 4:20].all()


def test_implementation_names() -> None:
    assert cc.implementation(torch.device("cpu")) == "opencv_cpu"


def test_rejects_bad_shape() -> None:
    with pytest.raises(ValueError):
        cc.connected_components_cpu(torch.zeros(3, 3))


# --------------------------------------------------- sam2's CUDA extension: what really runs
# No extension is built here, so each test puts a stand-in ``_C.py`` on sam2's package path:
# the file lookup finds it, as it would find a real one; what the stand-in does on import or
# on a call is the situation under test.

CUDA = torch.device("cuda")  # a device name only: nothing runs on it here
LOAD_ERROR = "libcudart.so.12: cannot open shared object file: No such file or directory"
KERNEL_ERROR = "CUDA error: no kernel image is available for execution on the device"


@pytest.fixture
def stand_in_extension(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """``write(source)`` installs ``source`` as ``sam2._C`` (found by file lookup)."""
    import sys

    import sam2

    from sam_bench import environment

    def write(source: str) -> None:
        (tmp_path / "_C.py").write_text(source)
        monkeypatch.setattr(sam2, "__path__", [*sam2.__path__, str(tmp_path)])
        environment.cuda_extension_status.cache_clear()

    monkeypatch.setattr(cc, "_call_error", None)
    yield write
    sys.modules.pop("sam2._C", None)
    if "_C" in vars(sam2):
        delattr(sam2, "_C")
    environment.cuda_extension_status.cache_clear()


def test_an_extension_that_fails_to_load_is_not_reported_as_running(stand_in_extension) -> None:
    from sam_bench import environment

    stand_in_extension(f"raise ImportError({LOAD_ERROR!r})\n")
    assert importlib.util.find_spec("sam2._C") is not None  # the file is there
    assert environment.cuda_extension_status() == (False, f"ImportError: {LOAD_ERROR}")
    assert cc.implementation(CUDA) == "opencv_cpu"
    assert cc.extension_error() == f"ImportError: {LOAD_ERROR}"
    env = environment.describe(torch.device("cpu"), "fp32")
    assert env["cuda_extension"] is False
    assert env["cuda_extension_error"] == f"ImportError: {LOAD_ERROR}"


def test_an_extension_that_loads_is_used_for_cuda_only(stand_in_extension) -> None:
    stand_in_extension("def get_connected_componnets(mask):\n    raise AssertionError\n")
    assert cc.implementation(CUDA) == "cuda_extension"
    assert cc.implementation(torch.device("cpu")) == "opencv_cpu"
    assert cc.extension_error() is None


def test_an_extension_that_fails_on_a_call_falls_back_to_cpu(
    stand_in_extension, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback itself (``_run_extension``, what ``_dispatch`` calls for CUDA tensors) is
    called with a CPU tensor: there is no CUDA tensor on this machine."""
    stand_in_extension(
        f"def get_connected_componnets(mask):\n    raise RuntimeError({KERNEL_ERROR!r})\n"
    )
    assert cc.implementation(CUDA) == "cuda_extension"
    mask = torch.from_numpy(np.random.default_rng(1).random((3, 1, 20, 30)) > 0.5)
    with caplog.at_level(logging.WARNING, logger="sam_bench.models.connected_components"):
        labels, counts = cc._run_extension(mask)
    want_labels, want_counts = cc.connected_components_cpu(mask)
    assert torch.equal(labels, want_labels) and torch.equal(counts, want_counts)
    assert KERNEL_ERROR in caplog.text
    assert cc.implementation(CUDA) == "opencv_cpu"  # from then on, and the record says so
    assert cc.extension_error() == f"RuntimeError: {KERNEL_ERROR}"
