"""``environment.cuda_extension`` says whether sam2's CUDA extension really loads: it is what
importing ``sam2._C`` does in a fresh process (here: sam2 installed without it, so False), and
``cuda_extension_built`` whether a file is there at all."""

from __future__ import annotations

import subprocess
import sys

import torch

from sam_bench import environment
from tests.unit.test_connected_components import LOAD_ERROR, stand_in_extension  # noqa: F401


def test_the_record_says_what_importing_the_extension_does() -> None:
    imported = subprocess.run(
        [sys.executable, "-c", "import sam2._C"], capture_output=True, text=True, check=False
    )
    probe = "import importlib.util as u; print(u.find_spec('sam2._C') is not None)"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip() == "True"  # fmt: skip
    env = environment.describe(torch.device("cpu"), "fp32")
    assert env["cuda_extension"] is (imported.returncode == 0), imported.stderr[-500:]
    assert env["cuda_extension_built"] is found
    if not found:  # sam2 installed with SAM2_BUILD_CUDA=0: nothing to explain
        assert env["cuda_extension"] is False and env["cuda_extension_error"] is None


def test_a_built_extension_that_loads_is_recorded_as_loaded(stand_in_extension) -> None:  # noqa: F811
    stand_in_extension("def get_connected_componnets(mask):\n    raise AssertionError\n")
    env = environment.describe(torch.device("cpu"), "fp32")
    assert (env["cuda_extension"], env["cuda_extension_built"]) == (True, True)
    assert env["cuda_extension_error"] is None


def test_a_built_extension_that_fails_to_load_is_built_but_not_loaded(stand_in_extension) -> None:  # noqa: F811
    stand_in_extension(f"raise ImportError({LOAD_ERROR!r})\n")
    env = environment.describe(torch.device("cpu"), "fp32")
    assert (env["cuda_extension"], env["cuda_extension_built"]) == (False, True)
    assert env["cuda_extension_error"] == f"ImportError: {LOAD_ERROR}"


def test_an_extension_without_the_kernel_is_not_loaded(stand_in_extension) -> None:  # noqa: F811
    stand_in_extension("VALUE = 1\n")
    assert environment.cuda_extension_status() == (
        False, "sam2._C has no get_connected_componnets",
    )  # fmt: skip
