#!/usr/bin/env bash
# GPU check: the one script to run on a machine with an NVIDIA GPU.
#
#   benchmarks/gpu_check.sh [--dry-run] [OUT_DIR]
#
# Steps, each ending with one line `gpu_check: PASS|FAIL|SKIP <step> (<seconds> s): <what>`:
#   cuda      torch can use CUDA here (else the reason: no driver, driver too old, ...)
#   install   make install (sam2's CUDA extension is built when nvcc is found; an existing
#             .venv without it is rebuilt with make install-cuda-ext), then whether it loads
#   test-gpu  make test-gpu REQUIRE_GPU=1: fails when no gpu test ran (REQUIRE_SAM2_EXT=1 too
#             when a CUDA toolkit is here: the extension must then load)
#   amg, prompted, video, semantic
#             one short sweep per task on device=cuda (random weights, tiny inputs: 1 image or
#             3 frames, 4x4 grid; video and semantic inputs drawn by gpu_check_data.py), and
#             its figures (latency, peak GPU memory) from summary.csv
# Every step runs even when an earlier one failed (each says why); the exit status is 1 when
# any step failed. Random weights: latency and memory are real, accuracy is not.
#
# Settings (environment):
#   GPU_CHECK_DEVICE=cuda     device of the sweeps (cpu: a smoke test of the mechanics)
#   GPU_CHECK_STEPS="..."     the steps to run (default: all, in the order above)
#   GPU_CHECK_INSTALL=1       0: use .venv as it is (no make install; make test-gpu without
#                             its install prerequisite)
#   GPU_CHECK_TIMEOUT=900     seconds per sweep
#   PYTHON                    interpreter of the sweeps (default .venv/bin/python)
# --dry-run prints each step's commands without running them.
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
out="${1:-$(mktemp -d -t sam_bench_gpu_check.XXXXXX)}"
device="${GPU_CHECK_DEVICE:-cuda}"
steps="${GPU_CHECK_STEPS:-cuda install test-gpu amg prompted video semantic}"
install="${GPU_CHECK_INSTALL:-1}"
timeout_s="${GPU_CHECK_TIMEOUT:-900}"
PY="${PYTHON:-.venv/bin/python}"
MAKE="${MAKE:-make}"
nvcc="$(command -v nvcc || { [[ -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/nvcc" ]] && echo "$CUDA_HOME/bin/nvcc"; } || true)"
mkdir -p "$out"
echo "gpu_check: output in $out (device=$device)"

failed=()
results=()

# run_step NAME DESCRIPTION COMMAND...: runs COMMAND (its output to $out/NAME.log and the
# terminal), then prints the step's result line.
run_step() {
    local name="$1" what="$2"
    shift 2
    echo
    echo "=== gpu_check: $name: $what"
    if ((dry_run)); then
        "$@"
        results+=("DRY-RUN $name: $what")
        return 0
    fi
    local start=$SECONDS status=0
    "$@" 2>&1 | tee "$out/$name.log" || status=$?
    local line
    if ((status == 0)); then
        line="PASS $name ($((SECONDS - start)) s): $what"
    else
        local why
        why="$(grep -E -m1 '^(gpu_check: reason|  job [0-9]+ \[failed\]|error|Error|FAILED|E  )' \
            "$out/$name.log" || tail -n1 "$out/$name.log")"
        line="FAIL $name ($((SECONDS - start)) s, exit $status): $what -- ${why:0:300} (log: $out/$name.log)"
        failed+=("$name")
    fi
    results+=("$line")
    echo "gpu_check: $line"
}

want() { [[ " $steps " == *" $1 "* ]]; }

# x COMMAND...: run it, or with --dry-run print it.
x() {
    if ((dry_run)); then
        printf '   '
        printf ' %q' "$@"
        echo
    else
        "$@"
    fi
}

step_cuda() {
    if ((dry_run)); then
        echo "    $PY -c 'sam_bench.environment.cuda_status()' (fails with the reason)"
        return
    fi
    "$PY" - <<'EOF'
import sys

from sam_bench.environment import cuda_status

s = cuda_status()
print(f"CUDA: {s.describe()}")
if not s.available:
    print(f"gpu_check: reason: CUDA is not available here: {s.reason}")
    sys.exit(1)
print(f"{s.device_count} device(s)")
EOF
}

ext_loads() { "$PY" -c "import sam2._C" >/dev/null 2>&1; }

step_install() {
    x "$MAKE" install || return
    if ((dry_run)); then
        [[ -n "$nvcc" ]] && echo "    (if sam2._C does not load:)" && x "$MAKE" install-cuda-ext
        return
    fi
    if [[ -n "$nvcc" ]] && ! ext_loads; then
        echo "CUDA toolkit at $nvcc and sam2's CUDA extension does not load: make install-cuda-ext"
        "$MAKE" install-cuda-ext || return
    fi
    if [[ -n "$nvcc" ]] && ! ext_loads; then
        echo "gpu_check: reason: sam2's CUDA extension was built but does not load"
        return 1
    fi
}

step_test_gpu() {
    local args=(test-gpu REQUIRE_GPU=1)
    ((install)) || args=(-o install "${args[@]}")
    # with a CUDA toolkit here the extension was built, so its gpu tests must not skip
    x env REQUIRE_SAM2_EXT="$([[ -n "$nvcc" ]] && echo 1)" "$MAKE" "${args[@]}"
}

# sweep NAME OVERRIDES...: one short sweep into $out/NAME, then its figures.
sweep() {
    local name="$1"
    shift
    x timeout "$timeout_s" "$PY" -m sam_bench -m "device=$device" model.weights=random \
        tracking=none progress=false "hydra.sweep.dir=$out/$name" "$@" || return
    ((dry_run)) && return
    "$PY" - "$out/$name" <<'EOF'
import csv
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
with (out / "summary.csv").open(newline="") as f:
    rows = list(csv.DictReader(f))
if not rows:
    sys.exit("gpu_check: reason: summary.csv has no job")
keys = ["status", "device", "latency_ms_p50", "peak_gpu_mem_mb", "encoder_ms_mean", "fps"]


def cell(value: str) -> str:
    """Figures to 0.01 (ms, MB, frames/s); words as written."""
    try:
        return f"{float(value):.2f}"
    except ValueError:
        return value


for r in rows:
    print("  ".join(f"{k}={cell(r[k])}" for k in keys if r.get(k) not in (None, "")))
first = next(out.glob("*/result.json"), None)
if first is not None:
    env = json.loads(first.read_text()).get("environment", {})
    facts = ["device_name", "torch", "cuda_torch", "cuda_driver", "cudnn_version",
             "cuda_matmul_allow_tf32", "cuda_extension_built", "cuda_extension",
             "cuda_extension_error"]
    print("environment:", {k: env.get(k) for k in facts})
bad = [r for r in rows if r.get("status") != "ok"]
if bad:
    print(f"gpu_check: reason: {len(bad)} job(s) not ok: {bad[0].get('error')}")
    sys.exit(1)
EOF
}

data="$out/data"
make_data() {
    [[ -f "$data/semantic/classes.txt" ]] || "$PY" benchmarks/gpu_check_data.py "$data"
}

want cuda && run_step cuda "torch can use CUDA" step_cuda
if want install; then
    if ((install)); then
        run_step install "make install (+ sam2's CUDA extension where nvcc is found: ${nvcc:-none})" \
            step_install
    else
        results+=("SKIP install: GPU_CHECK_INSTALL=0 (.venv as it is)")
        echo "gpu_check: SKIP install: GPU_CHECK_INSTALL=0"
    fi
fi
want test-gpu && run_step test-gpu "make test-gpu REQUIRE_GPU=1" step_test_gpu
want amg && run_step amg "AMG sweep, 4x4 grid x 2 IoU thresholds, 1 image" \
    sweep amg amg.points_per_side=4 amg.pred_iou_thresh=0,0.5 dataset.limit=1
want prompted && run_step prompted "prompted sweep, box and 1 click, 1 image" \
    sweep prompted task=prompted prompt.mode=box,click dataset.limit=1
if want video; then
    ((dry_run)) || make_data >/dev/null
    run_step video "video sweep, mask prompt, 3 frames of a synthetic sequence" \
        sweep video task=video dataset=davis "dataset.root=$data/video" dataset.max_frames=3
fi
if want semantic; then
    ((dry_run)) || make_data >/dev/null
    run_step semantic "semantic sweep, CLIP ViT-B-32 (random weights), 4x4 grid, 1 image" \
        sweep semantic task=semantic semantic.clip_weights=random semantic.clip_model=ViT-B-32 \
        amg.points_per_side=4 dataset=semantic_folder "dataset.images=$data/semantic/images" \
        "dataset.labels=$data/semantic/labels" "dataset.classes=$data/semantic/classes.txt" \
        dataset.limit=1
fi

echo
echo "gpu_check: summary (device=$device, output $out)"
for line in "${results[@]}"; do
    echo "  $line"
done
if ((dry_run)); then
    echo "gpu_check: dry run: nothing ran"
    exit 0
fi
if ((${#failed[@]})); then
    echo "gpu_check: FAILED: ${failed[*]}"
    exit 1
fi
echo "gpu_check: all steps passed"
