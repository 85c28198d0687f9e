#!/usr/bin/env bash
# One device session: GPU tests, the Python module, the demo and the side-by-side benchmark; logs under $OUT.
#   bench/device_run.sh [tests] [python] [selftest] [demo] [bench]   (default: all of them)
#     tests     every C++ GPU test (forward, block masks, driver, backward), sharded over processes
#     python    builds the pybind11 module against dist/lib and runs tests/python/test_gpu.py (PY_GPU_FILES:
#               other test files, PY_GPU_K: a -k expression, PY_GPU_WORKERS: pytest-xdist processes)
#     pybuild   only builds the module (for `bench` with BENCH_ARGS=--python-frontend)
#     selftest  the nvcc-built forward self-test's timings, then `flexjit bench` on the same shapes
#     demo      `flexjit demo`
#     bench     bench/run_bench.py (BENCH_ARGS adds options, e.g. "--backward --python-frontend")
#     hooks     tests/python/test_hooks.py (sinks, prob_mod, Lazy Attention on the GPU)
#     decode    bench/decode.py: the decode family against FA2, torch flex (compiled) and flexjit's prefill
#               family (DECODE_ARGS adds options)
#     sanitize  compute-sanitizer memcheck and racecheck over the seed variants' forward (both families),
#               backward and block-mask GPU tests (SANITIZE_FILTER narrows them)
#     nsa       bench/nsa.py: Native Sparse Attention and each branch against FA2 causal (NSA_ARGS adds options)
#     overhead  bench/compile_overhead.py: microseconds per call, direct vs the custom op, compiled, CUDA graphs
#     gated     bench/gated.py: GatedFWA's gated window against the plain window (GATED_ARGS adds options)
#     lazy      bench/lazy_attention.py against the seed's Triton and eager versions (needs the seed file at
#               dist/seeds/lazy_attention_000.txt: tools/make_dist.sh copies it from ../shared/seeds)
# GPU_TEST_FILTER narrows `tests` to a gtest filter (default: every GPU test).
# Kernel cache across machines: dist/kcache.tar.gz / .tar.xz (if carried) seed $FLEXJIT_CACHE_DIR before anything runs;
# KCACHE_OUT=1 packs the cache into $OUT/kcache.tar.gz at the end (when under the 16 MiB a returned file may
# hold), so that the next call on a fresh machine runs kernels instead of compiling them again.
# Expects dist/ (tools/make_dist.sh) in the working tree copy. The last lines printed are the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/dist/lib:${LD_LIBRARY_PATH:-}
export FLEXJIT_CACHE_DIR=${FLEXJIT_CACHE_DIR:-/tmp/flexjit-cache} PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}
mkdir -p "$out"
what=${*:-tests python selftest demo bench}
want() { [[ " $what " == *" $1 "* ]]; }
summary=()
note() { summary+=("$1"); }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$out/gpu.txt"
status=0
for cache in dist/kcache.tar.gz dist/kcache.tar.xz; do
  [[ -f $cache ]] || continue
  mkdir -p "$FLEXJIT_CACHE_DIR" && tar -xaf "$cache" -C "$FLEXJIT_CACHE_DIR" \
    && echo "kernel cache: $(find "$FLEXJIT_CACHE_DIR" -name '*.kernel' | wc -l) entries after $cache"
done

# The modes that run Python against the module built here.
needs_py=0
for mode in python pybuild hooks lazy decode nsa gated overhead; do want $mode && needs_py=1; done

if [[ $needs_py == 1 ]]; then  # configure and build in the background while the C++ tests run
  (cmake -S python -B /tmp/build-py -G Ninja -DFLEXJIT_PREBUILT_LIB=$PWD/dist/lib/libflexjit.so \
     -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/build-py -j8) > "$out/python_build.log" 2>&1 &
  py_build=$!
fi

if want tests; then
  shards=${GPU_TEST_SHARDS:-8}
  pids=()
  for i in $(seq 0 $((shards - 1))); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i timeout ${GPU_TEST_TIMEOUT:-300} dist/bin/flexjit_tests \
      --gtest_filter="${GPU_TEST_FILTER:-*Gpu*:RuntimeDriver*:BlockMask*:AttentionCpu*}" > "/tmp/gpu_tests_$i.log" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  cat /tmp/gpu_tests_*.log > "$out/gpu_tests.log"
  passed=$(grep -c "^\[       OK \]" "$out/gpu_tests.log")
  failed=$(grep -cE "^\[  FAILED  \] .*\([0-9]+ ms\)$" "$out/gpu_tests.log")
  skipped=$(grep -cE "^\[  SKIPPED \] .*\([0-9]+ ms\)$" "$out/gpu_tests.log")
  grep -E "^\[  FAILED  \].*\(|Failure$" "$out/gpu_tests.log" | head -20
  [[ $(grep -c "^\[  PASSED  \]" "$out/gpu_tests.log") == "$shards" ]] || { echo "gtest: $(grep -c "^\[  PASSED  \]" "$out/gpu_tests.log")/$shards shards finished"; failed=$((failed + 1)); }
  grep -h "^\[ backward \]" "$out/gpu_tests.log" | sort > "$out/backward_errors.txt"
  note "C++ GPU tests: $passed passed, $failed failed, $skipped skipped"
  [[ $failed == 0 ]] || status=1
fi

if [[ $needs_py == 1 ]]; then
  wait $py_build || { tail -20 "$out/python_build.log"; status=1; }
  export PYTHONPATH=/tmp/build-py${PYTHONPATH:+:$PYTHONPATH}
fi

if want python; then
  timeout ${PY_TEST_TIMEOUT:-300} python3 -m pytest -q ${PY_GPU_FILES:-tests/python/test_gpu.py} ${PY_GPU_K:+-k "$PY_GPU_K"} ${PY_GPU_WORKERS:+-n $PY_GPU_WORKERS} \
    -p no:cacheprovider 2>&1 | tee "$out/pytest_gpu.log" | tail -15
  rc=${PIPESTATUS[0]}
  note "pytest ${PY_GPU_FILES:-tests/python/test_gpu.py}: $(grep -E '^[0-9]+ (passed|failed)|passed|failed' "$out/pytest_gpu.log" | tail -1)"
  [[ $rc == 0 ]] || status=1
fi

if want hooks; then
  timeout ${PY_TEST_TIMEOUT:-300} python3 -m pytest -q tests/python/test_hooks.py -p no:cacheprovider 2>&1 \
    | tee "$out/pytest_hooks.log" | tail -8
  rc=${PIPESTATUS[0]}
  note "pytest test_hooks.py: $(grep -E 'passed|failed' "$out/pytest_hooks.log" | tail -1)"
  [[ $rc == 0 ]] || status=1
fi

if want decode; then
  timeout 300 python3 bench/decode.py --out "$out" ${DECODE_ARGS:-} 2>"$out/decode.err" | tee "$out/decode.log" \
    || { status=1; tail -20 "$out/decode.err"; }
fi

if want sanitize; then
  filter=${SANITIZE_FILTER:-Families/AttentionGpuFamily.EverySeedVariant*:Seeds/AttentionBackwardGpuSeeds.MatchesTheReference/*:AttentionBackwardGpu.*:AttentionBackwardGpuSm90Rows.*:BlockMaskGpu*:DecodeGpu.*}
  # The kernels first, compiled in 8 sharded processes without the tool (under compute-sanitizer one
  # process compiled them one after the other: 300 s were not enough, 2026-12-02); then both tools side
  # by side on the warm cache.
  # The warm-up runs are the tests themselves: their results are kept and counted.
  for i in $(seq 0 7); do
    GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout ${SANITIZE_WARM_TIMEOUT:-240} dist/bin/flexjit_tests \
      --gtest_filter="$filter" > "/tmp/sanitize_warm_$i.log" 2>&1 &
  done
  wait
  cat /tmp/sanitize_warm_*.log > "$out/sanitize_warm.log"
  grep -E "^\[  FAILED  \].*\(|Failure$" "$out/sanitize_warm.log" | head -10
  note "sanitize warm-up (no tool): $(grep -c '^\[       OK \]' "$out/sanitize_warm.log") passed, $(grep -cE '^\[  FAILED  \] .*\([0-9]+ ms\)$' "$out/sanitize_warm.log") failed, $(grep -c '^\[  PASSED  \]' "$out/sanitize_warm.log")/8 shards finished"
  # Each tool over SANITIZE_SHARDS gtest shards (default 4), both tools side by side.
  sshards=${SANITIZE_SHARDS:-4}
  for tool in memcheck racecheck; do
    for i in $(seq 0 $((sshards - 1))); do
      # racecheck names each hazard's threads and blocks (SANITIZE_RACECHECK_ARGS; the default report gives
      # only the instruction pairs).
      extra=""
      [[ $tool == racecheck ]] && extra=${SANITIZE_RACECHECK_ARGS:---racecheck-report hazard --print-limit 30}
      (GTEST_TOTAL_SHARDS=$sshards GTEST_SHARD_INDEX=$i timeout ${SANITIZE_TIMEOUT:-400} compute-sanitizer --tool $tool \
         $extra --error-exitcode 3 dist/bin/flexjit_tests --gtest_filter="$filter" > "/tmp/sanitize_${tool}_$i.log" 2>&1
       echo "rc=$?" >> "/tmp/sanitize_${tool}_$i.log") &
    done
  done
  wait
  for tool in memcheck racecheck; do
    cat /tmp/sanitize_${tool}_*.log > "$out/sanitize_$tool.log"
    rcs=$(grep -h "^rc=" /tmp/sanitize_${tool}_*.log | sed 's/rc=//' | sort -u | tr '\n' ' ')
    errors=$(grep -hE "ERROR SUMMARY|RACECHECK SUMMARY" /tmp/sanitize_${tool}_*.log | sort | uniq -c | tr '\n' ';')
    note "compute-sanitizer $tool ($sshards shards): rc ${rcs}, ${errors:-no summary} ($(grep -c '^\[       OK \]' "$out/sanitize_$tool.log") tests ran, $(grep -c '^\[  PASSED  \]' "$out/sanitize_$tool.log")/$sshards shards finished)"
    [[ $rcs == "0 " ]] || status=1
  done
fi

if want nsa; then
  timeout 300 python3 bench/nsa.py --out "$out" ${NSA_ARGS:-} 2>"$out/nsa.err" | tee "$out/nsa.log" \
    || { status=1; tail -20 "$out/nsa.err"; }
fi

if want overhead; then
  timeout 300 python3 bench/compile_overhead.py ${OVERHEAD_ARGS:-} 2>"$out/overhead.err" | tee "$out/overhead.log" \
    || { status=1; tail -20 "$out/overhead.err"; }
fi

if want gated; then
  timeout 300 python3 bench/gated.py --out "$out" ${GATED_ARGS:-} 2>"$out/gated.err" | tee "$out/gated.log" \
    || { status=1; tail -20 "$out/gated.err"; }
fi

if want lazy; then
  timeout 300 python3 bench/lazy_attention.py --seed dist/seeds/lazy_attention_000.txt --out "$out" \
    ${LAZY_ARGS:-} 2>"$out/lazy.err" | tee "$out/lazy.log" || { status=1; tail -20 "$out/lazy.err"; }
fi

if want selftest; then
  nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. bench/fwd_selftest.cu -o /tmp/fwd_selftest \
    > "$out/selftest_build.log" 2>&1 || { tail "$out/selftest_build.log"; status=1; }
  timeout 200 /tmp/fwd_selftest --bench-only 2>&1 | tee "$out/selftest.log" | tail -12
  timeout 200 dist/bin/flexjit bench --variants noop,causal --reps 20 --mask-seqs 8192 2>&1 | tee "$out/flexjit_bench.log" | tail -12
fi

if want demo; then
  dist/bin/flexjit demo --reps 10 > "$out/demo.log" 2>&1 || status=1
  tail -20 "$out/demo.log"
fi

if want bench; then
  python3 bench/run_bench.py --flexjit dist/bin/flexjit --out "$out" ${BENCH_ARGS:-} 2>"$out/bench.err" || { status=1; tail -20 "$out/bench.err"; }
fi
if [[ ${KCACHE_OUT:-0} == 1 && -d $FLEXJIT_CACHE_DIR ]]; then
  tar -czf /tmp/kcache.tar.gz -C "$FLEXJIT_CACHE_DIR" . && size=$(stat -c %s /tmp/kcache.tar.gz)
  if (( size < 16000000 )); then cp /tmp/kcache.tar.gz "$out/"; note "kernel cache packed: $size bytes"
  else note "kernel cache not packed: $size bytes is over the 16 MB a returned file may hold"; fi
fi
printf '%s\n' "${summary[@]}"
exit $status
