// Device-side helpers on top of CudaDriver: what a GPU is (DeviceInfo), owning device memory
// (DeviceBuffer) and making a device's primary context current for a scope (ScopedContext).
#pragma once

#include <cuda.h>

#include <cstddef>
#include <string>

namespace flexjit {

/// The properties of a GPU that kernel selection and compilation depend on.
struct DeviceInfo {
  std::string name;                     ///< "NVIDIA H100 80GB HBM3"
  int ordinal = 0;                      ///< device number as the driver counts them
  int computeMajor = 0;                 ///< compute capability major (9 for Hopper)
  int computeMinor = 0;                 ///< compute capability minor
  int smCount = 0;                      ///< streaming multiprocessors
  int maxSharedMemoryPerBlockOptin = 0; ///< bytes a block may use after opting in via cuFuncSetAttribute
  int l2CacheBytes = 0;                 ///< L2 cache size
  size_t totalMemoryBytes = 0;          ///< global memory
  std::string arch;                     ///< NVRTC target, archForDevice(major, minor); empty below cc 8.0
};

/// Queries device `ordinal`. Throws flexjit::Error without a driver or for an ordinal that does not exist.
DeviceInfo deviceInfo(int ordinal);

/// Makes device `ordinal`'s primary context current for the lifetime of the object and restores the
/// previously current context (possibly none) afterwards.
class ScopedContext {
 public:
  explicit ScopedContext(int ordinal);
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

  CUcontext context() const { return context_; }

 private:
  CUcontext context_ = nullptr;
  CUcontext previous_ = nullptr;
};

/// Device memory from cuMemAlloc, freed on destruction. Movable, not copyable. Allocates in the current
/// context (throws flexjit::Error if none is current or without a driver) and frees in that same context.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  CUdeviceptr get() const { return pointer_; }
  size_t size() const { return bytes_; }
  /// Copies host -> device (bytes must fit) and device -> host; both synchronous.
  void upload(const void* src, size_t bytes);
  void download(void* dst, size_t bytes) const;

 private:
  void release() noexcept;

  CUdeviceptr pointer_ = 0;
  size_t bytes_ = 0;
  CUcontext context_ = nullptr;
};

}  // namespace flexjit
