"""Images folder + labels folder of semantic class-index maps + a class list file.

Layout (``dataset=semantic_folder``)::

    dataset.images=DIR     RGB (or any readable) images
    dataset.labels=DIR     one single-channel class-index map per image, matched by file stem
                           (8/16-bit PNG, palette PNG (indices, not colours), integer TIFF)
    dataset.classes=FILE   the class list (below)
    dataset.void_index=N   pixels of class N are ignored everywhere (optional)
    dataset.annotations=DIR  optional: instance-id maps (0 = background, as instance_folder's
                           labels), matched by stem; then the instance metrics are reported too

Class list file: one class per line, ``<index> <name>``; the name may be followed by
synonyms separated by ``|``, each of which also becomes a CLIP prompt for the class::

    # CamVid (SegNet 11-class version)
    0 Sky | sky
    3 Road | street | asphalt
    6 SignSymbol | traffic sign | road sign
    11 Unlabelled

The first name is the class's display name (tables, legends, ``per_class.csv``); every name of
the line, the first included, is put into the prompt templates
(:mod:`sam_bench.clip.prompts`). Blank lines and lines starting with ``#`` are ignored;
whitespace around names is stripped. Indices are non-negative integers, each listed once; they
need not be contiguous. The void class (``dataset.void_index``) may be listed (its name is
shown) but is never a prediction.

Every pixel of a label map must be a listed class or the void index; a map with any other
value is an item error naming the values (a class list that does not fit the data would
otherwise score silently wrong).

Images are listed sorted by file name (hidden files skipped); an image without a label file
is an item error. As every loader (:mod:`sam_bench.data.checks`), it refuses images and maps
over ``limits.max_image_pixels`` (an item error), applies ``dataset.external_links`` to files
that resolve outside their folder, and reports orphan label files, such links and broken links
in :meth:`SemanticFolderDataset.warnings`.

Fingerprint: :func:`sam_bench.data.fingerprint.compute_fingerprint` over the images, then the
class file, then each listed image's label (and instance) file, with ``void_index`` appended
to the format name (``semantic_folder/void=11``), so changing the class list or the void
index changes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.base import GroundTruth, ImageRef, Sample, SemanticMap
from sam_bench.data.checks import LinkGuard
from sam_bench.data.fingerprint import compute_fingerprint
from sam_bench.data.folders import broken, files_by_stem, folder_warnings, images_by_stem, orphans
from sam_bench.data.images import DEFAULT_MAX_IMAGE_PIXELS
from sam_bench.data.instance_folder import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIXES,
    label_map_to_rles,
    read_image_and_labels,
    read_label_map,
)
from sam_bench.errors import DatasetError, SampleError


@dataclass(frozen=True)
class ClassInfo:
    """One class of the class list."""

    index: int
    """Value of the class in the label maps."""
    names: tuple[str, ...]
    """Display name first, then the synonyms (every one is a prompt name)."""

    @property
    def name(self) -> str:
        """Display name."""
        return self.names[0]


@dataclass(frozen=True)
class ClassList:
    """The classes of a semantic dataset, in index order, and its void index."""

    classes: tuple[ClassInfo, ...]
    void_index: int | None = None

    @property
    def labelled(self) -> tuple[ClassInfo, ...]:
        """The classes a prediction can take (every class but the void one)."""
        return tuple(c for c in self.classes if c.index != self.void_index)

    @property
    def names(self) -> dict[int, str]:
        """Index -> display name (void included when listed)."""
        return {c.index: c.name for c in self.classes}

    def name_of(self, index: int) -> str:
        return self.names.get(index, str(index))


def parse_classes(text: str, source: str = "<classes>") -> tuple[ClassInfo, ...]:
    """Parse a class list (see the module docstring), sorted by index.

    Raises:
        DatasetError: a line is malformed (naming ``source`` and the line number), an index
            repeats, or no class is listed.
    """
    out: dict[int, ClassInfo] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, rest = [*line.split(None, 1), ""][:2]
        try:
            index = int(head)
        except ValueError:
            raise DatasetError(
                f"{source}:{n}: expected '<index> <name>[ | synonym ...]', got {line!r}"
            ) from None
        if index < 0:
            raise DatasetError(f"{source}:{n}: class index must be >= 0, got {index}")
        names = tuple(s.strip() for s in rest.split("|"))
        if not names or any(not s for s in names):
            raise DatasetError(f"{source}:{n}: empty class name or synonym in {line!r}")
        if index in out:
            raise DatasetError(
                f"{source}:{n}: class index {index} listed twice ({out[index].name!r} and "
                f"{names[0]!r})"
            )
        out[index] = ClassInfo(index, names)
    if not out:
        raise DatasetError(f"{source}: no class listed")
    return tuple(out[i] for i in sorted(out))


def read_classes(path: Path, void_index: int | None = None) -> ClassList:
    """Read a class list file (:func:`parse_classes`).

    Raises:
        DatasetError: missing or unreadable file, malformed content, or no class left besides
            the void one.
    """
    if not path.is_file():
        raise DatasetError(f"class list file not found: {path} (dataset.classes)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read class list {path}: {e}") from None
    classes = ClassList(parse_classes(text, str(path)), void_index)
    if not classes.labelled:
        raise DatasetError(f"{path}: every listed class is the void class {void_index}")
    return classes


class SemanticFolderDataset:
    """Images matched to semantic class-index maps by file stem (see the module docstring).

    Args:
        images: Folder of images.
        labels: Folder of class-index maps (``<stem>.png`` / ``.tif`` / ``.tiff``).
        classes: Class list file.
        void_index: Class index ignored everywhere (``None``: none).
        instances: Optional folder of instance-id maps (then ``provides`` has ``instances``).
        name: Name recorded with results.
        limit: Keep the first N images in file-name order.
        max_image_pixels: Refuse larger images and maps (an item error); ``None``: no limit.
        external_links: ``follow`` or ``skip`` files that resolve outside their folder (see
            :class:`~sam_bench.config.DatasetConfig`).

    Raises:
        DatasetError: a folder or the class file is missing, the images folder holds no image,
            two images share a stem, or the class list is malformed.
    """

    kind = "semantic_folder"

    def __init__(
        self,
        images: Path | str,
        labels: Path | str,
        classes: Path | str,
        *,
        void_index: int | None = None,
        instances: Path | str | None = None,
        name: str = "semantic_folder",
        limit: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        external_links: str = "follow",
    ) -> None:
        self.name = name
        self.max_image_pixels = max_image_pixels
        self.links = LinkGuard(external_links)
        self.images_dir = Path(images)
        self.labels_dir = Path(labels)
        self.classes_file = Path(classes)
        self.instances_dir = Path(instances) if instances is not None else None
        folders = [("images", self.images_dir), ("labels", self.labels_dir)]
        if self.instances_dir is not None:
            folders.append(("annotations (instance maps)", self.instances_dir))
        for what, folder in folders:
            if not folder.is_dir():
                raise DatasetError(f"semantic_folder {what} folder not found: {folder}")
        self.class_list = read_classes(self.classes_file, void_index)
        self.void_index = void_index
        self.provides: tuple[str, ...] = ("semantic",) + (
            ("instances",) if self.instances_dir is not None else ()
        )
        files = images_by_stem(self.images_dir, IMAGE_SUFFIXES)
        self._labels = files_by_stem(self.labels_dir, LABEL_SUFFIXES)
        self._instances = files_by_stem(self.instances_dir, LABEL_SUFFIXES)
        self._orphans = orphans(self._labels, files)
        self._broken = broken(
            [
                (self.images_dir, IMAGE_SUFFIXES),
                (self.labels_dir, LABEL_SUFFIXES),
                *(((self.instances_dir, LABEL_SUFFIXES),) if self.instances_dir else ()),
            ]
        )
        if limit is not None:
            files = files[:limit]
        self._refs = [ImageRef(image_id=f.stem, path=f) for f in files]
        self._known = np.array(
            sorted({c.index for c in self.class_list.classes} | _void(void_index)), dtype=np.int64
        )

    def refs(self) -> list[ImageRef]:
        """Images sorted by file name, ``limit`` applied."""
        return list(self._refs)

    def semantic_classes(self) -> ClassList:
        """The class list (what :mod:`sam_bench.tasks.semantic` prompts CLIP with)."""
        return self.class_list

    def _match(self, table: dict[str, list[Path]], folder: Path, ref: ImageRef) -> Path:
        found = table.get(ref.image_id, [])
        if not found:
            raise SampleError(ref.path, f"no label file {ref.image_id}.png/.tif/.tiff in {folder}")
        if len(found) > 1:
            raise SampleError(
                ref.path, f"several label files match: {', '.join(p.name for p in found)}"
            )
        return found[0]

    def load(self, ref: ImageRef) -> Sample:
        """Read one image, its class map (and its instance map where given).

        Raises:
            SampleError: missing or unreadable label, label not a single-channel integer map,
                size different from the image's, or class values not in the class list.
        """
        label_file = self._match(self._labels, self.labels_dir, ref)
        self.links.check(ref.path, self.images_dir, "image file")
        self.links.check(label_file, self.labels_dir, "label file")
        raw, labels = read_image_and_labels(ref.path, label_file, self.max_image_pixels)
        h, w = labels.shape
        values = np.unique(labels)
        unknown = values[~np.isin(values, self._known)]
        if unknown.size:
            listed = ", ".join(str(int(v)) for v in unknown[:10])
            raise SampleError(
                label_file,
                f"class values {listed} are not in the class list {self.classes_file.name}"
                + ("" if self.void_index is None else f" nor the void index {self.void_index}"),
            )
        semantic = SemanticMap(
            labels=labels.astype(np.int64, copy=False),
            void_index=self.void_index,
            classes=self.class_list.names,
        )
        gt = None
        if self.instances_dir is not None:
            inst_file = self._match(self._instances, self.instances_dir, ref)
            self.links.check(inst_file, self.instances_dir, "instance map")
            inst = read_label_map(inst_file, max_pixels=self.max_image_pixels)
            if inst.shape != (h, w):
                raise SampleError(inst_file, f"instance map is not {w}x{h}")
            rles = label_map_to_rles(inst)
            gt = GroundTruth(rles=rles, iscrowd=[False] * len(rles), height=h, width=w)
        return Sample(ref=ref, raw=raw, gt=gt, semantic=semantic)

    def fingerprint(self) -> str:
        """See the module docstring."""
        images = [
            (
                r.image_id,
                r.path.name,
                None if self.links.skipped(r.path, self.images_dir) else r.path,
            )
            for r in self._refs
        ]
        annotations: list[tuple[str, Path | None]] = [("classes", self.classes_file)]
        for table, root in self._tables():
            for r in self._refs:
                found = table.get(r.image_id, [])
                if not found:
                    annotations.append((f"{r.image_id}.<missing>", None))
                annotations.extend(
                    (p.name, None if self.links.skipped(p, root) else p) for p in found
                )
        kind = self.kind if self.void_index is None else f"{self.kind}/void={self.void_index}"
        return compute_fingerprint(kind, images, annotations)

    def _tables(self) -> list[tuple[dict[str, list[Path]], Path]]:
        out = [(self._labels, self.labels_dir)]
        if self.instances_dir is not None:
            out.append((self._instances, self.instances_dir))
        return out

    def warnings(self) -> list[dict[str, Any]]:
        """What was found suspicious (see :mod:`sam_bench.data.checks`): orphan label files
        (whole folder), listed files that resolve outside their folder, and broken links."""
        found = folder_warnings(self._orphans, self.labels_dir, self.images_dir, [])
        files = []
        for r in self._refs:
            files.append((r.path, self.images_dir))
            for table, root in self._tables():
                files.extend((p, root) for p in table.get(r.image_id, []))
        links = self.links.warning(files)
        if links:
            found.append(links)
        found.extend(folder_warnings([], self.labels_dir, self.images_dir, self._broken))
        return found


def _void(void_index: int | None) -> set[int]:
    return set() if void_index is None else {int(void_index)}


def from_config(
    cfg: DatasetConfig, base_dir: Path, *, limits: LimitsConfig | None = None
) -> SemanticFolderDataset:
    """``dataset.format=semantic_folder`` (relative paths taken from ``base_dir``;
    ``limits``: the job's ``limits`` settings, default :class:`LimitsConfig`'s)."""
    from sam_bench.data.paths import config_path

    return SemanticFolderDataset(
        config_path(cfg, "images", base_dir),
        config_path(cfg, "labels", base_dir),
        config_path(cfg, "classes", base_dir),
        void_index=cfg.void_index,
        instances=config_path(cfg, "annotations", base_dir) if cfg.annotations else None,
        name=cfg.name,
        limit=cfg.limit,
        max_image_pixels=(limits or LimitsConfig()).max_image_pixels,
        external_links=cfg.external_links,
    )
