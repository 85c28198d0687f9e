#!/usr/bin/env bash
# One device session for the attention backward: the GPU accuracy tests (sharded over processes so the
# NVRTC builds and CPU references run in parallel), then the timings of tests/unit/attention_backward_
# bench_test.cpp. Logs go to $OUT; the last lines printed are the summary.
#   bench/bwd_device_run.sh [tests|bench|all]      (expects dist/ from tools/make_dist.sh)
#   BWD_BENCH_CONFIGS="u2:unroll=2;..."           extra tile configurations to time (see the bench test)
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/dist/lib:${LD_LIBRARY_PATH:-}
export FLEXJIT_CACHE_DIR=${FLEXJIT_CACHE_DIR:-/tmp/flexjit-cache}
out=${OUT:-/tmp/out}
mkdir -p "$out"
what=${1:-all}
shards=${BWD_SHARDS:-8}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
status=0
if [[ $what == all || $what == tests ]]; then
  for i in $(seq 0 $((shards - 1))); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout ${BWD_TEST_TIMEOUT:-200} dist/bin/flexjit_tests \
      --gtest_filter='*AttentionBackwardGpu*' > "/tmp/bwd_tests_$i.log" 2>&1 &
  done
  wait
  cat /tmp/bwd_tests_*.log > "$out/tests.log"
  grep -hE "^\[  (PASSED|FAILED) |^\[  FAILED  \].*,|Failure" "$out/tests.log" | sort | uniq -c | head -40
  grep -q "FAILED" "$out/tests.log" && status=1
  grep -h "^\[ backward \]" "$out/tests.log" | sort > "$out/backward_errors.txt"
  echo "cases: $(wc -l < "$out/backward_errors.txt")"
fi
if [[ $what == all || $what == bench ]]; then
  FLEXJIT_BWD_BENCH=1 FLEXJIT_BWD_BENCH_CONFIGS="${BWD_BENCH_CONFIGS:-}" FLEXJIT_BWD_BENCH_SHAPES=${BWD_BENCH_SHAPES:-99} timeout ${BWD_BENCH_TIMEOUT:-240} \
    dist/bin/flexjit_tests --gtest_filter='AttentionBackwardBench*' > "$out/bench.log" 2>&1 || status=1
  grep -E "^\[ bench \]|Failure|FAILED" "$out/bench.log"
fi
exit $status
