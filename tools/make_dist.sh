#!/usr/bin/env bash
# Packs what a GPU machine needs into dist/ (ignored by git): libflexjit.so (MLIR linked in statically),
# the flexjit CLI and the C++ test binary, stripped. The device tool carries dist/ (64 MiB limit).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FLEXJIT_BUILD_DIR:-$root/build}
dist=$root/dist
rm -rf "$dist" && mkdir -p "$dist/lib" "$dist/bin"
cp "$build/libflexjit.so" "$dist/lib/"
cp "$build/bin/flexjit" "$build/tests/flexjit_tests" "$dist/bin/"
# The seed whose own kernels bench/lazy_attention.py runs as the peer (read at run time, never committed).
seed=$root/../shared/seeds/lazy_attention_000.txt
[[ -f $seed ]] && mkdir -p "$dist/seeds" && cp "$seed" "$dist/seeds/"
# A kernel cache to seed the next machine's cache: one a device call packed (bench/device_run.sh KCACHE_OUT=1,
# .tar.gz) or one built here without a GPU (e.g. FLEXJIT_FUZZ_GPU_PRECOMPILE, packed as .tar.xz: similar
# kernels compress 10x better across files).
if [[ -n ${FLEXJIT_DIST_KCACHE:-} && -f $FLEXJIT_DIST_KCACHE ]]; then
  case $FLEXJIT_DIST_KCACHE in
    *.tar.xz) cp "$FLEXJIT_DIST_KCACHE" "$dist/kcache.tar.xz" ;;
    *) cp "$FLEXJIT_DIST_KCACHE" "$dist/kcache.tar.gz" ;;
  esac
fi
[[ ${FLEXJIT_DIST_STRIP:-1} == 1 ]] && strip --strip-unneeded "$dist/lib/libflexjit.so" "$dist/bin/"*
du -sh "$dist"
