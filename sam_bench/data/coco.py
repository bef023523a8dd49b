"""COCO instances JSON loader (polygons, uncompressed RLE, compressed RLE).

- Images are listed sorted by image id (integer ids numerically, then text ids).
- Every annotation of an image is one instance, in annotation-id order; ``iscrowd`` is kept
  as a flag (crowd regions are not instances to find, see :class:`GroundTruth`), and so are
  ``category_id`` (0 when absent) and ``area`` (the rasterised area when absent): COCOeval's
  area ranges (``ar1000_small`` ...) use the annotation's ``area`` field, not the mask's.
- Masks are built the way ``pycocotools.coco.COCO.annToRLE`` builds them
  (``frPyObjects`` + ``merge``), after validating each segmentation so a malformed one costs its
  image (a :class:`SampleError` naming the annotation id), never a crash in pycocotools.
- A ``file_name`` that is absolute or leads out of the images folder (``..``) is never read:
  loading that image raises :class:`SampleError`.
- A file whose real location (symbolic links resolved) is outside the images folder is read
  or refused (an image error) per ``dataset.external_links``, and warned about either way.
- Annotations whose ``image_id`` is not in ``images`` are not used; :meth:`warnings` counts
  them (with examples), as it does links out of the folder.
- Images with more pixels than ``max_image_pixels`` are refused from their header (an image
  error), see :func:`~sam_bench.data.images.read_image`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from pycocotools import mask as mask_utils

from sam_bench.config import DatasetConfig, LimitsConfig
from sam_bench.data.base import GroundTruth, ImageRef, Sample
from sam_bench.data.checks import LinkGuard, dataset_warning
from sam_bench.data.fingerprint import compute_fingerprint
from sam_bench.data.images import DEFAULT_MAX_IMAGE_PIXELS, read_image
from sam_bench.errors import DatasetError, SampleError


class CocoDataset:
    """A COCO instances JSON plus its image folder.

    Args:
        annotations: Instances JSON.
        images: Folder the ``file_name`` s are relative to.
        name: Name recorded with results.
        limit: Keep the first N images of the stable order.
        keep: Optional predicate on the JSON image entry (used to select synthetic scenes).
        max_image_pixels: Refuse larger images (an image error); ``None``: no limit.
        external_links: ``follow`` or ``skip`` files that resolve outside the images folder
            (see :class:`~sam_bench.config.DatasetConfig`).

    Raises:
        DatasetError: the JSON is missing, not JSON, or not a COCO instances file; the images
            folder is missing.
    """

    kind = "coco"
    provides: tuple[str, ...] = ("instances",)

    def __init__(
        self,
        annotations: Path | str,
        images: Path | str,
        *,
        name: str = "coco",
        limit: int | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        external_links: str = "follow",
    ) -> None:
        self.name = name
        self.annotations_path = Path(annotations)
        self.images_dir = Path(images)
        self.max_image_pixels = max_image_pixels
        self.links = LinkGuard(external_links)
        data = _load_json(self.annotations_path)
        if not self.images_dir.is_dir():
            raise DatasetError(f"COCO images folder not found: {self.images_dir}")

        self._entries: list[dict[str, Any]] = _parse_images(data, self.annotations_path)
        self._by_id = {str(e["id"]): e for e in self._entries}
        self._anns = _group_annotations(data, self.annotations_path)
        self._unknown = [
            f"annotation {a.get('id')} (image_id {a['image_id']!r})"
            for key, anns in self._anns.items()
            if key not in self._by_id
            for a in anns
        ]
        selected = [e for e in self._entries if keep is None or keep(e)]
        if limit is not None:
            selected = selected[:limit]
        self._refs = [
            ImageRef(image_id=str(e["id"]), path=self.images_dir / e["file_name"]) for e in selected
        ]

    def image_entries(self) -> list[dict[str, Any]]:
        """Every image entry of the JSON (before ``keep`` and ``limit``), sorted by id."""
        return list(self._entries)

    def refs(self) -> list[ImageRef]:
        """Images sorted by id, ``keep`` and ``limit`` applied."""
        return list(self._refs)

    def load(self, ref: ImageRef) -> Sample:
        """Read one image and build its instance RLEs.

        Raises:
            SampleError: unsafe or missing file, unreadable image, size different from the
                JSON's, or a malformed annotation (named by id).
        """
        entry = self._by_id.get(ref.image_id)
        if entry is None:
            raise SampleError(ref.path, f"image id {ref.image_id} is not in this dataset")
        file_name = entry["file_name"]
        path = safe_join(self.images_dir, file_name)
        if path is None:
            raise SampleError(
                ref.path,
                f"file_name {file_name!r} of image {ref.image_id} resolves outside the images "
                f"folder {self.images_dir}; not read",
            )
        self.links.check(path, self.images_dir, "image file")
        if not path.is_file():
            raise SampleError(path, f"image file not found (listed in {self.annotations_path})")
        raw = read_image(path, max_pixels=self.max_image_pixels)
        h, w = int(raw.pixels.shape[0]), int(raw.pixels.shape[1])
        jh, jw = entry.get("height"), entry.get("width")
        if jh is not None and jw is not None and (jh, jw) != (h, w):
            raise SampleError(
                path, f"image is {w}x{h} but {self.annotations_path.name} says {jw}x{jh}"
            )

        rles: list[dict[str, Any]] = []
        crowd: list[bool] = []
        categories: list[int] = []
        areas: list[float] = []
        for ann in self._anns.get(ref.image_id, []):
            try:
                rle = segmentation_to_rle(ann.get("segmentation"), h, w)
            except ValueError as e:
                raise SampleError(path, f"annotation {ann.get('id')}: {e}") from None
            rles.append(rle)
            crowd.append(bool(ann.get("iscrowd", 0)))
            cat: Any = ann.get("category_id")
            categories.append(int(cat) if _is_number(cat) else 0)
            # COCOeval's area ranges use the annotation's own ``area`` field
            area: Any = ann.get("area")
            areas.append(float(area) if _is_number(area) else float(mask_utils.area(rle)))
        gt = GroundTruth(
            rles=rles, iscrowd=crowd, height=h, width=w, category_ids=categories, areas=areas
        )
        return Sample(ref=ref, raw=raw, gt=gt)

    def fingerprint(self) -> str:
        """See :mod:`sam_bench.data.fingerprint` for exactly what is hashed."""
        images = []
        for ref in self._refs:
            fn = self._by_id[ref.image_id]["file_name"]
            path = safe_join(self.images_dir, fn)
            if path is not None and self.links.skipped(path, self.images_dir):
                path = None  # never touched
            images.append((ref.image_id, fn, path))
        return compute_fingerprint(
            self.kind, images, [(self.annotations_path.name, self.annotations_path)]
        )

    def warnings(self) -> list[dict[str, Any]]:
        """What was found suspicious (see :mod:`sam_bench.data.checks`): annotations whose
        image id is not in ``images`` (whole file), and listed images (``keep`` and ``limit``
        applied) whose file resolves outside the images folder."""
        found = []
        if self._unknown:
            found.append(
                dataset_warning(
                    "unknown_image_ids",
                    f"{len(self._unknown)} annotation(s) of {self.annotations_path.name} point "
                    f"at an image id that is not in its 'images' list; they are not used",
                    self._unknown,
                )
            )
        files = []
        for ref in self._refs:
            path = safe_join(self.images_dir, self._by_id[ref.image_id]["file_name"])
            if path is not None:
                files.append((path, self.images_dir))
        links = self.links.warning(files)
        if links:
            found.append(links)
        return found


# --------------------------------------------------------------------------------------------
# JSON structure


def _load_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"COCO annotation file not found: {path}") from None
    except OSError as e:
        raise DatasetError(f"cannot read COCO annotation file {path}: {e}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"COCO annotation file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"COCO annotation file {path} has no 'images' list")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"COCO annotation file {path}: 'annotations' is not a list")
    return data


def _id_key(image_id: Any) -> tuple[int, int, str]:
    if isinstance(image_id, int):
        return (0, image_id, "")
    return (1, 0, str(image_id))


def _parse_images(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, e in enumerate(data["images"]):
        if not isinstance(e, dict) or "id" not in e or isinstance(e["id"], (bool, float)):
            raise DatasetError(f"{path}: images[{i}] has no integer or text 'id'")
        if not isinstance(e.get("file_name"), str):
            raise DatasetError(f"{path}: image {e['id']} has no text 'file_name'")
        key = str(e["id"])
        if key in seen:
            raise DatasetError(f"{path}: image id {e['id']} appears twice")
        seen.add(key)
        entries.append(e)
    entries.sort(key=lambda e: _id_key(e["id"]))
    return entries


def _group_annotations(data: dict[str, Any], path: Path) -> dict[str, list[dict[str, Any]]]:
    """Annotations per image id (as text), each list in annotation-id order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for i, a in enumerate(data.get("annotations", [])):
        if not isinstance(a, dict) or "image_id" not in a:
            raise DatasetError(f"{path}: annotations[{i}] has no 'image_id'")
        groups.setdefault(str(a["image_id"]), []).append(a)
    for anns in groups.values():
        anns.sort(key=lambda a: _id_key(a.get("id", 0)))
    return groups


def safe_join(folder: Path, file_name: str) -> Path | None:
    """``folder / file_name`` if the name stays inside ``folder`` (lexically), else None.

    Refused: empty names, absolute paths (POSIX or Windows, drive letters, UNC) and names whose
    normalised form starts with ``..``. Symbolic links are checked separately
    (``dataset.external_links``, :class:`~sam_bench.data.checks.LinkGuard`).
    """
    if not file_name or "\x00" in file_name:
        return None
    if PurePosixPath(file_name).is_absolute() or PureWindowsPath(file_name).anchor:
        return None
    norm = os.path.normpath(file_name.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None
    return folder / norm


# --------------------------------------------------------------------------------------------
# segmentations


def segmentation_to_rle(seg: Any, h: int, w: int) -> dict[str, Any]:
    """One COCO ``segmentation`` as a compressed RLE ``{"size": [h, w], "counts": bytes}``.

    Accepts a list of polygons (``[[x0, y0, x1, y1, ...], ...]``, merged into one mask), an
    uncompressed RLE (``counts`` a list of run lengths) or a compressed RLE (``counts`` text).

    Raises:
        ValueError: the segmentation is malformed or its size differs from ``h`` x ``w``.
    """
    if isinstance(seg, list):
        if not seg:
            raise ValueError("empty polygon list")
        polys = []
        for j, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                raise ValueError(f"polygon {j} is not a list of numbers")
            if len(poly) < 6 or len(poly) % 2:
                raise ValueError(
                    f"polygon {j} has {len(poly)} coordinates (needs an even number >= 6)"
                )
            polys.append([float(v) for v in poly])
        rles = mask_utils.frPyObjects(polys, h, w)
        return _normalise(mask_utils.merge(rles), h, w)
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        size = seg["size"]
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
        ):
            raise ValueError(f"RLE size {size!r} is not [height, width]")
        if tuple(size) != (h, w):
            raise ValueError(f"RLE size {size} does not match the image ({h}x{w} as [h, w])")
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise ValueError("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != h * w:
                raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, not {h * w}")
            return _normalise(mask_utils.frPyObjects(seg, h, w), h, w)
        if isinstance(counts, (str, bytes)):
            text = counts.decode("ascii") if isinstance(counts, bytes) else counts
            total = _compressed_total(text)
            if total != h * w:
                raise ValueError(f"compressed RLE covers {total} pixels, not {h * w}")
            return {"size": [h, w], "counts": text.encode("ascii")}
        raise ValueError(f"RLE counts of type {type(counts).__name__}")
    raise ValueError(f"segmentation is neither polygons nor RLE ({type(seg).__name__})")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _normalise(rle: dict[str, Any], h: int, w: int) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": [h, w], "counts": counts if isinstance(counts, bytes) else counts.encode()}


def _compressed_total(text: str) -> int:
    """Sum of the run lengths of a compressed RLE string (pycocotools' ``rleFrString``)."""
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("compressed RLE counts end in the middle of a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"compressed RLE counts contain invalid character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError("compressed RLE has a negative run length")
        counts.append(x)
    return sum(counts)


def from_config(
    cfg: DatasetConfig, base_dir: Path, *, limits: LimitsConfig | None = None
) -> CocoDataset:
    """``dataset.format=coco`` (relative paths taken from ``base_dir``; ``limits``: the job's
    ``limits`` settings, default :class:`LimitsConfig`'s)."""
    from sam_bench.data.paths import config_path

    return CocoDataset(
        config_path(cfg, "annotations", base_dir),
        config_path(cfg, "images", base_dir),
        name=cfg.name,
        limit=cfg.limit,
        max_image_pixels=(limits or LimitsConfig()).max_image_pixels,
        external_links=cfg.external_links,
    )
