"""Checkpoint resolution: explicit path, cache, real downloads from a loopback HTTP server."""

from __future__ import annotations

import _thread
import hashlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from sam_bench.config import ModelConfig
from sam_bench.errors import CheckpointUnavailable, SamBenchError
from sam_bench.models.checkpoints import (
    cache_dir,
    resolve_checkpoint,
    sha256_file,
    state_dict_hash,
)

FILE = "sam2.1_hiera_tiny.pt"
PAYLOAD = os.urandom(300_000) + b"end-of-checkpoint"  # several read chunks, not round


def make_cfg(url: str = "http://127.0.0.1:9/none.pt", **kw: Any) -> ModelConfig:
    return ModelConfig(
        name="sam2.1_hiera_tiny",
        family="sam2.1",
        size="tiny",
        sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
        checkpoint_file=FILE,
        url=url,
        **kw,
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("SAM_BENCH_CACHE", str(d))
    return d


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        if self.path == "/ok.pt":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/truncated.pt":  # promises more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) * 2))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            self.close_connection = True
        elif self.path == "/interrupt.pt":  # Ctrl-C arrives in the middle of the body
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD) * 2))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            _thread.interrupt_main()
            # The interrupt lands when the client's read loop next runs Python code: trickle
            # the rest over seconds so that happens mid-body even on a loaded machine.
            rest = PAYLOAD[1000:]
            step = max(len(rest) // 50, 1)
            try:
                for i in range(0, len(rest), step):
                    self.wfile.write(rest[i : i + step])
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client went away, as it should
                pass
        elif self.path == "/stall.pt":  # accepts, never answers
            time.sleep(3)
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# ------------------------------------------------------------------------------------------


def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAM_BENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "sam_bench" / "checkpoints"
    monkeypatch.setenv("SAM_BENCH_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_explicit_checkpoint_used(cache: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "elsewhere.pt"
    ckpt.write_bytes(b"weights")
    got = resolve_checkpoint(make_cfg(checkpoint=str(ckpt)), download=False)
    assert got == ckpt.resolve()
    assert not cache.exists()  # neither cache nor network touched


def test_explicit_checkpoint_missing_names_path(cache: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / FILE
    with pytest.raises(CheckpointUnavailable) as err:
        resolve_checkpoint(make_cfg(checkpoint=str(missing)))
    assert str(missing) in str(err.value)
    assert isinstance(err.value, SamBenchError)


def test_cached_file_found(cache: Path) -> None:
    cache.mkdir()
    (cache / FILE).write_bytes(b"cached")
    assert resolve_checkpoint(make_cfg(), download=False) == cache / FILE


def test_not_cached_and_download_disabled(cache: Path) -> None:
    with pytest.raises(CheckpointUnavailable, match="downloading is disabled"):
        resolve_checkpoint(make_cfg(), download=False)


def test_real_download_lands_in_cache(cache: Path, server: str) -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    cfg = make_cfg(f"{server}/ok.pt", sha256=digest.upper())
    got = resolve_checkpoint(cfg, progress=False)
    assert got == cache / FILE
    assert got.read_bytes() == PAYLOAD
    assert sha256_file(got) == digest
    assert leftovers(cache) == [FILE]
    # second call: served from the cache (the URL is now unreachable)
    cfg2 = make_cfg(f"http://127.0.0.1:{closed_port()}/ok.pt", sha256=digest)
    assert resolve_checkpoint(cfg2, progress=False) == got


def test_dropped_connection_leaves_nothing(cache: Path, server: str) -> None:
    url = f"{server}/truncated.pt"
    with pytest.raises(CheckpointUnavailable) as err:
        resolve_checkpoint(make_cfg(url), progress=False)
    msg = str(err.value)
    assert url in msg and f"{len(PAYLOAD)} of {2 * len(PAYLOAD)} bytes" in msg
    assert leftovers(cache) == []


def test_keyboard_interrupt_leaves_nothing(cache: Path, server: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        resolve_checkpoint(make_cfg(f"{server}/interrupt.pt"), progress=False)
    assert leftovers(cache) == []


def test_unreachable_url_fails_fast_with_full_message(cache: Path, monkeypatch) -> None:
    """One connection attempt (no retries, no waiting), then one message saying what to do."""
    import urllib.request

    attempts: list[str] = []
    real_open = urllib.request.OpenerDirector.open

    def counting_open(self, fullurl, *args, **kwargs):  # type: ignore[no-untyped-def]
        attempts.append(str(getattr(fullurl, "full_url", fullurl)))
        return real_open(self, fullurl, *args, **kwargs)

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", counting_open)
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail(f"waited {s} s before failing"))
    url = f"http://127.0.0.1:{closed_port()}/{FILE}"
    with pytest.raises(CheckpointUnavailable) as err:
        resolve_checkpoint(make_cfg(url), progress=False, connect_timeout=5.0)
    assert attempts == [url]
    msg = str(err.value)
    for part in (
        "sam2.1_hiera_tiny",
        url,
        str(cache / FILE),
        "SAM_BENCH_CACHE",
        f"model.checkpoint=/path/to/{FILE}",
        "model.weights=random",
        "refused",
    ):
        assert part in msg, part
    assert "Traceback" not in msg
    assert not cache.exists()  # an offline machine does not even get an empty cache folder


def test_http_error_reported(cache: Path, server: str) -> None:
    with pytest.raises(CheckpointUnavailable, match="HTTP 404"):
        resolve_checkpoint(make_cfg(f"{server}/missing.pt"), progress=False)
    assert leftovers(cache) == []


def test_stalled_server_hits_read_timeout(cache: Path, server: str) -> None:
    with pytest.raises(CheckpointUnavailable, match="stalled"):
        resolve_checkpoint(make_cfg(f"{server}/stall.pt"), progress=False, read_timeout=0.5)
    assert leftovers(cache) == []


def test_sha256_mismatch_on_download_not_kept(cache: Path, server: str) -> None:
    cfg = make_cfg(f"{server}/ok.pt", sha256="0" * 64)
    with pytest.raises(CheckpointUnavailable, match="sha256") as err:
        resolve_checkpoint(cfg, progress=False)
    assert hashlib.sha256(PAYLOAD).hexdigest() in str(err.value)
    assert leftovers(cache) == []


def test_sha256_mismatch_on_cached_and_explicit(cache: Path, tmp_path: Path) -> None:
    cache.mkdir()
    (cache / FILE).write_bytes(b"corrupt")
    with pytest.raises(CheckpointUnavailable, match=r"model\.sha256") as err:
        resolve_checkpoint(make_cfg(sha256="0" * 64))
    assert str(cache / FILE) in str(err.value)
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"other")
    with pytest.raises(CheckpointUnavailable, match=r"model\.sha256"):
        resolve_checkpoint(make_cfg(checkpoint=str(ckpt), sha256="0" * 64))
    ok = hashlib.sha256(b"other").hexdigest()
    assert resolve_checkpoint(make_cfg(checkpoint=str(ckpt), sha256=ok)) == ckpt.resolve()


def test_sha256_file_follows_changes(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == hashlib.sha256(b"abc").hexdigest()
    assert sha256_file(f, chunk=1) == hashlib.sha256(b"abc").hexdigest()  # memo hit
    f.write_bytes(b"abcd")  # size (and mtime) change: hashed again
    assert sha256_file(f) == hashlib.sha256(b"abcd").hexdigest()


def test_state_dict_hash() -> None:
    def sd() -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return {
            "b.weight": torch.randn(4, 3, generator=g),
            "a.bias": torch.arange(5, dtype=torch.bfloat16),
            "c.scalar": torch.tensor(1.5),
            "d.mask": torch.tensor([True, False]),
        }

    base = state_dict_hash(sd())
    assert base == state_dict_hash(dict(reversed(list(sd().items()))))  # order-independent
    assert base == state_dict_hash({k: v.t().contiguous().t() for k, v in sd().items()})
    changed = sd()
    changed["b.weight"][2, 1] += 1e-3
    assert state_dict_hash(changed) != base
    retyped = sd()
    retyped["d.mask"] = retyped["d.mask"].to(torch.uint8)  # same bytes, other dtype
    assert state_dict_hash(retyped) != base
    reshaped = sd()
    reshaped["b.weight"] = reshaped["b.weight"].reshape(3, 4)  # same bytes, other shape
    assert state_dict_hash(reshaped) != base
