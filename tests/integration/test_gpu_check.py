"""``benchmarks/gpu_check.sh``, the one script a user with a GPU runs: a result line per step
(cuda, install, test-gpu, one short sweep per task), every step run even after a failure, exit
status 1 when any failed. On this machine (no GPU) each CUDA step must fail cleanly, with its
reason; ``GPU_CHECK_DEVICE=cpu`` runs the sweeps on the CPU to show the mechanics (slow)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from sam_bench.environment import cuda_status

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["cuda", "install", "test-gpu", "amg", "prompted", "video", "semantic"]


def gpu_check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The script as a user runs it, with this interpreter and checkout, no install step."""
    full = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_INSTALL": "0", **env}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full.get("PYTHONPATH")) if p)
    full.pop("REQUIRE_GPU", None)
    full.pop("MLFLOW_TRACKING_URI", None)
    full["SAM_BENCH_CACHE"] = str(tmp_path / "ckpt-cache")
    full["HF_HUB_OFFLINE"] = "1"
    return subprocess.run(
        ["bash", str(SCRIPT), *args, str(tmp_path / "out")],
        cwd=tmp_path, env=full, capture_output=True, text=True, timeout=3000, check=False,
    )  # fmt: skip


def result_lines(stdout: str) -> dict[str, str]:
    """``{step: PASS|FAIL|SKIP}`` from the lines ``gpu_check: PASS amg (12 s): ...``."""
    found = re.findall(r"^gpu_check: (PASS|FAIL|SKIP) ([\w-]+)", stdout, flags=re.M)
    return {step: verdict for verdict, step in found}


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_dry_run_lists_every_step_on_cuda(tmp_path: Path) -> None:
    proc = gpu_check(tmp_path, "--dry-run", GPU_CHECK_INSTALL="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for step in STEPS:
        assert f"DRY-RUN {step}:" in proc.stdout, step
    sweeps = [line for line in proc.stdout.splitlines() if " -m sam_bench -m " in line]
    assert len(sweeps) == 4 and all("device=cuda" in line for line in sweeps)
    tasks = ["task=prompted", "task=video", "task=semantic"]
    assert all(any(t in line for line in sweeps) for t in tasks)
    assert "make test-gpu REQUIRE_GPU=1" in proc.stdout.replace("make    ", "make ")
    assert "nothing ran" in proc.stdout
    assert not (tmp_path / "out" / "amg").exists()  # nothing ran


def test_without_cuda_each_step_fails_with_its_reason(tmp_path: Path) -> None:
    status = cuda_status()
    if status.available:
        pytest.skip("CUDA is usable here: the steps would pass")
    proc = gpu_check(tmp_path, GPU_CHECK_STEPS="cuda install amg")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert result_lines(out) == {"cuda": "FAIL", "install": "SKIP", "amg": "FAIL"}
    cuda_line = next(line for line in out.splitlines() if line.startswith("gpu_check: FAIL cuda"))
    assert "CUDA is not available here" in cuda_line and status.reason[:40] in cuda_line
    amg_line = next(line for line in out.splitlines() if line.startswith("gpu_check: FAIL amg"))
    assert "(log: " in amg_line
    assert (
        "cuda was requested but CUDA is unavailable" in (tmp_path / "out" / "amg.log").read_text()
    )
    assert out.rstrip().endswith("gpu_check: FAILED: cuda amg")


@pytest.mark.slow
def test_on_the_cpu_every_sweep_step_passes_and_the_cuda_steps_fail(tmp_path: Path) -> None:
    """GPU_CHECK_DEVICE=cpu: the four task sweeps run (random weights, tiny inputs) and pass;
    the cuda step and make test-gpu REQUIRE_GPU=1 fail here; the exit status says so."""
    if cuda_status().available:
        pytest.skip("CUDA is usable here")
    proc = gpu_check(
        tmp_path, GPU_CHECK_DEVICE="cpu",
        GPU_CHECK_STEPS="cuda test-gpu amg prompted video semantic",
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:] + proc.stderr[-2000:]
    assert result_lines(out) == {
        "cuda": "FAIL", "test-gpu": "FAIL", "amg": "PASS", "prompted": "PASS", "video": "PASS",
        "semantic": "PASS",
    }, out[-4000:]  # fmt: skip
    assert "GPU tests were required" in (tmp_path / "out" / "test-gpu.log").read_text()
    for task in ("amg", "prompted", "video", "semantic"):
        assert (tmp_path / "out" / task / "summary.csv").is_file(), task
    assert re.search(r"status=ok\s+device=cpu", out)
    assert out.rstrip().endswith("gpu_check: FAILED: cuda test-gpu")
