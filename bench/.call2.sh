export OUT2=$OUT OUT=/tmp/o; mkdir -p /tmp/o
export LD_LIBRARY_PATH=$PWD/dist/lib FLEXJIT_CACHE_DIR=/tmp/flexjit-cache
nvidia-smi --query-gpu=name,clocks.sm --format=csv,noheader
timeout 120 dist/bin/flexjit_tests --gtest_filter='AttentionBackwardGpuSm90Rows.*:Seeds/AttentionBackwardGpuSm90.MatchesTheReference/noop' > /tmp/o/smoke.log 2>&1; rc=$?
grep -E "backward \]|Failure|error|OK|FAILED" /tmp/o/smoke.log | head -40; echo "smoke rc=$rc"
if [ $rc = 0 ]; then
  GPU_TEST_SHARDS=8 GPU_TEST_TIMEOUT=200 GPU_TEST_FILTER='Seeds/AttentionBackwardGpuSm90.*' bash bench/device_run.sh tests > /tmp/o/run.log 2>&1
  tail -3 /tmp/o/run.log; grep -E "Failure|error " /tmp/o/gpu_tests.log | head; grep -c "backward \]" /tmp/o/gpu_tests.log
  for fam in 90 80; do FLEXJIT_BWD_CONFIG=family=$fam timeout 150 dist/bin/flexjit bench --backward --variants noop,causal,alibi,document --shapes 8,16,8192,128,bf16 --reps 10 --json /tmp/o/b$fam.json 2> /tmp/o/b$fam.err; echo "bench $fam rc=$?"; grep -v "^\[" /tmp/o/b$fam.err | tail -5; done
fi
cp /tmp/o/*.log /tmp/o/*.err /tmp/o/*.json $OUT2/ 2>/dev/null; true
