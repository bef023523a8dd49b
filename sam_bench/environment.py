"""What a result was measured on: device, versions, CPU, threads, git commit."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from sam_bench import __version__
from sam_bench.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is a config error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was requested but torch sees no CUDA device")
    return torch.device(name)


def cuda_extension_present() -> bool:
    """Whether sam2 was built with its CUDA extension (``sam2._C``, connected components)."""
    try:
        return importlib.util.find_spec("sam2._C") is not None
    except (ImportError, ValueError):
        return False


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> dict[str, Any]:
    """Commit of the sam_bench source tree (``None`` for an installed wheel), and dirtiness."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty)}


def describe(device: torch.device, dtype: str) -> dict[str, Any]:
    """The environment block of ``result.json``."""
    dev_name = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu: {cpu_model()}"
    )
    return {
        "sam_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "sam2": _version("sam2"),
        "numpy": _version("numpy"),
        "pycocotools": _version("pycocotools"),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": dev_name,
        "cuda_version": torch.version.cuda if device.type == "cuda" else None,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": dtype,
        "cuda_extension": cuda_extension_present(),
        **{f"git_{k}": v for k, v in git_commit().items()},
    }
