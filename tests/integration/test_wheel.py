"""A non-editable wheel carries its configs, embedded dataset and launcher plugin, and the
command works from any directory with nothing of the checkout on the path."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_install_works_from_any_directory(tmp_path: Path) -> None:
    dist, site, elsewhere = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(dist.glob("sam_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "sam_bench/conf/config.yaml",
        "sam_bench/conf/sweep/quickstart.yaml",
        "sam_bench/conf/model/sam2.1_hiera_large.yaml",
        "sam_bench/datasets/synthetic/annotations.json",
        "sam_bench/datasets/synthetic/images/color_00.png",
        "hydra_plugins/sam_bench_launcher/grouping_launcher.py",
    ):
        assert needed in names, needed
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site), "SAM_BENCH_CACHE": str(tmp_path / "cache")}
    where = subprocess.run(
        [sys.executable, "-c", "import sam_bench; print(sam_bench.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(site)), where.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "sam_bench", "-m", "dry_run=true", "model.weights=random",
         "tracking=none", "amg.points_per_side=4,8", f"hydra.sweep.dir={tmp_path / 'OUT'}"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[dry run]")]
    assert len(lines) == 2 and all("(8 items)" in ln for ln in lines), proc.stdout
