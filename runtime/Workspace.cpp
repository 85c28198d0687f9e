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
  Entry& e = entries_[{context, stream}];
  if (e.bytes < bytes) {
    if (e.base != 0) {
      // Earlier calls may still be running on this stream (or on a destroyed stream whose handle was
      // reused): wait for the whole context before the memory goes back.
      CudaDriver::get().contextSynchronize();
      CudaDriver::get().memFree(e.base);
      e.base = 0;
      e.bytes = 0;
    }
    e.base = CudaDriver::get().memAlloc(bytes);
    e.bytes = bytes;
  }
  lease.base = e.base;
  return lease;
}

}  // namespace flexjit
