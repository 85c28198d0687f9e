#!/usr/bin/env bash
# Builds flexjit (tools/setup.sh) and runs every test: C++ unit tests and lit tests through ctest, then
# the Python tests. GPU tests skip cleanly without a GPU. Both suites always run (so both summaries are
# visible); the exit status is non-zero if either failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FLEXJIT_BUILD_DIR:-$root/build}
"$root/tools/setup.sh" || exit 1
export FLEXJIT_CACHE_DIR=${FLEXJIT_CACHE_DIR:-$build/test-kernel-cache}
status=0
(cd "$build" && ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)") || status=1
if [[ ${FLEXJIT_SKIP_PYTHON:-0} != 1 ]]; then
  (cd "$root" && PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" python3 -m pytest -q tests/python) || status=1
fi
exit $status
