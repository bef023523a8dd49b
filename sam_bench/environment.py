"""What a result was measured on: device, versions, CPU, threads, numerics, git commit.

Also where the device is decided (:func:`resolve_device`) and why CUDA cannot be used when it
cannot (:func:`cuda_status`): a CUDA build of torch whose CUDA runtime is newer than the
driver supports, for one, reports no CUDA device and would otherwise run on the CPU silently.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import re
import shutil
import subprocess
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sam_bench import __version__
from sam_bench.errors import ConfigError

log = logging.getLogger(__name__)

_CUDA_DEVICE = re.compile(r"cuda(?::(\d+))?")
_fallback_noted = False


@dataclass(frozen=True)
class CudaStatus:
    """Whether this process can use CUDA, and if not, why (see :func:`cuda_status`)."""

    torch_cuda: str | None
    """CUDA runtime torch was built with (``torch.version.cuda``); ``None``: no CUDA build."""
    torch_hip: str | None
    """ROCm (HIP) version of a ROCm build of torch (``torch.version.hip``), which also serves
    ``device=cuda``."""
    driver: str | None
    """NVIDIA driver version (kernel module or ``nvidia-smi``), when one is found."""
    driver_cuda: str | None
    """Newest CUDA version the installed driver supports (``cuDriverGetVersion``)."""
    available: bool
    device_count: int
    reason: str | None
    """Why CUDA cannot be used (``None`` when it can): torch's own error text first."""

    def describe(self) -> str:
        """One line for logs and errors: versions and the reason."""
        drv = self.driver or "not found"
        if self.driver_cuda:
            drv += f", supports CUDA {self.driver_cuda}"
        built = (
            f"CUDA {self.torch_cuda}"
            if self.torch_cuda
            else f"HIP {self.torch_hip}"
            if self.torch_hip
            else "CPU only"
        )
        text = f"torch {torch.__version__} ({built}), NVIDIA driver {drv}"
        return f"{text}: {self.reason}" if self.reason else text

    def brief(self) -> str:
        """One sentence for the console: torch's build and the first sentence of each reason,
        without URLs (the whole reason is recorded in ``environment.cuda_unavailable_reason``)."""
        if self.torch_cuda:
            built = f"CUDA {self.torch_cuda}"
        else:
            built = f"HIP {self.torch_hip}" if self.torch_hip else "CPU only"
        parts = [f"torch {torch.__version__} is built for {built}"]
        for reason in (self.reason or "").split("; "):
            first = first_sentence(reason)
            if first[:2].istitle():  # "Found no ..." -> "found no ..." (not "CUDA_...")
                first = first[0].lower() + first[1:]
            if first and first not in parts:
                parts.append(first)
        return "; ".join(parts)


_URL = re.compile(r"\s*\(?\b(?:https?://|www\.)\S+")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` with URLs removed, no final full stop."""
    text = _URL.sub("", " ".join(text.split())).strip()
    m = re.search(r"(?<=[a-z0-9)\]])[.!?](\s|$)", text)
    first = text[: m.start()] if m else text
    return first.strip().rstrip(".:;, ")


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2])


@functools.cache
def _driver_cuda_version() -> str | None:
    """``cuDriverGetVersion`` from libcuda (needs no CUDA context), as ``"12.4"``."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            out = ctypes.c_int(0)
            if lib.cuDriverGetVersion(ctypes.byref(out)) != 0 or out.value <= 0:
                return None
        except (OSError, AttributeError):
            continue
        return f"{out.value // 1000}.{(out.value % 1000) // 10}"
    return None


def parse_proc_driver_version(text: str) -> str | None:
    """The driver version in ``/proc/driver/nvidia/version`` text (proprietary or open kernel
    module), e.g. ``"550.54.14"``."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return m.group(1) if m else None


@functools.cache
def _driver_version() -> str | None:
    """The NVIDIA driver's version: ``/proc/driver/nvidia/version``, else ``nvidia-smi``."""
    try:
        found = parse_proc_driver_version(Path("/proc/driver/nvidia/version").read_text())
    except OSError:
        found = None
    if found:
        return found
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def cuda_status() -> CudaStatus:
    """Whether torch can use CUDA here; when it cannot, the reason.

    The reason is what torch itself says (the error of ``torch.cuda.init()``, e.g. "The
    NVIDIA driver on your system is too old (found version 12040)", and any warning of
    ``torch.cuda.is_available()``), plus the CUDA version mismatch when torch is built for a
    newer CUDA than the driver supports, and ``CUDA_VISIBLE_DEVICES`` when it hides every GPU.
    """
    torch_cuda, torch_hip = torch.version.cuda, getattr(torch.version, "hip", None)
    driver, driver_cuda = _driver_version(), _driver_cuda_version()
    if torch_cuda is None and torch_hip is None:
        reason = f"torch {torch.__version__} is built without CUDA"
        return CudaStatus(None, None, driver, driver_cuda, False, 0, reason)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
    if available:
        count = torch.cuda.device_count()
        return CudaStatus(torch_cuda, torch_hip, driver, driver_cuda, True, count, None)
    reasons: list[str] = []
    try:
        torch.cuda.init()
    except Exception as e:  # torch's explanation: no driver, driver too old, ...
        reasons.append(" ".join(str(e).split()) or type(e).__name__)
    reasons += [" ".join(str(w.message).split()) for w in caught]
    if torch_cuda and driver_cuda and _version_tuple(driver_cuda) < _version_tuple(torch_cuda):
        reasons.append(
            f"torch is built for CUDA {torch_cuda} but the driver"
            f"{' ' + driver if driver else ''} supports CUDA {driver_cuda} at most"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        reasons.append(
            f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
            + hidden_gpu_hint(os.environ, in_ray_task())
        )
    if not reasons:
        reasons.append("torch sees no CUDA device")
    reason = "; ".join(dict.fromkeys(r for r in reasons if r))
    return CudaStatus(torch_cuda, torch_hip, driver, driver_cuda, False, 0, reason)


def in_ray_task() -> bool:
    """Whether this process is a Ray worker running a task (Ray sets its
    ``CUDA_VISIBLE_DEVICES`` to the GPUs the task reserved: none for ``num_gpus=0``)."""
    import sys

    ray: Any = sys.modules.get("ray")
    if ray is None:
        return False
    try:
        return bool(ray.is_initialized()) and (
            ray.get_runtime_context().worker.mode == ray.WORKER_MODE
        )
    except Exception:  # an old or partial Ray: no answer
        return False


def hidden_gpu_hint(env: Mapping[str, str], ray_task: bool) -> str:
    """Who hid the GPUs from this job, as a clause for the reason of :func:`cuda_status`
    (empty when unknown): a Ray task that reserved no GPU, or a SLURM / submitit job whose
    allocation has none."""
    if ray_task:
        return (
            " (Ray hides the GPUs from a task that reserved none: the launcher's num_gpus; "
            "sam_bench's presets reserve them from the job's device, see the README's "
            "Scale-out section)"
        )
    if "SUBMITIT_LOCAL_JOB_ID" in env or "SLURM_JOB_ID" in env:
        return " (the job's allocation has no GPU: the launcher's gpus_per_node)"
    return ""


#: What ``device=auto`` counts as when a launcher reserves GPUs for a job (the launching
#: machine cannot see the workers): ``this_machine`` (a GPU when CUDA is usable here: Ray or
#: submitit on this machine), ``cuda`` (a cluster of GPU nodes), ``cpu``.
AUTO_DEVICE_MEANINGS = ("this_machine", "cuda", "cpu")


def gpus_for_device(device: str, per_job: float = 1, auto_uses_gpu: bool = False) -> float:
    """GPUs a launcher (Ray, SLURM) reserves for a job, or a group of jobs, that runs on
    ``device``: none for ``cpu``; ``per_job`` for ``cuda`` / ``cuda:N`` (``1``: a GPU of its
    own; ``0.5``: two jobs share one; Ray only); for ``auto``, ``per_job`` when
    ``auto_uses_gpu`` (the workers have GPUs) else none. A whole number is returned as an
    ``int`` (SLURM's ``gpus_per_node`` is one). Raises :class:`ConfigError` for an unknown
    device or a ``per_job`` that is not a positive number."""
    if isinstance(per_job, bool) or not isinstance(per_job, int | float) or not per_job > 0:
        raise ConfigError("gpus per job", f"must be a number > 0, got {per_job!r}")
    if device == "cpu":
        return 0
    if device == "auto":
        wanted = auto_uses_gpu
    elif _CUDA_DEVICE.fullmatch(device):
        wanted = True
    else:
        raise ConfigError("device", f"unknown device {device!r} (auto, cpu, cuda or cuda:N)")
    if not wanted:
        return 0
    return int(per_job) if float(per_job).is_integer() else float(per_job)


def gpus_resolver(
    device: str, per_job: float = 1, auto: str = "this_machine", none: Any = 0
) -> float | None:
    """The ``${sam_bench.gpus:DEVICE,PER_JOB,AUTO,NONE}`` resolver of the launcher presets
    (``conf/hydra/launcher/``): :func:`gpus_for_device`, with ``AUTO`` one of
    :data:`AUTO_DEVICE_MEANINGS`, and ``NONE`` what to write for no GPU (SLURM presets: ``null``,
    so no ``--gpus-per-node`` line is written)."""
    if auto not in AUTO_DEVICE_MEANINGS:
        raise ConfigError(
            "sam_bench.gpus", f"auto must be one of {', '.join(AUTO_DEVICE_MEANINGS)}, got {auto!r}"
        )
    uses_gpu = auto == "cuda" or (auto == "this_machine" and cuda_status().available)
    gpus = gpus_for_device(str(device), per_job, uses_gpu)
    return gpus if gpus else none


def resolve_device(name: str) -> torch.device:
    """The device named by the ``device`` setting.

    ``auto``: CUDA when available, else the CPU; a CUDA build of torch that cannot use CUDA
    says why, once per process (a warning when an NVIDIA driver is installed, so a GPU is
    probably there; information otherwise). ``cuda`` / ``cuda:N`` without a usable CUDA device
    is a :class:`ConfigError` with the reason from :func:`cuda_status`; ``N`` must be below
    ``torch.cuda.device_count()``. For ``cuda:N`` the device also becomes torch's current
    CUDA device, so code that uses the current device (synchronisation, sam2's CUDA
    extension) works on it.
    """
    global _fallback_noted
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        status = cuda_status()
        if status.available:
            return torch.device("cuda")
        if (status.torch_cuda or status.torch_hip) and not _fallback_noted:
            _fallback_noted = True
            level = logging.WARNING if status.driver or status.driver_cuda else logging.INFO
            log.log(level, "device=auto runs on the CPU: CUDA is unavailable (%s).", status.brief())
        return torch.device("cpu")
    m = _CUDA_DEVICE.fullmatch(name)
    if m is None:
        raise ConfigError("device", f"unknown device {name!r} (auto, cpu, cuda or cuda:N)")
    status = cuda_status()
    if not status.available:
        raise ConfigError(
            "device", f"{name} was requested but CUDA is unavailable: {status.describe()}"
        )
    if m.group(1) is None:
        return torch.device("cuda")
    index, count = int(m.group(1)), torch.cuda.device_count()
    if index >= count:
        raise ConfigError(
            "device",
            f"{name} was requested but torch sees {count} CUDA device(s)"
            + (f": cuda:0 to cuda:{count - 1}" if count else ""),
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def warn_gpu_workers(device: torch.device | str, n_workers: int) -> str | None:
    """The warning to show when ``n_workers`` jobs run at once on one CUDA device (``None``
    when there is nothing to say): each worker loads its own model on the same GPU."""
    if n_workers <= 1:
        return None
    if isinstance(device, str):
        if device == "auto":
            if not cuda_status().available:
                return None
            device = "cuda"
        if _CUDA_DEVICE.fullmatch(device) is None:
            return None
    elif device.type != "cuda":
        return None
    return (
        f"{n_workers} concurrent workers on {device}: each loads its own model on the same GPU "
        "and they share its memory and compute, so latency_ms_* and peak_gpu_mem_mb depend on "
        "what the other workers do, and large models may run out of memory; run one worker at "
        "a time for timing"
    )


@functools.cache
def cuda_extension_status() -> tuple[bool, str | None]:
    """Whether sam2's CUDA extension (``sam2._C``, connected components) loads: ``(loads,
    error)``. It is imported once to check; ``error`` says why a built extension does not
    load (``None`` when it loads or was never built)."""
    try:
        spec = importlib.util.find_spec("sam2._C")
    except (ImportError, ValueError):
        return False, None
    if spec is None:
        return False, None
    try:
        module = importlib.import_module("sam2._C")
    except Exception as e:  # built for another torch / CUDA, missing libraries, ...
        return False, f"{type(e).__name__}: {e}"
    if not callable(getattr(module, "get_connected_componnets", None)):
        return False, "sam2._C has no get_connected_componnets"
    return True, None


def cuda_extension_built() -> bool:
    """Whether sam2 was installed with its CUDA extension (a ``sam2._C`` file is there; it may
    still fail to load: :func:`cuda_extension_status`)."""
    try:
        return importlib.util.find_spec("sam2._C") is not None
    except (ImportError, ValueError):
        return False


def cuda_extension_present() -> bool:
    """Whether sam2's CUDA extension is built and loads (see :func:`cuda_extension_status`)."""
    return cuda_extension_status()[0]


def _fp32_precision(path: str) -> str | None:
    """``torch.backends.<path>.fp32_precision`` (torch >= 2.9), ``None`` where torch lacks it."""
    obj: Any = torch.backends
    for name in path.split("."):
        obj = getattr(obj, name, None)
    value = getattr(obj, "fp32_precision", None)
    return None if value is None else str(value)


def numerics() -> dict[str, Any]:
    """The float32 settings that change results: TF32 for CUDA matmuls and cuDNN convolutions
    (on by default for convolutions: "fp32" runs as TF32 on Ampere and newer GPUs), the
    float32 matmul precision, the per-backend ``fp32_precision`` of newer torch (oneDNN on the
    CPU included), and the cuDNN version."""
    cudnn = torch.backends.cudnn
    return {
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        **{
            f"{path.replace('.', '_')}_fp32_precision": _fp32_precision(path)
            for path in ("cuda.matmul", "cudnn.conv", "mkldnn.matmul", "mkldnn.conv")
        },
        "cudnn_version": cudnn.version() if cudnn.is_available() else None,
    }


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
    """The environment block of ``result.json``.

    Besides versions and hardware: whether CUDA is usable and why not (``cuda_*``), whether
    sam2's CUDA extension loads (``cuda_extension``: it was imported; ``cuda_extension_built``:
    sam2 was installed with it, ``make install`` with ``SAM2_BUILD_CUDA=1``;
    ``cuda_extension_error``: why a built one does not load), and the
    float32 numerics settings (:func:`numerics`)."""
    cuda = cuda_status()
    ext_loads, ext_error = cuda_extension_status()
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
        "cuda_extension": ext_loads,
        "cuda_extension_built": cuda_extension_built(),
        "cuda_extension_error": ext_error,
        "cuda_torch": cuda.torch_cuda,
        "cuda_driver": cuda.driver,
        "cuda_driver_supports": cuda.driver_cuda,
        "cuda_available": cuda.available,
        "cuda_unavailable_reason": cuda.reason,
        **numerics(),
        **{f"git_{k}": v for k, v in git_commit().items()},
    }
