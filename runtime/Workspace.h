// Grow-only scratch device memory per (context, stream), for arrays the kernels of one call pass to each
// other (the backward's LSE2, Delta and dQ accumulator; a prob_mod forward's per-row counts; the decode
// family's split partials). Stream order makes reusing the memory safe for later calls on the same stream,
// so the steady state allocates and synchronises nothing.
//
// CUDA graphs: a call captured into a graph bakes the lease's address into the graph, and capture forbids
// both synchronising and (in torch's default global mode) plain allocation. A stream that is capturing
// therefore gets its memory without a synchronisation (cuMemAlloc in relaxed capture mode) and its entry is
// pinned: memory a capture used is never freed or reused by a larger lease later, since the graph may replay
// at any time (a grown pinned entry leaves the old memory allocated, a bounded cost per capture size).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>

#include "runtime/CudaDriver.h"

namespace flexjit {

class Workspace {
 public:
  /// One instance per use, so that a call holding one lease can make a nested call that takes another (the
  /// backward recomputing a prob_mod forward's saved state).
  static Workspace& backward();
  static Workspace& forward();
  static Workspace& recompute();

  /// Holds the lock while the caller enqueues the kernels that use the returned memory, so that a
  /// concurrent call on the same stream cannot free it between two launches.
  struct Lease {
    std::unique_lock<std::mutex> lock;
    CUdeviceptr base = 0;
  };

  /// At least `bytes` of device memory for work enqueued on `stream` (0 bytes: an empty lease).
  Lease acquire(CUcontext context, CUstream stream, size_t bytes);

 private:
  struct Entry {
    CUdeviceptr base = 0;
    size_t bytes = 0;
    bool pinned = false;  ///< a graph capture used this memory: never free it
  };
  std::mutex mutex_;
  std::map<std::pair<CUcontext, CUstream>, Entry> entries_;
};

/// Offsets inside one lease: each array starts at a multiple of 256 bytes.
inline size_t workspaceAlign(size_t bytes) {
  constexpr size_t kAlign = 256;
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

}  // namespace flexjit
