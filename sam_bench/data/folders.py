"""Folders of files matched by file stem: images and the label maps beside them
(``instance_folder``, ``semantic_folder``).

Listing skips hidden files and keeps the suffixes asked for (case-insensitive), sorted by
name; two images sharing a stem, or an images folder without an image, are errors; label files
whose stem matches no image, and symbolic links that point nowhere, are warnings
(:func:`sam_bench.data.checks.dataset_warning`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sam_bench.data.checks import broken_links, dataset_warning
from sam_bench.errors import DatasetError


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes``, hidden ones skipped, sorted by name."""
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )


def files_by_stem(folder: Path | None, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """Files of ``folder`` grouped by stem (``{}`` without a folder)."""
    out: dict[str, list[Path]] = {}
    for f in list_files(folder, suffixes) if folder is not None else []:
        out.setdefault(f.stem, []).append(f)
    return out


def images_by_stem(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The images of ``folder``, each stem once.

    Raises:
        DatasetError: no image, or two images share a stem (labels are matched by stem).
    """
    files = list_files(folder, suffixes)
    if not files:
        raise DatasetError(f"no image ({', '.join(suffixes)}) in {folder}")
    stems: dict[str, str] = {}
    for f in files:
        if f.stem in stems:
            raise DatasetError(
                f"{folder}: {stems[f.stem]} and {f.name} share the stem {f.stem!r}; labels are "
                "matched by stem"
            )
        stems[f.stem] = f.name
    return files


def orphans(labels: dict[str, list[Path]], images: list[Path]) -> list[str]:
    """Names of the label files whose stem matches no image."""
    stems = {f.stem for f in images}
    return sorted(p.name for stem, found in labels.items() if stem not in stems for p in found)


def broken(folders: list[tuple[Path, tuple[str, ...]]]) -> list[str]:
    """``folder/name`` of every symbolic link of the listed kinds that points nowhere."""
    return [
        f"{folder.name}/{n}" for folder, suffixes in folders for n in broken_links(folder, suffixes)
    ]


def folder_warnings(
    orphan_names: list[str], labels_dir: Path, images_dir: Path, broken_names: list[str]
) -> list[dict[str, Any]]:
    """The ``orphan_labels`` and ``broken_links`` warnings (only those that apply)."""
    found = []
    if orphan_names:
        found.append(
            dataset_warning(
                "orphan_labels",
                f"{len(orphan_names)} label file(s) in {labels_dir} match no image in "
                f"{images_dir} (by file stem); they are not evaluated",
                orphan_names,
            )
        )
    if broken_names:
        found.append(
            dataset_warning(
                "broken_links",
                f"{len(broken_names)} symbolic link(s) in the dataset folders point nowhere; "
                "they are left out",
                broken_names,
            )
        )
    return found
