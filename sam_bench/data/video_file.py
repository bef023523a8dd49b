"""Frames of a video file (mp4 and the like) as the JPEG folder SAM 2's video predictor reads.

sam2 reads mp4 files only through ``decord``, which sam_bench does not depend on; here OpenCV
decodes the video and writes every frame (up to ``max_frames``) as ``00000.jpg``, ``00001.jpg``
... into a cache folder named by the video's sha256, the frame cap and the JPEG quality. The
folder holds ``extraction.json`` (source file and hash, frame count, size, frame rate, OpenCV
version, JPEG quality), written last: a folder without it is incomplete and extracted again.
A later run reuses the folder (recorded as ``reused``).

Cache folder: ``$SAM_BENCH_CACHE/video_frames`` when ``SAM_BENCH_CACHE`` is set, else
``$XDG_CACHE_HOME/sam_bench/video_frames``, else ``~/.cache/sam_bench/video_frames``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2

from sam_bench.errors import SampleError
from sam_bench.files import CACHE_ENV, sha256_file

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
"""File extensions treated as video files (case-insensitive)."""
JPEG_QUALITY = 95
"""JPEG quality of extracted frames (OpenCV ``IMWRITE_JPEG_QUALITY``)."""
RECORD = "extraction.json"


def is_video_file(path: Path) -> bool:
    """Whether ``path`` is a file with a video extension."""
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def frames_cache_dir() -> Path:
    """Folder of extracted frames (see the module docstring; not created here)."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser() / "video_frames"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sam_bench" / "video_frames"


@dataclass
class Extraction:
    """What :func:`extract_frames` did (recorded with the sequence)."""

    source: str
    sha256: str
    folder: str
    n_frames: int
    width: int
    height: int
    fps: float
    max_frames: int | None
    jpeg_quality: int
    opencv: str
    reused: bool = False

    def note(self) -> str:
        """One line for the per-sequence record."""
        how = "reused" if self.reused else "extracted"
        return (
            f"{self.n_frames} frames {how} from {Path(self.source).name} (sha256 "
            f"{self.sha256[:12]}) with OpenCV {self.opencv} as JPEG q{self.jpeg_quality} "
            f"into {self.folder}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extract_frames(
    video: Path,
    *,
    max_frames: int | None = None,
    cache_dir: Path | None = None,
    quality: int = JPEG_QUALITY,
) -> Extraction:
    """Extract (or reuse) the frames of ``video`` as ``<index:05d>.jpg``.

    Raises:
        SampleError: the file cannot be opened or decoded, or holds no frame.
    """
    video = Path(video)
    if not video.is_file():
        raise SampleError(video, "video file not found")
    sha = sha256_file(video)
    root = Path(cache_dir) if cache_dir is not None else frames_cache_dir()
    cap_part = f"-n{max_frames}" if max_frames is not None else ""
    dest = root / f"{sha[:16]}{cap_part}-q{quality}"
    record = dest / RECORD
    if record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            done = Extraction(**{**data, "reused": True})
            if len(list(dest.glob("*.jpg"))) == done.n_frames:
                return done
        except (OSError, ValueError, TypeError):
            pass  # incomplete or foreign: extract again
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        info = _decode(video, work, max_frames, quality)
        extraction = Extraction(
            source=str(video.resolve()), sha256=sha, folder=str(dest), max_frames=max_frames,
            jpeg_quality=quality, opencv=cv2.__version__, **info,
        )  # fmt: skip
        (work / RECORD).write_text(json.dumps(extraction.to_dict(), indent=1), encoding="utf-8")
        if dest.exists():  # an incomplete earlier attempt
            shutil.rmtree(dest, ignore_errors=True)
        try:
            work.rename(dest)
        except OSError:  # another process finished first
            if not (dest / RECORD).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return extraction


def _decode(video: Path, out: Path, max_frames: int | None, quality: int) -> dict[str, Any]:
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SampleError(video, "OpenCV cannot open this video file")
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = 0
        size: tuple[int, int] | None = None
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            if size is None:
                size = (int(frame.shape[1]), int(frame.shape[0]))
            params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
            if not cv2.imwrite(str(out / f"{n:05d}.jpg"), frame, params):
                raise SampleError(video, f"cannot write extracted frame {n} to {out}")
            n += 1
    finally:
        cap.release()
    if n == 0 or size is None:
        raise SampleError(video, "OpenCV decoded no frame from this video file")
    return {"n_frames": n, "width": size[0], "height": size[1], "fps": fps}
