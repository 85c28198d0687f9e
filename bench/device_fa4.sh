#!/usr/bin/env bash
# One device session's benchmark against torch FlexAttention's FLASH backend (FlashAttention-4), whose
# wheels do not fit one call's carry limit (../shared/tools/fa4_wheels.sh packs them into fa4/a and fa4/b).
# Run the steps in consecutive calls on one warm machine (each within ~30 s of the last):
#   bench/device_fa4.sh stage-a          carry fa4/a dist: stash part a, build the Python module, Python GPU tests
#   bench/device_fa4.sh bench SHAPES     carry fa4/b dist: install FA4 (first time), forward bench with FLASH
#   bench/device_fa4.sh long             (no carry needed once installed): bench/long_context.py
# Logs and JSON under $OUT; the tables are printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/dist/lib:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
export FLEXJIT_CACHE_DIR=${FLEXJIT_CACHE_DIR:-/tmp/flexjit-cache}
out=${OUT:-/tmp/out}
mkdir -p "$out"
step=${1:?step: stage-a | bench SHAPES | long}

install_fa4() {
  [[ -d /tmp/site/flash_attn ]] && return 0
  [[ -f /tmp/fa4/cu13.part.aa ]] || { echo "part a missing: run stage-a first on this machine"; return 1; }
  python3 -m pip install -q --no-index --no-deps --target /tmp/site fa4/b/*.whl &&
    cat /tmp/fa4/cu13.part.aa fa4/b/cu13.part.ab | xz -d -T8 | (cd /tmp/site && tar x)
}
use_fa4() { export PYTHONPATH=/tmp/site/nvidia_cutlass_dsl/dsl_packages:/tmp/site:/tmp/build-py${PYTHONPATH:+:$PYTHONPATH}; }

case $step in
  stage-a)
    mkdir -p /tmp/fa4 && cp fa4/a/* /tmp/fa4/
    bench/device_run.sh python
    ;;
  bench)
    install_fa4 || exit 1
    use_fa4
    python3 bench/run_bench.py --flexjit dist/bin/flexjit --out "$out" --python-frontend --flash \
      --mask-seqs 8192 --shapes "${2:-8,16,8192,128,bf16}" ${BENCH_ARGS:-} 2> "$out/bench.err" |
      tee "$out/bench.txt" || { tail -20 "$out/bench.err"; exit 1; }
    ;;
  long)
    use_fa4
    python3 bench/long_context.py --flash --out "$out" ${LONG_ARGS:-} 2> "$out/long.err" | tee "$out/long.txt" ||
      { tail -20 "$out/long.err"; exit 1; }
    ;;
  *) echo "unknown step $step"; exit 2 ;;
esac
