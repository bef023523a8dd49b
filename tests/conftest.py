"""Shared pytest helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
"""The licensed samples and docs shared next to the repository (``../shared``); may be absent."""


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is absent."""
    data = SHARED_DIR / "data"
    if not data.is_dir():
        pytest.skip(f"shared data not found at {data}")
    return data


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    """sam2.1 Hiera-tiny with random weights (the real architecture; no checkpoint needed).
    Shared by the tests that compare engines and decoders; none of them changes weights."""
    import torch

    from sam_bench.config import ModelConfig
    from sam_bench.models.build import build_model

    cfg = ModelConfig(
        name="sam2.1_hiera_tiny", family="sam2.1", size="tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml", checkpoint_file="x.pt",
        url="http://127.0.0.1:9/x.pt", weights="random",
    )  # fmt: skip
    model, _ = build_model(cfg, torch.device("cpu"), seed=0, progress=False)
    return model


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sam_bench ARGS`` in ``cwd`` as a user would, isolated from this shell:
    an empty checkpoint cache under ``cwd`` and no inherited ``MLFLOW_TRACKING_URI`` (only what
    ``env`` sets)."""
    full_env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache")}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (full_env.get("PYTHONPATH", ""), str(REPO)) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "sam_bench", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture
def hydra_conf() -> Iterator[None]:
    """Hydra's compose API initialised on sam_bench's packaged configs (cleared after)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from sam_bench.config import CONF_DIR, register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


# ------------------------------------------------------------------ the GPU tier (make test-gpu)
# On a machine that should have CUDA (`--require-gpu` or REQUIRE_GPU=1: `make test-gpu
# REQUIRE_GPU=1`, benchmarks/gpu_check.sh) a run in which no test marked gpu ran fails: every
# gpu test skipped (CUDA unusable) must not look like a pass. Elsewhere each gpu test is skipped
# with the reason, and the run passes.

REQUIRE_GPU_ENV = "REQUIRE_GPU"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-gpu",
        action="store_true",
        default=False,
        help="fail the run when no test marked gpu ran (CUDA expected here); also "
        f"{REQUIRE_GPU_ENV}=1",
    )


def gpu_required(option: bool, env: Mapping[str, str]) -> bool:
    """Whether this run must run gpu tests: ``--require-gpu``, or ``REQUIRE_GPU`` set to 1 /
    true / yes / on."""
    return option or env.get(REQUIRE_GPU_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def gpu_requirement_failure(required: bool, ran: list[str], skipped: list[str]) -> str | None:
    """The message that fails a run which required the GPU tier and ran none of its tests
    (``ran``: gpu tests that ran, passed or failed; ``skipped``: the skip reasons of the
    others); ``None`` when there is nothing to fail."""
    if not required or ran:
        return None
    why = "; ".join(sorted(set(skipped))) if skipped else "no test marked gpu was selected"
    return (
        f"GPU tests were required (--require-gpu / {REQUIRE_GPU_ENV}=1) but none ran "
        f"({len(skipped)} skipped): {why}"
    )


class GpuTier:
    """Counts the gpu tests that ran (passed or failed) and why the others skipped; fails
    the run at its end when the GPU tier was required and none ran."""

    def __init__(self, required: bool) -> None:
        self.required = required
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.failure: str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "gpu" not in report.keywords:
            return
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.skipped.append(reason.removeprefix("Skipped: "))
        elif report.when == "call":
            self.ran.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.failure = gpu_requirement_failure(self.required, self.ran, self.skipped)
        if self.failure and session.exitstatus in (
            pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED,
        ):  # fmt: skip
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.failure:
            terminalreporter.section("GPU tier", sep="=", red=True, bold=True)
            terminalreporter.line(f"FAILED: {self.failure}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    required = gpu_required(config.getoption("--require-gpu"), os.environ)
    config.pluginmanager.register(GpuTier(required), "sam_bench_gpu_tier")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` where CUDA is unavailable, saying why (the reason from
    :func:`sam_bench.environment.cuda_status`: no CUDA build, no driver, driver too old...)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return
    from sam_bench.environment import cuda_status

    status = cuda_status()
    if status.available:
        return
    skip = pytest.mark.skip(reason=f"CUDA not available: {status.reason}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def fp32_settings() -> Iterator[None]:
    """Restores torch's float32 numerics settings (TF32 flags, matmul precision, per-backend
    ``fp32_precision``) after a test that changes them, and checks they are restored: the
    legacy setters do not undo what they change in the newer per-backend settings."""
    import torch

    from sam_bench.environment import numerics

    backends = torch.backends
    objs = {}
    for path in ("cuda.matmul", "cudnn.conv", "mkldnn.matmul", "mkldnn.conv"):
        obj: Any = backends
        for name in path.split("."):
            obj = getattr(obj, name, None)
        if obj is not None and hasattr(obj, "fp32_precision"):
            objs[path] = (obj, obj.fp32_precision)
    before = numerics()
    matmul, cudnn_tf32 = torch.get_float32_matmul_precision(), backends.cudnn.allow_tf32
    yield
    torch.set_float32_matmul_precision(matmul)
    backends.cudnn.allow_tf32 = cudnn_tf32
    for obj, value in objs.values():
        obj.fp32_precision = value
    assert numerics() == before, "the test left torch's float32 settings changed"
