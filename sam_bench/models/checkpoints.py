"""Find, download and verify SAM 2 checkpoint files.

Lookup order (:func:`resolve_checkpoint`): an explicit ``model.checkpoint`` path, then the cache
(:func:`cache_dir`), then a download of ``model.url`` into the cache. Downloads use only the
standard library: a short connect timeout so a machine without network fails at once, a longer
read timeout, a temporary file that is renamed into place only when complete, so the cache never
holds a partial checkpoint. When nothing works, :class:`CheckpointUnavailable` carries a message
that alone tells the user how to go on (it is printed without a traceback).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sam_bench.config import ModelConfig
from sam_bench.errors import CheckpointUnavailable
from sam_bench.files import CACHE_ENV, remember_sha256, sha256_file

READ_TIMEOUT = 60.0
"""Seconds without any data after which a started download is abandoned."""

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Folder holding downloaded checkpoints.

    ``$SAM_BENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/sam_bench/checkpoints``, else
    ``~/.cache/sam_bench/checkpoints``. The folder is not created here.
    """
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sam_bench" / "checkpoints"


# --------------------------------------------------------------------------------------------
# hashing (files: sam_bench.files.sha256_file)


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 identifying the exact values of a state dict.

    For every key in sorted order it hashes the key, the tensor's dtype, its shape and its raw
    bytes (copied to CPU, made contiguous; native little-endian layout). Equal dicts give equal
    hashes in any process or machine, so this proves that ``model.weights=random`` built the same
    weights in two runs; changing any single value changes the hash. Non-tensor values raise
    :class:`TypeError`.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        header = f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode()
        digest.update(len(header).to_bytes(8, "little") + header)
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_sha256(cfg: ModelConfig, path: Path) -> None:
    if not cfg.sha256:
        return
    actual = sha256_file(path)
    if actual.lower() != cfg.sha256.strip().lower():
        raise CheckpointUnavailable(
            f"Checkpoint {path} for model {cfg.name} has sha256 {actual},\n"
            f"but model.sha256 expects {cfg.sha256}.\n"
            "The file is corrupt or another checkpoint: replace it (a deleted cache file is "
            "downloaded again) or fix model.sha256."
        )


# --------------------------------------------------------------------------------------------
# download


class _DownloadFailed(Exception):
    """Internal: the download did not complete; the message is a one-line reason."""


class _HTTPConnection(http.client.HTTPConnection):
    """Connects under ``timeout``, then reads under ``read_timeout``."""

    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _HTTPSConnection(_HTTPConnection, http.client.HTTPSConnection):
    """Connects (TCP and TLS) under ``timeout``, then reads under ``read_timeout``."""


class _Handler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """Opens http and https URLs with the connections above (replaces both default handlers)."""

    read_timeout = READ_TIMEOUT

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        conn: Any = _HTTPConnection
        return self.do_open(conn, req, read_timeout=self.read_timeout)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        conn: Any = _HTTPSConnection
        ctx = self._context  # type: ignore[attr-defined]
        return self.do_open(conn, req, context=ctx, read_timeout=self.read_timeout)


def _describe(exc: BaseException, url: str, connect_timeout: float, read_timeout: float) -> str:
    """One line saying why a download failed."""
    host = urllib.parse.urlsplit(url).netloc or url
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason} from {host}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve host {host} ({reason.strerror}); no network?"
        if isinstance(reason, TimeoutError):
            return f"no connection to {host} within {connect_timeout:g} s; no network?"
        if isinstance(reason, ConnectionRefusedError):
            return f"connection to {host} refused"
        text = str(reason)
    elif isinstance(exc, TimeoutError):
        return f"download from {host} stalled (no data for {read_timeout:g} s)"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def _download(
    url: str,
    dest: Path,
    expected_sha256: str | None,
    *,
    progress: bool,
    timeouts: tuple[float, float],
) -> str:
    """Download ``url`` to ``dest`` atomically; return the sha256 of the bytes received.

    ``timeouts`` is (connect, read) in seconds. Raises :class:`_DownloadFailed` on transfer
    errors, a short or empty body, or a sha256 other than ``expected_sha256``. On any exception,
    KeyboardInterrupt included, the temporary file is removed and ``dest`` is not written.
    """
    tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
    handler = _Handler()
    handler.read_timeout = timeouts[1]
    request = urllib.request.Request(url, headers={"User-Agent": "sam_bench"})
    digest, received = hashlib.sha256(), 0
    bar_args = dict(unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name)
    try:
        try:
            opener = urllib.request.build_opener(handler)
            with opener.open(request, timeout=timeouts[0]) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                dest.parent.mkdir(parents=True, exist_ok=True)  # only once the server answered
                bar = tqdm(total=total, disable=not progress, **bar_args)
                with open(tmp, "wb") as f, bar:
                    while block := resp.read(_CHUNK):
                        f.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
                    f.flush()
                    os.fsync(f.fileno())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _DownloadFailed(_describe(exc, url, *timeouts)) from exc
        actual = digest.hexdigest()
        if total is not None and received != total:
            raise _DownloadFailed(f"connection closed after {received} of {total} bytes")
        if received == 0:
            raise _DownloadFailed("the server sent an empty file")
        if expected_sha256 and actual != expected_sha256.strip().lower():
            raise _DownloadFailed(
                f"the download has sha256 {actual} but model.sha256 is {expected_sha256}"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remember_sha256(dest, actual)
    return actual


def _unavailable_message(cfg: ModelConfig, dest: Path, reason: str) -> str:
    file = cfg.checkpoint_file
    return (
        f"Pretrained checkpoint of model {cfg.name} is not available.\n"
        f"  file:   {file}\n"
        f"  url:    {cfg.url}\n"
        f"  reason: {reason}\n"
        "To go on, do one of:\n"
        f"  - download it yourself and put it at {dest}\n"
        f"    (set {CACHE_ENV}=/some/folder to use another cache folder)\n"
        f"  - pass its path: model.checkpoint=/path/to/{file}\n"
        "  - measure speed only, with untrained weights: model.weights=random"
    )


# --------------------------------------------------------------------------------------------
# public entry point


def resolve_checkpoint(
    cfg: ModelConfig,
    *,
    download: bool = True,
    progress: bool = True,
    connect_timeout: float = 5.0,
    read_timeout: float = READ_TIMEOUT,
) -> Path:
    """Absolute path of the checkpoint file of ``cfg``, downloading it if needed.

    Order: ``cfg.checkpoint`` (must exist), then ``cache_dir() / cfg.checkpoint_file``, then a
    download of ``cfg.url`` into the cache (skipped when ``download`` is false). When
    ``cfg.sha256`` is set the file found or downloaded must match it (a mismatching download
    is not kept). ``progress`` shows a tqdm bar in bytes.

    Raises :class:`CheckpointUnavailable` with a self-sufficient message when the explicit file
    is missing, the hash does not match, or the file is absent and cannot be downloaded.
    """
    if cfg.checkpoint:
        explicit = Path(cfg.checkpoint).expanduser()
        if not explicit.is_file():
            raise CheckpointUnavailable(
                f"model.checkpoint={cfg.checkpoint}: no such file "
                f"(looked for {explicit.absolute()}).\n"
                "Fix the path, or drop model.checkpoint to use the cache / download."
            )
        explicit = explicit.resolve()
        _check_sha256(cfg, explicit)
        return explicit

    dest = cache_dir().expanduser().absolute() / cfg.checkpoint_file
    if dest.is_file():
        _check_sha256(cfg, dest)
        return dest

    if not download:
        reason = "not in the cache, and downloading is disabled"
    elif not cfg.url or cfg.url == "???":
        reason = "not in the cache, and model.url is not set"
    else:
        timeouts = (connect_timeout, read_timeout)
        try:
            _download(cfg.url, dest, cfg.sha256, progress=progress, timeouts=timeouts)
            return dest
        except _DownloadFailed as exc:
            reason = str(exc)
    raise CheckpointUnavailable(_unavailable_message(cfg, dest, reason))
