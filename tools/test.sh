#!/usr/bin/env bash
# Builds flexjit (tools/setup.sh) and runs every test: C++ unit tests and lit tests through ctest, then
# the Python tests. GPU tests skip cleanly without a GPU. Exits non-zero if anything fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FLEXJIT_BUILD_DIR:-$root/build}
"$root/tools/setup.sh"
export FLEXJIT_CACHE_DIR=${FLEXJIT_CACHE_DIR:-$build/test-kernel-cache}
cd "$build"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)"
if [[ ${FLEXJIT_SKIP_PYTHON:-0} != 1 ]]; then
  cd "$root"
  PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -q tests/python
fi
