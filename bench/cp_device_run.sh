#!/usr/bin/env bash
# Context parallelism (issue 16) on a machine with >= 2 GPUs: builds the Python module against dist/lib, runs
# tests/python/test_distributed.py (gloo on the CPU, a step's backward on one GPU, NCCL on every GPU up to
# 4) and bench/ring_bench.py (2 GPUs, B1 H16 S131072 D128 bf16 causal zigzag, forward and forward +
# backward). Logs and ring_*.json under $OUT; the last lines printed are the summary.
#   bench/cp_device_run.sh [tests] [bench]   (default: both; as separate device calls each fits in 10 minutes)
# Expects dist/ (tools/make_dist.sh) in the working tree copy; BENCH_ARGS adds ring_bench.py options. The
# module build in /tmp/build-py and the kernel cache in /tmp/flexjit-cache are reused by a later call on the
# same (warm) machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/dist/lib:${LD_LIBRARY_PATH:-}
export FLEXJIT_CACHE_DIR=${FLEXJIT_CACHE_DIR:-/tmp/flexjit-cache} PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
what=${*:-tests bench}
want() { [[ " $what " == *" $1 "* ]]; }
summary=()
status=0
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nvidia-smi topo -m >> "$out/gpu.txt" 2>&1
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)

(cmake -S python -B /tmp/build-py -G Ninja -DFLEXJIT_PREBUILT_LIB=$PWD/dist/lib/libflexjit.so \
   -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/build-py -j8) > "$out/python_build.log" 2>&1 \
  || { tail -20 "$out/python_build.log"; exit 1; }
export PYTHONPATH=/tmp/build-py${PYTHONPATH:+:$PYTHONPATH}

if want tests; then
  timeout ${PY_TEST_TIMEOUT:-540} python3 -m pytest -q -rs tests/python/test_distributed.py -p no:cacheprovider \
    2>&1 | tee "$out/pytest_distributed.log" | tail -25
  [[ ${PIPESTATUS[0]} == 0 ]] || status=1
  summary+=("pytest test_distributed.py ($gpus GPUs): $(grep -E 'passed|failed' "$out/pytest_distributed.log" | tail -1)")
fi

if want bench; then
  for args in "" "--backward"; do
    name=ring_2gpu${args:+_bwd}
    timeout ${BENCH_TIMEOUT:-270} torchrun --standalone --nproc_per_node=2 bench/ring_bench.py $args \
      ${BENCH_ARGS:-} --json "$out/$name.json" > "$out/$name.log" 2>&1
    rc=$?
    [[ $rc == 0 ]] || { tail -30 "$out/$name.log"; status=1; }
    summary+=("ring_bench $name (rc $rc): $(grep -E '^fwd' "$out/$name.log" | tr '\n' ';')")
  done
fi

printf '%s\n' "${summary[@]}"
exit $status
