"""Input traps, end to end (issue 13, point 5): a CLI sweep over an ``instance_folder`` dataset
of 16-bit TIFFs holding 12-bit microscopy-like data, with random-weight SAM 2 and a 2x2 grid.

One sweep of two jobs (the same images, two label folders, one of them with an orphan label
file; the second job takes the image encoder's output from ``cache.dir``), with
``limits.max_image_pixels`` below the size of a second, larger image:

- the default conversion makes the 12-bit data visible (the model input saved as
  ``masks/<id>.png`` is ``v * 255 / 4095``), records it in ``per_image.csv``, and warns
  about nothing;
- the orphan label is a ``dataset.warnings`` entry of ``result.json`` (and is logged);
- the larger image is an image error with its reason, the others are scored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import run_cli
from PIL import Image

SIZE = 64
LIMIT = 5000  # pixels: 64 x 64 = 4096 pass, 80 x 80 = 6400 do not
CONVERSION = "uint16->uint8 auto: 12-bit range 0..4095 (image max 4095); gray->rgb replicate"


def _scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 12-bit image (values 116..4095 in uint16) with two bright blobs, and its labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image = (300 + rng.integers(0, 60, size=(SIZE, SIZE))).astype(np.uint16)
    labels = np.zeros((SIZE, SIZE), np.uint8)
    for k, (cy, cx, r) in enumerate(((18, 20, 9), (44, 42, 12)), start=1):
        blob = (yy - cy - seed) ** 2 + (xx - cx) ** 2 <= r * r
        image[blob] = 3000 + rng.integers(0, 900, size=int(blob.sum()))
        labels[blob] = k
    image[0, 0], image[0, 1] = 116, 4095  # the range of the microscopy TIFFs
    return image, labels


def _dataset(root: Path) -> None:
    images, clean, orphan = root / "images", root / "labels_clean", root / "labels_orphan"
    for d in (images, clean, orphan):
        d.mkdir(parents=True)
    image, labels = _scene(0)
    tifffile.imwrite(images / "a.tif", image)
    for d in (clean, orphan):
        Image.fromarray(labels).save(d / "a.png")
    big = np.full((80, 80), 2000, np.uint16)  # over the limit: refused from its header
    tifffile.imwrite(images / "c_big.tif", big)
    for d in (clean, orphan):
        Image.fromarray(np.zeros((80, 80), np.uint8)).save(d / "c_big.png")
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(orphan / "d_orphan.png")


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {r["image_id"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("traps")
    _dataset(cwd / "data")
    out = cwd / "OUT"
    proc = run_cli(
        ["-m", "dataset=instance_folder", "dataset.images=data/images",
         "dataset.labels=data/labels_clean,data/labels_orphan", "model.weights=random",
         "amg.points_per_side=2", f"limits.max_image_pixels={LIMIT}", "warmup=false",
         "cache.dir=enc",
         "tracking=none", "progress=false", f"hydra.sweep.dir={out}"],
        cwd,
        timeout=600,
    )  # fmt: skip
    return proc, out


def test_12bit_tiffs_are_converted_visibly_and_recorded(sweep) -> None:
    proc, out = sweep
    assert (out / "0" / "result.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 1  # the refused image is a failure the command reports
    for job in ("0", "1"):
        rows = _rows(out / job / "per_image.csv")
        assert set(rows) == {"a", "c_big"}
        assert rows["a"]["error"] == "", rows["a"]
        assert rows["a"]["conversion"] == CONVERSION
        assert rows["a"]["stored_as"] == "tiff:uint16x1"
        assert "over limits.max_image_pixels=5000" in rows["c_big"]["error"]
        assert "80x80" in rows["c_big"]["error"]
        record = json.loads((out / job / "result.json").read_text())
        assert record["task_info"]["input_warnings"] == []  # nothing dark, nothing flagged
        assert [e["image_id"] for e in record["item_errors"]] == ["c_big"]
    # the model input saved for the first images is the visible conversion
    image, _ = _scene(0)
    saved = np.array(Image.open(out / "0" / "masks" / "a.png"))
    expected = np.rint(image.astype(np.float64) * 255.0 / 4095.0).astype(np.uint8)
    np.testing.assert_array_equal(saved, np.repeat(expected[:, :, None], 3, axis=2))
    assert saved.max() == 255 and saved.mean() > 20


def test_orphan_label_is_warned_and_recorded(sweep) -> None:
    proc, out = sweep
    clean = json.loads((out / "0" / "result.json").read_text())
    orphan = json.loads((out / "1" / "result.json").read_text())
    assert clean["dataset"]["warnings"] == []
    (w,) = orphan["dataset"]["warnings"]
    assert w["kind"] == "orphan_labels" and w["count"] == 1
    assert w["examples"] == ["d_orphan.png"]
    assert "match no image" in w["message"]
    assert "d_orphan.png" in proc.stdout + proc.stderr  # logged when the job starts
    # the orphan changes nothing that is evaluated: same images and labels, same fingerprint
    assert clean["dataset"]["n_images"] == orphan["dataset"]["n_images"] == 2
    assert clean["dataset"]["fingerprint"] == orphan["dataset"]["fingerprint"]
    assert orphan["task_info"]["encoder_cache"]["hits"] == 1  # the encoder ran once in all
