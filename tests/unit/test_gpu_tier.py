"""``make test-gpu``: where CUDA is expected (``--require-gpu`` / ``REQUIRE_GPU=1``) a run in
which no gpu test ran fails; elsewhere every gpu test is skipped with the reason and the run
passes. The rule, then pytest itself on a one-test gpu file with this repository's
``conftest.py`` (on a machine without CUDA: the test skips)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, gpu_required, gpu_requirement_failure

from sam_bench.environment import cuda_status


@pytest.mark.parametrize(
    ("option", "env", "expected"),
    [
        (False, {}, False), (True, {}, True), (False, {"REQUIRE_GPU": "1"}, True),
        (False, {"REQUIRE_GPU": "true"}, True), (False, {"REQUIRE_GPU": "0"}, False),
        (False, {"REQUIRE_GPU": ""}, False),
    ],
)  # fmt: skip
def test_gpu_required(option: bool, env: dict[str, str], expected: bool) -> None:
    assert gpu_required(option, env) is expected


def test_gpu_requirement_failure() -> None:
    reason = "CUDA not available: torch sees no CUDA device"
    assert gpu_requirement_failure(False, [], [reason]) is None  # not required: skips pass
    assert gpu_requirement_failure(True, ["t.py::test_a"], [reason]) is None  # one ran
    text = gpu_requirement_failure(True, [], [reason, reason])
    assert text is not None and "none ran (2 skipped)" in text and reason in text
    text = gpu_requirement_failure(True, [], [])
    assert text is not None and "no test marked gpu was selected" in text


def run_tier(tmp_path: Path, *args: str, require: str | None) -> subprocess.CompletedProcess[str]:
    """``pytest -m gpu -rs`` (as ``make test-gpu``) on a folder holding one gpu test and this
    repository's conftest.py."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    gpu: needs a CUDA device\naddopts = -p no:cacheprovider\n"
    )
    (tmp_path / "test_tiny_gpu.py").write_text(
        "import pytest\n\n\n@pytest.mark.gpu\ndef test_on_cuda():\n"
        "    import torch\n\n    assert torch.ones(2, device='cuda').sum().item() == 2\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "REQUIRE_GPU"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if require is not None:
        env["REQUIRE_GPU"] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-rs", "-q", *args, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_required_gpu_tier_fails_where_every_gpu_test_skipped(tmp_path: Path) -> None:
    status = cuda_status()
    if status.available:
        pytest.skip("CUDA is usable here: the gpu test runs (tests/gpu covers that machine)")
    plain = run_tier(tmp_path, require=None)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert f"CUDA not available: {status.reason}" in plain.stdout  # -rs: why it skipped
    assert "GPU tests were required" not in plain.stdout
    for args, require in (((), "1"), (("--require-gpu",), None)):
        out = run_tier(tmp_path, *args, require=require)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "GPU tests were required (--require-gpu / REQUIRE_GPU=1) but none ran" in out.stdout
        assert "1 skipped" in out.stdout and status.reason in out.stdout
