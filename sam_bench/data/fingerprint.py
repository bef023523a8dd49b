"""Dataset fingerprints: :func:`compute_fingerprint`, the hex sha256 every dataset's
:meth:`fingerprint` returns.

The hashed UTF-8 byte stream, in order:

1. ``"sam_bench-dataset-fingerprint-v1\\n"``
2. ``"format\\t<kind>\\n"`` with kind ``coco`` (also for ``synthetic``), ``instance_folder``
   or ``dsb``;
3. for each image listed by ``refs()`` (the stable order, after ``scenes`` and ``limit``):
   ``"image\\t<image_id>\\t<file name>\\t<size in bytes>\\n"``; the file name is relative to
   the dataset (COCO ``file_name``; ``<name>`` in the images folder; DSB
   ``<id>/images/<id>.png``); size ``-1`` for a missing file, an unsafe COCO ``file_name``
   or a file refused by ``dataset.external_links=skip`` (never touched);
4. for each annotation file: ``"annotation\\t<name>\\t<size in bytes>\\n"`` followed by the
   file's bytes (size ``-1`` and no bytes when missing or refused by
   ``dataset.external_links=skip``). Annotation files are: COCO, the whole
   instances JSON (name: its base name); ``instance_folder``, the label file of each listed
   image, in image order (name: relative to the labels folder); ``dsb``, every
   ``<id>/masks/*.png`` of each listed image, in image order then sorted by name.

Moving a dataset elsewhere keeps its fingerprint; changing any pixel file's size, any
annotation byte, the image list or its order changes it. Image pixel bytes are not hashed
(sizes only), which keeps fingerprinting cheap for large image sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

FINGERPRINT_VERSION = "sam_bench-dataset-fingerprint-v1"


def compute_fingerprint(
    kind: str,
    images: Iterable[tuple[str, str, Path | None]],
    annotations: Iterable[tuple[str, Path | None]],
) -> str:
    """sha256 (hex) over an image list and annotation files, as described in this module.

    Args:
        kind: Loader kind (``coco``, ``instance_folder``, ``dsb``).
        images: ``(image_id, relative file name, path or None)`` in the dataset's stable order;
            ``None`` (or a missing file) hashes as size ``-1``.
        annotations: ``(relative name, path or None)`` of each annotation file, in order.
    """
    h = hashlib.sha256()
    h.update(f"{FINGERPRINT_VERSION}\nformat\t{kind}\n".encode())
    for image_id, name, path in images:
        size = _size(path)
        h.update(f"image\t{image_id}\t{name}\t{size}\n".encode())
    for name, path in annotations:
        size = _size(path)
        h.update(f"annotation\t{name}\t{size}\n".encode())
        if path is not None and size >= 0:
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _size(path: Path | None) -> int:
    if path is None:
        return -1
    try:
        return path.stat().st_size if path.is_file() else -1
    except OSError:
        return -1
