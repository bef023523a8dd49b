"""An optional on-disk cache of image-encoder outputs, shared across commands (``cache.dir``).

What ``SAM2ImagePredictor.set_image`` leaves on the predictor (``_features``: the image
embedding and the high-resolution feature maps, ``_orig_hw``, ``_is_batch``) is stored per
encoded image, with the seconds the encoder took, so a later command with the same model and
image restores it instead of running the encoder. Only ``engine=fast`` uses it.

* **Content-addressed.** An entry's name is the sha256 of its key: the weights'
  ``state_dict_hash``, the model (name and sam2 config), dtype, device type and name, the sam2
  and torch versions, the float32 numerics settings (TF32, matmul precision, cuDNN version),
  and the exact array fed to ``set_image`` (sha256 of its bytes, shape and dtype; it is the
  preprocessed crop, so preprocessing and crop boxes are covered). Entries live in
  ``<dir>/<first 2 hex digits>/<sha256>.pt``.
* **Exact.** A restored entry holds the very tensors ``set_image`` produced (same dtype, same
  strides), so the masks are bit-identical to running the encoder.
* **Safe to share.** Writes go to a temporary file in the entry's folder, then
  ``os.replace``: parallel jobs (``hydra/launcher=joblib``) may share a folder. An unreadable
  entry is a miss (a warning names the file, which is removed); a failed write is a warning
  and the job goes on.
* **Size-capped.** After a write, least-recently-used entries (file mtime; a hit touches its
  file) are removed until the entries total at most ``cache.max_gb``. Files that are not
  entries are never removed.
* **Timing.** A hit returns the encoder seconds stored with the entry, so a job's
  ``encoder`` stage (and ``latency_ms_*``) is what the configuration costs alone, whatever
  the cache held; the time actually spent (hashing, loading, writing) goes to the job's
  ``marginal_ms`` through :attr:`StageTimes.wall_offset`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sam_bench.config import CacheConfig, ModelConfig
from sam_bench.errors import ConfigError
from sam_bench.metrics.cost import Clock, GpuPeak

if TYPE_CHECKING:  # imported where used: reading the cache's settings needs no torch
    import torch

log = logging.getLogger(__name__)

#: Version of the entry layout; part of every key, so a new layout never reads an old one.
FORMAT = 1
_SUFFIX = ".pt"
_SHARD = re.compile(r"[0-9a-f]{2}")
_ENTRY = re.compile(r"[0-9a-f]{64}\.pt")
_GB = 1e9


def resolve_dir(cfg: CacheConfig, base_dir: Path) -> Path | None:
    """The cache folder of ``cfg`` (relative paths from ``base_dir``), created if needed;
    ``None`` when the cache is off.

    Raises :class:`ConfigError` (``cache.dir``) when the path exists but is not a folder, or
    cannot be created or written to. Called before any model is built.
    """
    if cfg.dir is None:
        return None
    root = Path(cfg.dir).expanduser()
    if not root.is_absolute():
        root = base_dir / root
    if root.exists() and not root.is_dir():
        raise ConfigError("cache.dir", f"{root} exists and is not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("cache.dir", f"cannot create {root}: {e.strerror or e}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError("cache.dir", f"{root} is not writable")
    return root.resolve()


def encoder_identity(
    model: ModelConfig, weights_hash: str, dtype: str, device: torch.device
) -> dict[str, str]:
    """Everything besides the image that decides the encoder's output (part of every key).

    The float32 numerics settings are part of it (:func:`sam_bench.environment.numerics`:
    TF32 for matmuls and cuDNN convolutions, the float32 matmul precision, the cuDNN
    version): with TF32 on, a CUDA "fp32" encoder gives other bits.
    ``model.apply_postprocessing`` is left out: it changes the mask decoder only.
    ``model.runtime`` enters when it is not ``eager`` (:func:`runtime_identity`).
    """
    import torch

    from sam_bench.environment import cpu_model, numerics

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "weights": weights_hash,
        "model": model.name,
        "sam2_config": model.sam2_config,
        "dtype": dtype,
        "device": device.type,
        "device_name": name,
        "sam2": _version("sam2"),
        "torch": torch.__version__,
        **{k: str(v) for k, v in numerics().items()},
        **runtime_identity(model),
    }


def runtime_identity(model: ModelConfig) -> dict[str, str]:
    """``model.runtime`` and its options when not ``eager`` (a runtime computes other bits);
    nothing for eager, so eager keys are those written before runtimes existed."""
    runtime = getattr(model, "runtime", "eager")
    if runtime == "eager":
        return {}
    options = json.dumps(dict(getattr(model, "runtime_options", {}) or {}), sort_keys=True)
    return {"runtime": str(runtime), "runtime_options": options}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def image_digest(image: np.ndarray) -> dict[str, Any]:
    """sha256 of an array's bytes (C order), with its shape and dtype."""
    data = np.ascontiguousarray(image)
    return {
        "sha256": hashlib.sha256(data.data.cast("B")).hexdigest(),
        "shape": list(data.shape),
        "dtype": str(data.dtype),
    }


@dataclass
class EncoderEntry:
    """What ``SAM2ImagePredictor.set_image`` computed for one image."""

    image_embed: torch.Tensor
    high_res_feats: list[torch.Tensor]
    orig_hw: list[tuple[int, int]]
    is_batch: bool
    encoder_s: float
    """Seconds the encoder took when the entry was computed."""
    encoder_peak_mb: float = math.nan
    """CUDA peak of the encoder when the entry was computed (NaN on CPU or unknown): a hit
    reports it, so a job's ``peak_gpu_mem_mb`` does not depend on the cache."""

    @classmethod
    def capture(cls, predictor: Any, encoder_s: float, peak_mb: float = math.nan) -> EncoderEntry:
        """The state ``set_image`` left on ``predictor`` (compact CPU copies, same strides)."""
        feats = predictor._features

        def copy(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to("cpu").clone()  # clone keeps strides, drops a shared storage

        return cls(
            image_embed=copy(feats["image_embed"]),
            high_res_feats=[copy(t) for t in feats["high_res_feats"]],
            orig_hw=[(int(h), int(w)) for h, w in predictor._orig_hw],
            is_batch=bool(predictor._is_batch),
            encoder_s=float(encoder_s),
            encoder_peak_mb=float(peak_mb),
        )

    def restore(self, predictor: Any) -> None:
        """Leave ``predictor`` as ``set_image`` would (tensors must be on its device)."""
        predictor.reset_predictor()
        predictor._features = {
            "image_embed": self.image_embed,
            "high_res_feats": list(self.high_res_feats),
        }
        predictor._orig_hw = list(self.orig_hw)
        predictor._is_batch = self.is_batch
        predictor._is_image_set = True

    def to_dict(self, key: str) -> dict[str, Any]:
        """The stored form (only types ``torch.load(weights_only=True)`` accepts)."""
        return {
            "format": FORMAT,
            "key": key,
            "image_embed": self.image_embed,
            "high_res_feats": list(self.high_res_feats),
            "orig_hw": [list(hw) for hw in self.orig_hw],
            "is_batch": self.is_batch,
            "encoder_s": self.encoder_s,
            "encoder_peak_mb": self.encoder_peak_mb,
        }

    @classmethod
    def from_dict(cls, d: Any, key: str) -> EncoderEntry:
        """Parse a stored entry; :class:`ValueError` when it is not one (for ``key``)."""
        import torch

        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("key") != key:
            raise ValueError("not an encoder-cache entry of this format and key")
        embed, feats, hw = d.get("image_embed"), d.get("high_res_feats"), d.get("orig_hw")
        encoder_s = d.get("encoder_s")
        if (
            not isinstance(embed, torch.Tensor)
            or not isinstance(feats, list)
            or not all(isinstance(t, torch.Tensor) for t in feats)
            or not isinstance(hw, list)
            or not all(isinstance(x, list | tuple) and len(x) == 2 for x in hw)
            or not isinstance(encoder_s, float)
            or not isinstance(d.get("is_batch"), bool)
        ):
            raise ValueError("malformed encoder-cache entry")
        peak = d.get("encoder_peak_mb", math.nan)  # entries written before it: unknown
        return cls(
            image_embed=embed,
            high_res_feats=feats,
            orig_hw=[(int(h), int(w)) for h, w in hw],
            is_batch=d["is_batch"],
            encoder_s=encoder_s,
            encoder_peak_mb=float(peak) if isinstance(peak, float | int) else math.nan,
        )


@dataclass
class CacheStats:
    """What one :class:`EncoderCache` did (recorded as ``task_info.encoder_cache``)."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    evictions: int = 0
    """Entries removed to stay under the size cap."""
    errors: int = 0
    """Unreadable entries (removed) and failed writes."""


class EncoderCache:
    """A folder of encoder outputs for one model identity (see the module docstring).

    ``identity`` is :func:`encoder_identity`; ``device`` is where restored tensors go.
    """

    def __init__(
        self,
        root: Path,
        max_gb: float,
        identity: Mapping[str, str],
        device: torch.device,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_gb * _GB
        self.identity = dict(identity)
        self.device = device
        self.stats = CacheStats()
        self.active = True
        self.last_peak_mb = math.nan
        """The encoder's CUDA peak of the last :meth:`set_image` (stored one on a hit)."""

    # ------------------------------------------------------------------------ entries

    def key(self, image: np.ndarray) -> str:
        """The entry name (sha256 hex) of ``image`` encoded under this cache's identity."""
        text = json.dumps(
            {"format": FORMAT, **self.identity, "image": image_digest(image)}, sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Where the entry ``key`` lives."""
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    def get(self, key: str) -> EncoderEntry | None:
        """The entry ``key`` on :attr:`device` (its file touched), or ``None`` (a miss). An
        unreadable or malformed entry is removed with a warning and is a miss."""
        import torch

        path = self.path(key)
        try:
            raw = torch.load(path, map_location=self.device, weights_only=True)
            entry = EncoderEntry.from_dict(raw, key)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except Exception as e:  # truncated, corrupt, foreign file: recompute
            log.warning("encoder cache: unreadable entry %s (%s); removing it", path, e)
            self.stats.errors += 1
            self.stats.misses += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used = oldest mtime
        self.stats.hits += 1
        return entry

    def put(self, key: str, entry: EncoderEntry) -> bool:
        """Store ``entry`` atomically, then enforce the size cap. A failure (disk full, no
        permission) is a warning; returns whether the entry was written."""
        import torch

        path = self.path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=_SUFFIX, dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save(entry.to_dict(key), f)
            os.replace(tmp, path)
            tmp = None
        except Exception as e:
            log.warning("encoder cache: cannot write %s (%s); going on without it", path, e)
            self.stats.errors += 1
            return False
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self.stats.writes += 1
        self.evict()
        return True

    def entries(self) -> list[tuple[float, str, int, Path]]:
        """Every entry file as (mtime, name, bytes, path), oldest first. Only regular files
        named ``<2 hex>/<64 hex>.pt`` with a matching prefix count: nothing else is ever
        removed."""
        found = []
        try:
            shards = [d for d in os.scandir(self.root) if _SHARD.fullmatch(d.name)]
        except OSError:
            return []
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            try:
                files = list(os.scandir(shard.path))
            except OSError:
                continue
            for f in files:
                if not (_ENTRY.fullmatch(f.name) and f.name.startswith(shard.name)):
                    continue
                try:
                    if not f.is_file(follow_symlinks=False):
                        continue
                    st = f.stat(follow_symlinks=False)
                except OSError:  # removed meanwhile by another job
                    continue
                found.append((st.st_mtime, f.name, st.st_size, Path(f.path)))
        return sorted(found)

    def evict(self) -> int:
        """Remove least-recently-used entries until they total at most the cap; returns how
        many were removed."""
        found = self.entries()
        total = sum(size for _, _, size, _ in found)
        removed = 0
        for _, _, size, path in found:
            if total <= self.max_bytes:
                break
            try:
                path.unlink()
            except FileNotFoundError:  # another job removed it
                pass
            except OSError as e:
                log.warning("encoder cache: cannot remove %s (%s)", path, e)
                continue
            else:
                removed += 1
            total -= size
        self.stats.evictions += removed
        return removed

    # ------------------------------------------------------------------ predictor glue

    def set_image(
        self, predictor: Any, image: np.ndarray, clock: Clock, gpu: GpuPeak | None = None
    ) -> float:
        """``predictor.set_image(image)``, or restore its stored result.

        Returns the encoder seconds to count: measured now on a miss (the encoder alone, not
        hashing or writing), the stored seconds on a hit. With ``gpu``, the encoder's CUDA
        peak is measured on a miss, stored with the entry and restored on a hit
        (:attr:`last_peak_mb`); an entry stored without a peak (NaN) is then a miss. While
        :meth:`suspended`, the encoder simply runs (nothing read, written or counted).
        """
        self.last_peak_mb = math.nan
        if not self.active:
            t0 = clock.now()
            predictor.set_image(image)
            return clock.now() - t0
        key = self.key(image)
        entry = self.get(key)
        if entry is not None and gpu is not None and math.isnan(entry.encoder_peak_mb):
            # an entry without the encoder's CUDA peak (written on the CPU or by an older
            # version): a hit would lower the job's peak, so the encoder runs and the entry is
            # written again with it
            log.info("encoder cache: entry %s has no CUDA peak; encoding again", key[:12])
            self.stats.hits -= 1
            self.stats.misses += 1
            entry = None
        if entry is not None:
            entry.restore(predictor)
            self.last_peak_mb = entry.encoder_peak_mb
            return entry.encoder_s
        if gpu is not None:
            gpu.reset()
        t0 = clock.now()
        predictor.set_image(image)
        seconds = clock.now() - t0
        self.last_peak_mb = gpu.peak_mb() if gpu is not None else math.nan
        self.put(key, EncoderEntry.capture(predictor, seconds, self.last_peak_mb))
        return seconds

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Run the encoder without the cache inside the block (the untimed warm-up: its cold
        timing must never be stored, and the model must really be warmed up)."""
        active, self.active = self.active, False
        try:
            yield
        finally:
            self.active = active

    def info(self) -> dict[str, Any]:
        """``task_info.encoder_cache``: the folder, the cap and :class:`CacheStats`."""
        return {"dir": str(self.root), "max_gb": self.max_bytes / _GB, **asdict(self.stats)}
