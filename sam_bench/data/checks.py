"""What dataset loaders check about their files, and how they report it.

Loaders report what they found suspicious but could still work with through their
``warnings()`` method: a list of dicts made by :func:`dataset_warning` (``kind``, ``message``,
``count``, ``examples``), which the runner logs once and records in ``result.json``
(``dataset.warnings``). Kinds used by the built-in loaders:

- ``orphan_labels``: ground truth with no image (``instance_folder``: a label file whose stem
  matches no image; ``dsb``: a sample folder with masks but no ``images/<id>.png``);
- ``unknown_image_ids``: COCO annotations whose ``image_id`` is not in ``images``;
- ``external_links``: files whose real location (symbolic links resolved) is outside the
  dataset's folder; read or refused per ``dataset.external_links``
  (:class:`LinkGuard`);
- ``broken_links``: symbolic links in a dataset folder that point nowhere (left out);
- ``ignored_files``: files a loader does not read although they look like data (``dsb``:
  non-PNG files in ``masks/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sam_bench.errors import SampleError

MAX_EXAMPLES = 5
"""Examples kept per warning (the count is always complete)."""

EXTERNAL_LINKS = ("follow", "skip")
"""Values of ``dataset.external_links``."""


def dataset_warning(kind: str, message: str, items: list[str]) -> dict[str, Any]:
    """One entry of a loader's ``warnings()``.

    Args:
        kind: Short identifier (see the module docstring).
        message: A sentence naming the count, the folder and what happens to those files;
            the first examples are appended.
        items: Every offending item (file names, ids); the first :data:`MAX_EXAMPLES` are
            kept as examples.
    """
    examples = items[:MAX_EXAMPLES]
    more = len(items) - len(examples)
    shown = ", ".join(examples) + (f" and {more} more" if more > 0 else "")
    return {
        "kind": kind,
        "message": f"{message} (e.g. {shown})" if examples else message,
        "count": len(items),
        "examples": examples,
    }


class LinkGuard:
    """Finds files that resolve outside their dataset folder and applies
    ``dataset.external_links``.

    Args:
        policy: ``follow`` (read them, warn) or ``skip`` (never read them: :meth:`check`
            raises :class:`SampleError`; warn).

    Folders are resolved once (a dataset folder that is itself a link is fine); a file costs
    one ``lstat`` unless it is a link.
    """

    def __init__(self, policy: str = "follow") -> None:
        if policy not in EXTERNAL_LINKS:
            raise ValueError(f"external_links must be one of {EXTERNAL_LINKS}, got {policy!r}")
        self.policy = policy
        self._real_dirs: dict[str, str] = {}
        self._targets: dict[tuple[str, str], str | None] = {}

    def _real_dir(self, folder: str) -> str:
        real = self._real_dirs.get(folder)
        if real is None:
            real = os.path.realpath(folder)
            self._real_dirs[folder] = real
        return real

    def outside(self, path: Path, root: Path) -> str | None:
        """The real location of ``path`` when it is outside ``root`` (after resolving links),
        else ``None``. A missing file is not outside (it fails as missing)."""
        key = (str(path), str(root))
        if key in self._targets:
            return self._targets[key]
        parent, name = os.path.split(os.path.abspath(path))
        real_parent = self._real_dir(parent)
        real = os.path.realpath(path) if os.path.islink(path) else os.path.join(real_parent, name)
        real_root = self._real_dir(os.path.abspath(root))
        inside = real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)
        found = None if inside or not os.path.lexists(path) else real
        self._targets[key] = found
        return found

    def skipped(self, path: Path, root: Path) -> bool:
        """Whether ``path`` is outside ``root`` and the policy says not to read it."""
        return self.policy == "skip" and self.outside(path, root) is not None

    def check(self, path: Path, root: Path, what: str = "file") -> None:
        """Raise :class:`SampleError` when ``path`` must not be read (``skip``)."""
        if not self.skipped(path, root):
            return
        raise SampleError(
            path,
            f"{what} resolves outside the dataset folder {root} (to {self.outside(path, root)}); "
            f"not read (dataset.external_links=skip)",
        )

    def warning(self, files: list[tuple[Path, Path]]) -> dict[str, Any] | None:
        """The ``external_links`` warning over ``files`` (``(path, root)`` pairs), or None."""
        found = []
        for path, root in files:
            target = self.outside(path, root)
            if target is not None:
                found.append(f"{_rel(path, root)} -> {target}")
        if not found:
            return None
        roots = sorted({str(root) for _, root in files})
        if self.policy == "follow":
            effect = (
                "they are read (dataset.external_links=follow; "
                "dataset.external_links=skip refuses them)"
            )
        else:
            effect = "they are not read: each image needing one is an image error"
            effect += " (dataset.external_links=skip)"
        return dataset_warning(
            "external_links",
            f"{len(found)} file(s) resolve outside the dataset folder "
            f"({', '.join(roots)}) through symbolic links; {effect}",
            found,
        )


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def broken_links(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Names of the symbolic links in ``folder`` with one of ``suffixes`` (case-insensitive)
    that point nowhere (a listing that checks ``is_file()`` drops them silently)."""
    out = []
    for p in folder.iterdir():
        if p.suffix.lower() in suffixes and p.is_symlink() and not p.exists():
            out.append(p.name)
    return sorted(out)
