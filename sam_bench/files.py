"""File helpers shared by every layer: the cache folder's environment variable and a memoised
file hash.

Below ``data`` and ``models`` (it imports nothing of sam_bench), so datasets, checkpoints and
config identities hash files the same way without importing each other (or torch).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

CACHE_ENV = "SAM_BENCH_CACHE"
"""Environment variable naming the cache folder (checkpoints; extracted video frames below
it)."""

_CHUNK = 1 << 20

_SHA256_MEMO: dict[tuple[str, int, int], str] = {}
_MEMO_LOCK = threading.Lock()


def _memo_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def sha256_file(path: Path, chunk: int = _CHUNK) -> str:
    """Hex sha256 of a file, memoised per process on (resolved path, size, mtime), so a
    checkpoint of several hundred MB is hashed once however often it is asked for."""
    path = Path(path)
    key = _memo_key(path)
    with _MEMO_LOCK:
        if key in _SHA256_MEMO:
            return _SHA256_MEMO[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    with _MEMO_LOCK:
        _SHA256_MEMO[key] = digest.hexdigest()
    return digest.hexdigest()


def remember_sha256(path: Path, digest: str) -> None:
    """Record ``digest`` as the sha256 of ``path`` as it is now (a file whose bytes were hashed
    while it was written), so :func:`sha256_file` does not read it again."""
    key = _memo_key(Path(path))
    with _MEMO_LOCK:
        _SHA256_MEMO[key] = digest
