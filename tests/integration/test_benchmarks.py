"""``make bench`` runs: its quick form prints one table row per comparison with the outputs'
agreement. Times are never asserted (machines are noisy); exactness is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_make_bench_quick_prints_a_row_per_comparison_with_agreement() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "decoder", "prompted"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| bench_")]
    assert len(rows) == 9, proc.stdout[-3000:]
    decoder_speed = next(r for r in rows if "MaskDecoder (upstream)" in r)
    assert "bit-identical: True" in decoder_speed
    for row in (r for r in rows if r.startswith("| bench_prompted")):
        iou = float(row.split("min mask IoU ")[1].split()[0])
        assert iou >= 0.999, row


def test_unknown_benchmark_is_refused_with_the_choices() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "decodr"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "unknown benchmark 'decodr'" in proc.stderr and "decoder" in proc.stderr
