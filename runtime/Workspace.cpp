#include "runtime/Workspace.h"

namespace flexjit {

// Never destroyed: kernels may still use the memory at exit.
Workspace& Workspace::backward() {
  static Workspace* instance = new Workspace();
  return *instance;
}
Workspace& Workspace::forward() {
  static Workspace* instance = new Workspace();
  return *instance;
}
Workspace& Workspace::recompute() {
  static Workspace* instance = new Workspace();
  return *instance;
}

Workspace::Lease Workspace::acquire(CUcontext context, CUstream stream, size_t bytes) {
  Lease lease{std::unique_lock<std::mutex>(mutex_), 0};
  if (bytes == 0) return lease;
  CudaDriver& driver = CudaDriver::get();
  const bool capturing = driver.streamIsCapturing(stream);
  Entry& e = entries_[{context, stream}];
  if (e.bytes < bytes) {
    if (e.base != 0 && !e.pinned && !capturing) {
      // Earlier calls may still be running on this stream (or on a destroyed stream whose handle was
      // reused): wait for the whole context before the memory goes back.
      driver.contextSynchronize();
      driver.memFree(e.base);
    }
    // Pinned or capturing: the old memory stays allocated (a graph may read it; capture cannot wait).
    e.pinned = false;
    e.base = capturing ? driver.memAllocDuringCapture(bytes) : driver.memAlloc(bytes);
    e.bytes = bytes;
  }
  if (capturing) e.pinned = true;
  lease.base = e.base;
  return lease;
}

}  // namespace flexjit
