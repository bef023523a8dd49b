"""The golden sweeps: one small two-job ``python -m sam_bench -m ...`` sweep per task, the data
each one reads (written here, nothing from ``../shared``) and how a sweep's output is read.

Shared by ``tests/integration/test_golden_tasks.py`` (compares a fresh run with
``tests/golden/tasks.json``) and ``tests/golden/make_golden.py`` (writes that file). The inputs
are frozen copies on purpose (not imports of other test fixtures): changing anything here
changes what the golden file pins, so regenerate it in the same commit.

Every sweep runs on the CPU with the random-weight ``sam2.1_hiera_tiny`` (deterministic from
the seed), ``tracking=none``, no warm-up pass, and ``OMP_NUM_THREADS=2`` so the float sums do
not depend on the machine's core count.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
GOLDEN_FILE = Path(__file__).resolve().parent / "tasks.json"

#: Settings of every sweep (CPU, random weights, quiet, no warm-up pass: it changes no result).
COMMON = ["model=sam2.1_hiera_tiny", "model.weights=random", "device=cpu", "warmup=false",
          "tracking=none", "progress=false"]  # fmt: skip
#: AMG thresholds off: random weights would keep no mask otherwise.
KEEP_MASKS = ["amg.pred_iou_thresh=0", "amg.stability_score_thresh=0"]
#: Environment of every run (besides an empty checkpoint cache and no MLflow URI).
ENV = {"OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

#: Per task: the overrides of the sweep (``{data}`` = the folder :func:`write_data` filled) and
#: the swept setting, two values: jobs are named (matched) by ``key=value`` of that setting.
SWEEPS: dict[str, dict[str, Any]] = {
    "amg": {
        "overrides": [
            "task=amg",
            *KEEP_MASKS,
            "amg.points_per_side=4",
            "dataset=synthetic",
            "dataset.limit=2",
            "seed=0",
        ],
        "sweep": ["amg.box_nms_thresh", ["0.7", "1.0"]],
    },
    "prompted": {
        "overrides": [
            "task=prompted",
            "prompt.max_clicks=3",
            "prompt.box_jitter=0.1",
            "dataset=synthetic",
            "dataset.limit=1",
            "seed=0",
        ],
        "sweep": ["prompt.mode", ["box", "clicks"]],
    },
    "video": {
        "overrides": ["task=video", "dataset=davis", "dataset.root={data}/DAVIS", "seed=0"],
        "sweep": ["prompt.mode", ["mask", "click"]],
    },
    "semantic": {
        "overrides": [
            "task=semantic",
            "dataset=semantic_folder",
            "dataset.images={data}/img",
            "dataset.labels={data}/sem",
            "dataset.annotations={data}/inst",
            "dataset.classes={data}/classes.txt",
            "dataset.void_index=9",
            "semantic.clip_model=local-dir:{data}/tiny_clip",
            "semantic.clip_weights=random",
            "semantic.min_confidence=0.45",
            *KEEP_MASKS,
            "amg.box_nms_thresh=1.0",
            "amg.points_per_side=4",
            "seed=2",
        ],
        "sweep": ["semantic.crop", ["box", "blur"]],
    },
}
TASKS = tuple(SWEEPS)

#: Metric kinds never compared (time, memory, throughput); their names still are.
SKIPPED_KINDS = ("cost",)
#: Name fragments of cost metrics, in case one is not declared ``cost``.
COST_NAME_PARTS = ("latency", "_ms", "per_s", "fps", "peak_", "rss", "model_build_s",
                   "build_s", "encode_s")  # fmt: skip


def is_cost(name: str, kind: str | None) -> bool:
    return kind in SKIPPED_KINDS or any(part in name for part in COST_NAME_PARTS)


def sweep_args(task: str, data: Path, out: Path) -> list[str]:
    """The command line after ``python -m sam_bench``."""
    spec = SWEEPS[task]
    key, values = spec["sweep"]
    fixed = [o.replace("{data}", str(data)) for o in spec["overrides"]]
    return ["-m", *COMMON, *fixed, f"{key}={','.join(values)}", f"hydra.sweep.dir={out}"]


def job_names(task: str) -> list[str]:
    key, values = SWEEPS[task]["sweep"]
    return [f"{key}={v}" for v in values]


# ---------------------------------------------------------------------------------------------
# data


def write_data(task: str, root: Path) -> Path:
    """Write what ``task``'s sweep reads into ``root`` (nothing for the embedded dataset)."""
    root.mkdir(parents=True, exist_ok=True)
    if task == "video":
        _write_davis(root / "DAVIS")
    elif task == "semantic":
        _write_street(root)
        _write_tiny_open_clip(root / "tiny_clip")
    return root


def _davis_palette() -> list[int]:
    return [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 253


def _write_davis(root: Path, n_frames: int = 4, h: int = 96, w: int = 128) -> None:
    """One DAVIS 2017-style sequence ``shapes``: object 1 an ellipse moving right from frame
    0, object 2 a rectangle appearing on frame 1 (a late object); textured background; JPEG
    frames and palette PNGs of object ids."""
    rng = np.random.default_rng(0)
    frames = root / "JPEGImages" / "480p" / "shapes"
    anns = root / "Annotations" / "480p" / "shapes"
    frames.mkdir(parents=True)
    anns.mkdir(parents=True)
    yy, xx = np.mgrid[:h, :w]
    background = (rng.integers(40, 90, (h, w, 3)) + (xx[..., None] // 8) * 3).clip(0, 255)
    for t in range(n_frames):
        ids = np.zeros((h, w), np.uint8)
        cx, cy = 30 + 8 * t, 40 + 2 * t
        ids[((xx - cx) / 18.0) ** 2 + ((yy - cy) / 12.0) ** 2 <= 1] = 1
        if t >= 1:
            ids[60 + t : 84 + t, 80 - 3 * t : 112 - 3 * t] = 2
        colours = np.array([(0, 0, 0), (220, 180, 40), (40, 90, 220)])
        img = np.where(ids[..., None] > 0, colours[ids], background)
        img = (img + rng.integers(-12, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(frames / f"{t:05d}.jpg", quality=95)
        ann = Image.fromarray(ids)  # L; putpalette makes it P
        ann.putpalette(_davis_palette())
        ann.save(anns / f"{t:05d}.png")


def _write_street(root: Path) -> None:
    """Two 48x64 images with class maps (sky / road / car, a void corner) and instance maps;
    each class region has its own colour (plus noise), so CLIP's crops differ."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        sem = np.zeros((48, 64), np.uint8)
        sem[20:, :] = 1
        sem[24:40, 8:30] = 2
        sem[:4, :4] = 9
        colours = np.array([(60, 120, 230), (110, 110, 110), (200, 30, 30)] + [(0, 0, 0)] * 7)
        noise = rng.integers(-25, 25, (48, 64, 3))
        img = (colours[sem] + noise).clip(0, 255).astype(np.uint8)
        inst = np.zeros((48, 64), np.uint8)
        inst[24:40, 8:30] = 1
        inst[5:15, 40:60] = 2
        for folder, arr in (("img", img), ("sem", sem), ("inst", inst)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / folder / f"{name}.png")
    (root / "classes.txt").write_text("0 sky\n1 road | street\n2 car\n9 void\n")


#: A 2-layer, 64-wide open_clip ViT / text transformer (open_clip's packaged tokenizer).
OPEN_CLIP_TINY = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 2},
    },
    "preprocess_cfg": {},
}  # fmt: skip


def _write_tiny_open_clip(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(OPEN_CLIP_TINY))


# ---------------------------------------------------------------------------------------------
# running and reading a sweep


def run_sweep(task: str, cwd: Path, timeout: int = 900) -> tuple[subprocess.CompletedProcess, Path]:
    """Write the task's data under ``cwd`` and run its sweep there, as a user would: a fresh
    process, an empty checkpoint cache, no inherited MLflow URI, this checkout first on the
    path. Returns the process and the sweep folder."""
    data = write_data(task, cwd / "data")
    out = cwd / "OUT"
    env = {**os.environ, "SAM_BENCH_CACHE": str(cwd / "ckpt-cache"), **ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "sam_bench", *sweep_args(task, data, out)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return proc, out


#: Sweeps already run in this test session, by task: (process, sweep folder, seconds).
_RUN: dict[str, tuple[subprocess.CompletedProcess, Path, float]] = {}


def session_sweep(
    task: str, tmp_path_factory: Any, timeout: int = 900
) -> tuple[subprocess.CompletedProcess, Path, float]:
    """The task's golden sweep, run once per test session (in a folder of
    ``tmp_path_factory``) and shared by every test that reads it (the golden values, the
    analysis notebook): the process, the sweep folder and how long it took. Tests must not
    change the folder."""
    if task not in _RUN:
        import time

        start = time.perf_counter()
        proc, out = run_sweep(task, tmp_path_factory.mktemp(f"golden-{task}"), timeout)
        _RUN[task] = (proc, out, time.perf_counter() - start)
    return _RUN[task]


def _num(value: Any) -> float | None:
    """A metric value as a float; ``None`` for a missing / NaN / empty value."""
    if value is None or value == "":
        return None
    v = float(value)
    return None if math.isnan(v) else v


def read_sweep(task: str, out: Path) -> dict[str, dict[str, Any]]:
    """What the golden file pins of each job of a finished sweep, by job name (``key=value``
    of the swept setting): ``config_id``, ``status``, every metric name with its kind, the
    non-cost metric values from ``result.json`` and the same columns of ``summary.csv``."""
    key = SWEEPS[task]["sweep"][0]
    summary_path = out / "summary.csv"
    with summary_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    jobs: dict[str, dict[str, Any]] = {}
    for row in rows:
        rec = json.loads((out / row["job"] / "result.json").read_text())
        swept = [o for o in rec["overrides"] if o.startswith(f"{key}=")]
        if len(swept) != 1:
            raise AssertionError(f"{task}: job {row['job']} overrides {rec['overrides']} name "
                                 f"no single {key}=...")  # fmt: skip
        name = swept[0]
        if name in jobs:
            raise AssertionError(f"{task}: two jobs with {name}")
        info = rec.get("metric_info", {})
        kinds = {m: info.get(m, {}).get("kind") for m in rec["metrics"]}
        compared = sorted(m for m, k in kinds.items() if not is_cost(m, k))
        jobs[name] = {
            "config_id": rec["config_id"],
            "status": rec["status"],
            "metric_kinds": dict(sorted(kinds.items())),
            "metrics": {m: _num(rec["metrics"][m]) for m in compared},
            "summary": {m: _num(row.get(m)) for m in compared},
            "summary_config_id": row.get("config_id"),
        }
    return jobs


def versions() -> dict[str, str]:
    """Versions of the libraries the pinned values depend on (JPEG / PNG bytes, float sums)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for dist in ("torch", "numpy", "pillow", "opencv-python-headless", "opencv-python", "sam2",
                 "open_clip_torch", "pycocotools"):  # fmt: skip
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def golden_entry(task: str, jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The golden file's entry of a task (its sweep's settings and every job's values)."""
    spec = SWEEPS[task]
    return {
        "command": ["python", "-m", "sam_bench", *sweep_args(task, Path("{data}"), Path("OUT"))],
        "overrides": [*COMMON, *spec["overrides"]],
        "sweep": spec["sweep"],
        "env": ENV,
        "jobs": {
            name: {
                "config_id": job["config_id"],
                "status": job["status"],
                "metric_kinds": job["metric_kinds"],
                "metrics": job["metrics"],
            }
            for name, job in sorted(jobs.items())
        },
    }
