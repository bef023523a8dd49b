#!/usr/bin/env bash
# GPU check: the CUDA test tier, then a quickstart-sized sweep on the GPU, and its figures.
#
#   benchmarks/gpu_check.sh [SWEEP_DIR]
#
# Needs a machine where torch can use CUDA (it stops at once, saying why, where it cannot),
# and `make install` done. Random weights: the latency and memory figures are real, the
# accuracy figures are not. SWEEP_DIR defaults to a new temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

"$PY" - <<'EOF'
import sys

from sam_bench.environment import cuda_status

s = cuda_status()
print(f"CUDA: {s.describe()}")
if not s.available:
    sys.exit("gpu_check: CUDA is not available here; nothing to check")
EOF

make test-gpu

out="${1:-$(mktemp -d -t sam_bench_gpu_check.XXXXXX)}"
status=0
"$PY" -m sam_bench -m device=cuda model.weights=random \
    amg.points_per_side=8,16 amg.pred_iou_thresh=0,0.5 dataset.limit=4 tracking=none \
    hydra.sweep.dir="$out" || status=$?

"$PY" - "$out" <<'EOF'
import csv
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
with (out / "summary.csv").open(newline="") as f:
    rows = list(csv.DictReader(f))
cols = [
    "amg.points_per_side", "amg.pred_iou_thresh", "status", "latency_ms_p50",
    "peak_gpu_mem_mb", "encoder_ms_mean", "decoder_ms_mean",
]
print(f"\nsummary ({out / 'summary.csv'}):")


def cell(column: str, value: str | None) -> str:
    """Figures to 0.1 (ms, MB); overrides and status as written."""
    if not value or column.startswith("amg.") or column == "status":
        return value or ""
    try:
        return f"{float(value):.1f}"
    except ValueError:
        return value


print("  ".join(f"{c:>20}" for c in cols))
for r in rows:
    print("  ".join(f"{cell(c, r.get(c)):>20}" for c in cols))
first = next(out.glob("*/result.json"), None)
if first is not None:
    rec = json.loads(first.read_text())
    env = rec.get("environment", {})
    keys = [
        "device", "device_name", "torch", "cuda_torch", "cuda_driver", "cuda_driver_supports",
        "cudnn_version", "cuda_matmul_allow_tf32", "cudnn_allow_tf32",
        "float32_matmul_precision", "cuda_extension", "cuda_extension_error",
    ]
    print("\nenvironment:", {k: env.get(k) for k in keys})
    print("cc_impl:", (rec.get("task_info") or {}).get("cc_impl"))
EOF
exit "$status"
