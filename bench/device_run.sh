#!/usr/bin/env bash
# One device session: GPU tests, the demo and the side-by-side benchmark, logs under $OUT.
#   bench/device_run.sh [tests|demo|bench|all]...   (default: all)
# Expects dist/ (tools/make_dist.sh) in the working tree copy.
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/dist/lib:${LD_LIBRARY_PATH:-}
export FLEXJIT_CACHE_DIR=/tmp/flexjit-cache PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
what=${*:-all}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$out/gpu.txt"
python3 -c "import matplotlib; print('matplotlib', matplotlib.__version__)" 2>&1 | tail -1 | tee -a "$out/gpu.txt"
status=0
if [[ $what == *all* || $what == *tests* ]]; then
  dist/bin/flexjit_tests --gtest_filter='*Gpu*:RuntimeDriver*:BlockMask*:AttentionCpu*' 2>&1 | tee "$out/gpu_tests.log" | \
    grep -E "^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure|error" | head -60
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi
if [[ $what == *all* || $what == *demo* ]]; then
  dist/bin/flexjit demo --reps 10 > "$out/demo.log" 2>&1 || status=1
  tail -20 "$out/demo.log"
fi
if [[ $what == *all* || $what == *bench* ]]; then
  python3 bench/run_bench.py --flexjit dist/bin/flexjit --out "$out" ${BENCH_ARGS:-} 2>"$out/bench.err" || { status=1; tail -20 "$out/bench.err"; }
fi
exit $status
