"""Device resolution, the CUDA status and its reason, the numerics record (environment.py).

No GPU here: the CUDA situations are simulated by replacing what torch and the driver report
(``torch.cuda.is_available`` / ``init`` / ``device_count``, ``torch.version.cuda``, the driver
look-ups); the code under test is sam_bench's own handling of those answers.
"""

from __future__ import annotations

import logging

import pytest
import torch

from sam_bench import environment
from sam_bench.errors import ConfigError

CPU = torch.device("cpu")
TOO_OLD = (
    "The NVIDIA driver on your system is too old (found version 12040). Please update your "
    "GPU driver by downloading and installing a new version from the URL: "
    "http://www.nvidia.com/Download/index.aspx"
)


@pytest.fixture
def driver_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA 13.0 build of torch next to a driver that supports CUDA 12.4 at most: torch
    reports no device from is_available() and says why from init()."""

    def init() -> None:
        raise RuntimeError(TOO_OLD)

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", init)
    monkeypatch.setattr(environment, "_driver_version", lambda: "550.54.14")
    monkeypatch.setattr(environment, "_driver_cuda_version", lambda: "12.4")
    monkeypatch.setattr(environment, "_fallback_noted", False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """torch sees two CUDA devices; returns the indices passed to ``torch.cuda.set_device``."""
    chosen: list[int] = []
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_a_cuda_build_the_driver_cannot_run_says_why(driver_too_old: None) -> None:
    status = environment.cuda_status()
    assert not status.available and status.device_count == 0
    assert (status.torch_cuda, status.driver, status.driver_cuda) == ("13.0", "550.54.14", "12.4")
    assert status.reason is not None
    assert status.reason.startswith("The NVIDIA driver on your system is too old")  # torch's text
    assert "built for CUDA 13.0 but the driver 550.54.14 supports CUDA 12.4 at most" in (
        status.reason
    )


def test_device_cuda_fails_with_the_reason(driver_too_old: None) -> None:
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match="too old") as err:
            environment.resolve_device(name)
        text = str(err.value)
        assert "CUDA 13.0" in text and "550.54.14" in text and "12.4" in text


def test_device_auto_falls_back_to_cpu_with_one_warning(
    driver_too_old: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sam_bench.environment"):
        assert environment.resolve_device("auto") == CPU
        assert environment.resolve_device("auto") == CPU
    (rec,) = caplog.records  # once per process, not once per job
    assert rec.levelno == logging.WARNING  # a driver is installed: a GPU is probably there
    msg = rec.getMessage()
    assert "runs on the CPU" in msg and "too old (found version 12040)" in msg
    assert "supports CUDA 12.4 at most" in msg  # the version mismatch stays
    # one sentence, no URL (the whole reason is in the record: cuda_unavailable_reason)
    assert "http" not in msg and "www." not in msg and "Please" not in msg
    assert msg.endswith(").") and ". " not in msg


def test_first_sentence_drops_urls_and_what_follows() -> None:
    assert environment.first_sentence(TOO_OLD) == (
        "The NVIDIA driver on your system is too old (found version 12040)"
    )
    no_driver = (
        "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
        "installed a driver from http://www.nvidia.com/Download/index.aspx"
    )
    assert environment.first_sentence(no_driver) == "Found no NVIDIA driver on your system"
    assert environment.first_sentence("see https://x.org/a.b for torch 2.1.0") == (
        "see for torch 2.1.0"
    )


def test_the_record_holds_the_cuda_status(driver_too_old: None) -> None:
    env = environment.describe(CPU, "fp32")
    assert env["cuda_available"] is False
    assert env["cuda_torch"] == "13.0" and env["cuda_driver"] == "550.54.14"
    assert env["cuda_driver_supports"] == "12.4"
    assert env["cuda_unavailable_reason"] == environment.cuda_status().reason


def test_cuda_visible_devices_hiding_every_gpu_is_named(
    driver_too_old: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "init", lambda: None)  # nothing else to say
    monkeypatch.setattr(environment, "_driver_cuda_version", lambda: "13.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert environment.cuda_status().reason == "CUDA_VISIBLE_DEVICES='' hides every GPU"


def test_a_cpu_build_needs_no_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    monkeypatch.setattr(environment, "_fallback_noted", False)
    status = environment.cuda_status()
    assert not status.available and status.reason is not None
    assert "built without CUDA" in status.reason
    with caplog.at_level(logging.INFO, logger="sam_bench.environment"):
        assert environment.resolve_device("auto") == CPU
    assert not caplog.records
    with pytest.raises(ConfigError, match="built without CUDA"):
        environment.resolve_device("cuda")


def test_cuda_n_is_checked_against_the_device_count(two_gpus: list[int]) -> None:
    assert environment.resolve_device("cuda") == torch.device("cuda")
    assert environment.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert two_gpus == [1]  # cuda:1 became the current device
    with pytest.raises(ConfigError, match=r"sees 2 CUDA device\(s\): cuda:0 to cuda:1"):
        environment.resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:-1", "cuda1", "CUDA"])
def test_unknown_device_names_are_config_errors(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        environment.resolve_device(name)


def test_auto_and_cpu_on_this_machine() -> None:
    assert environment.resolve_device("cpu") == CPU
    expected = "cuda" if environment.cuda_status().available else "cpu"
    assert environment.resolve_device("auto").type == expected


def test_gpu_worker_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    warn = environment.warn_gpu_workers
    assert warn(CPU, 4) is None and warn("cpu", 4) is None
    assert warn(torch.device("cuda"), 1) is None and warn("cuda", 1) is None
    text = warn(torch.device("cuda", 0), 3)
    assert text is not None and "3 concurrent workers on cuda:0" in text
    assert "same GPU" in text
    assert warn("cuda:1", 2) is not None
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", lambda: None)
    assert warn("auto", 2) is None  # auto runs on the CPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert warn("auto", 2) is not None


@pytest.mark.usefixtures("fp32_settings")
def test_numerics_follow_the_torch_settings() -> None:
    torch.backends.cudnn.allow_tf32 = True
    assert environment.numerics()["cudnn_allow_tf32"] is True
    torch.backends.cudnn.allow_tf32 = False
    assert environment.numerics()["cudnn_allow_tf32"] is False
    torch.set_float32_matmul_precision("high")
    got = environment.numerics()
    assert got["float32_matmul_precision"] == "high" and got["cuda_matmul_allow_tf32"] is True
    torch.set_float32_matmul_precision("highest")
    got = environment.numerics()
    assert got["float32_matmul_precision"] == "highest" and got["cuda_matmul_allow_tf32"] is False
    env = environment.describe(CPU, "fp32")
    assert {k: env[k] for k in got} == got  # the record holds them all
    assert env["cudnn_version"] == (
        torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    )


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC "
         "2023\nGCC version:  gcc version 12.2.0", "535.104.05"),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.14  Release Build  "
         "(dvs-builder@U16-I3-B03-4-3)  Thu Feb 22 01:25:25 UTC 2024", "550.54.14"),
        ("", None),
    ],
)  # fmt: skip
def test_driver_version_from_proc(text: str, version: str | None) -> None:
    assert environment.parse_proc_driver_version(text) == version


def test_a_multirun_with_several_workers_on_one_gpu_warns_once(caplog) -> None:
    import logging

    from omegaconf import OmegaConf

    from sam_bench.sweep_end import warn_gpu_workers as warn_sweep

    def sweep(device: str, n_jobs: int):
        return OmegaConf.create({"device": device, "hydra": {"launcher": {"n_jobs": n_jobs}}})

    with caplog.at_level(logging.WARNING):
        warn_sweep(sweep("cuda:0", 2))
        warn_sweep(sweep("cpu", 2))
        warn_sweep(sweep("cuda", 1))
    texts = [r.getMessage() for r in caplog.records]
    assert len(texts) == 1 and "2 concurrent workers on cuda:0" in texts[0]
