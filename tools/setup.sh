#!/usr/bin/env bash
# Sets up everything flexjit needs on Debian 12 / Ubuntu and builds it (idempotent; seconds when done).
#
#   tools/setup.sh            install missing packages, configure and build into build/
#   FLEXJIT_BUILD_DIR=dir     build somewhere else
#   FLEXJIT_SKIP_APT=1        do not touch system packages (you installed them yourself)
#   FLEXJIT_SKIP_PYTHON=1     skip the Python module and its pip packages (pybind11, pytest, numpy, torch)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FLEXJIT_BUILD_DIR:-$root/build}
jobs=$(nproc 2>/dev/null || echo 2)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

apt_packages=(cmake ninja-build g++ ccache python3 libmlir-19-dev mlir-19-tools llvm-19-dev llvm-19-tools
              libzstd-dev libfmt-dev libgtest-dev)

install_apt() {
  [[ ${FLEXJIT_SKIP_APT:-0} == 1 ]] && return
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && { say "system packages: all present"; return; }
  say "installing: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

check_cuda() {
  local cuda=${CUDA_HOME:-/usr/local/cuda}
  if [[ ! -f $cuda/include/nvrtc.h ]]; then
    echo "error: no CUDA toolkit at $cuda (need nvrtc.h). Install CUDA 12.4+ / 13 or set CUDA_HOME." >&2
    exit 1
  fi
}

# pybind11 to build the module; pytest, numpy and torch to test it (torch is large: installed only if absent).
install_python() {
  [[ ${FLEXJIT_SKIP_PYTHON:-0} == 1 ]] && return
  local missing=()
  for m in pybind11 pytest numpy; do python3 -c "import $m" 2>/dev/null || missing+=("$m"); done
  python3 -c "import torch" 2>/dev/null || missing+=("torch==2.11.0")
  [[ ${#missing[@]} -eq 0 ]] && { say "python packages: all present"; return; }
  say "pip installing: ${missing[*]}"
  python3 -m pip install -q "${missing[@]}"
}

build_cpp() {
  local py python_module=ON
  py=$(command -v python3)
  [[ ${FLEXJIT_SKIP_PYTHON:-0} == 1 ]] && python_module=OFF
  if [[ ! -f $build/build.ninja ]] || ! grep -qx "FLEXJIT_BUILD_PYTHON:BOOL=$python_module" "$build/CMakeCache.txt"; then
    say "configuring $build"
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/usr/lib/llvm-19 \
      -DCUDAToolkit_ROOT="${CUDA_HOME:-/usr/local/cuda}" -DPython_EXECUTABLE="$py" \
      -DFLEXJIT_BUILD_PYTHON=$python_module >/dev/null
  fi
  say "building (ninja -j$jobs)"
  cmake --build "$build" -j "$jobs"
}

install_apt
install_python
check_cuda
build_cpp
say "done: $build/bin/flexjit demo   (or tools/test.sh to run all tests)"
