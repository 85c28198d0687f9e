// The CUDA driver API, loaded at run time with dlopen("libcuda.so.1").
//
// libflexjit never links libcuda: it must load, and its CPU path must run, on machines without an NVIDIA
// driver (CI, laptops). cuda.h is used for types only. Entry points are resolved through
// cuGetProcAddress for the CUDA_VERSION of the headers we build with, so each call gets the ABI those
// headers declare (the "_v2"-style versioned symbols are picked by the driver, not by name).
//
// Every call is checked: the wrappers below throw flexjit::Error naming the driver call and the
// driver's error name and text. Raw entry points remain reachable through api() for the rare call that
// must not throw (destructors), paired with check() or ignored deliberately.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace flexjit {

// The driver functions flexjit resolves. X(name) receives the unversioned name; cuda.h maps it to the
// versioned declaration (cuMemAlloc -> cuMemAlloc_v2) where the signature comes from.
#define FLEXJIT_CUDA_DRIVER_FUNCTIONS(X)                                                                \
  X(cuGetErrorName) X(cuGetErrorString) X(cuDriverGetVersion) X(cuInit) X(cuDeviceGetCount)            \
  X(cuDeviceGet) X(cuDeviceGetAttribute) X(cuDeviceGetName) X(cuDeviceTotalMem) X(cuCtxGetCurrent)      \
  X(cuCtxSetCurrent) X(cuDevicePrimaryCtxRetain) X(cuCtxGetDevice) X(cuCtxSynchronize)                 \
  X(cuModuleLoadData) X(cuModuleUnload) X(cuModuleGetFunction) X(cuFuncGetAttribute)                  \
  X(cuFuncSetAttribute) X(cuLaunchKernel) X(cuMemAlloc) X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH)    \
  X(cuMemcpyDtoDAsync) X(cuMemsetD8Async) X(cuMemsetD32Async) X(cuStreamSynchronize) X(cuEventCreate)  \
  X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime) X(cuEventDestroy)                       \
  X(cuPointerGetAttribute) X(cuOccupancyMaxActiveBlocksPerMultiprocessor)

// Resolved when the driver has them; null otherwise (check before use).
#define FLEXJIT_CUDA_DRIVER_OPTIONAL_FUNCTIONS(X) \
  X(cuLaunchKernelEx) X(cuTensorMapEncodeTiled) X(cuStreamIsCapturing) X(cuThreadExchangeStreamCaptureMode)

/// Raw driver entry points. Member names follow the driver's (cuda.h's macros map them consistently).
struct DriverApi {
#define FLEXJIT_DRIVER_MEMBER(name) decltype(&::name) name = nullptr;
  FLEXJIT_CUDA_DRIVER_FUNCTIONS(FLEXJIT_DRIVER_MEMBER)
  FLEXJIT_CUDA_DRIVER_OPTIONAL_FUNCTIONS(FLEXJIT_DRIVER_MEMBER)
#undef FLEXJIT_DRIVER_MEMBER
};

/// Grid or block dimensions of a launch.
struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

/// Where a pointer lives, as the driver sees it.
struct PointerInfo {
  bool isDevice = false;  ///< device memory (cuMemAlloc, cudaMalloc, torch CUDA tensors) or managed
  bool isManaged = false; ///< managed (unified) memory
  int deviceOrdinal = -1; ///< the device the allocation belongs to; -1 when !isDevice
};

/// "13.0" for 13000: a CUDA version number as cuDriverGetVersion and CUDA_VERSION spell it, for messages.
std::string cudaVersionText(int version);

/// The loaded driver. One per process, initialised on first use (thread-safe).
class CudaDriver {
 public:
  /// The driver; throws flexjit::Error "no CUDA driver found (...)" when libcuda.so.1 cannot be loaded,
  /// or a checked error when cuInit fails (no device, driver/kernel-module mismatch).
  static CudaDriver& get();
  /// Whether get() would succeed; never throws.
  static bool available();

  /// The raw entry points (unchecked). Prefer the checked wrappers below.
  const DriverApi& api() const { return api_; }
  /// Throws flexjit::Error "<what> failed: CUDA_ERROR_X (text)" unless `result` is CUDA_SUCCESS.
  void check(CUresult result, const char* what) const;
  /// The CUDA version the driver supports, e.g. 13000.
  int driverVersion() const { return driverVersion_; }

  int deviceCount() const;
  CUdevice device(int ordinal) const;
  int deviceAttribute(CUdevice_attribute attribute, CUdevice device) const;
  std::string deviceName(CUdevice device) const;
  size_t deviceTotalMemory(CUdevice device) const;

  /// The current context, or nullptr when none is current.
  CUcontext currentContext() const;
  void setCurrentContext(CUcontext context) const;
  /// The device of the current context; throws when no context is current.
  CUdevice currentDevice() const;
  /// The device's primary context, retained once per process and never released (so modules and
  /// allocations made in it outlive any one scope, as with the CUDA runtime and torch).
  CUcontext primaryContext(int ordinal);
  void contextSynchronize() const;

  CUmodule loadModule(const void* image) const;
  void unloadModule(CUmodule module) const;
  CUfunction moduleFunction(CUmodule module, const std::string& name) const;
  int functionAttribute(CUfunction_attribute attribute, CUfunction function) const;
  void setFunctionAttribute(CUfunction function, CUfunction_attribute attribute, int value) const;
  void launchKernel(CUfunction function, Dim3 grid, Dim3 block, unsigned dynamicSharedBytes, CUstream stream,
                    void** params) const;
  /// Whether cuLaunchKernelEx (clusters, launch attributes) is available.
  bool hasLaunchKernelEx() const { return api_.cuLaunchKernelEx != nullptr; }
  void launchKernelEx(const CUlaunchConfig& config, CUfunction function, void** params) const;
  /// Whether cuTensorMapEncodeTiled (TMA descriptors, CUDA 12.0+ drivers) is available.
  bool hasTensorMaps() const { return api_.cuTensorMapEncodeTiled != nullptr; }
  int occupancyMaxActiveBlocks(CUfunction function, int blockSize, size_t dynamicSharedBytes) const;

  CUdeviceptr memAlloc(size_t bytes) const;
  /// Whether `stream` is being captured into a CUDA graph (false when the driver cannot tell).
  bool streamIsCapturing(CUstream stream) const;
  /// cuMemAlloc while a capture is in progress: the calling thread's capture mode is relaxed for the call
  /// (as torch's caching allocator does), since a plain cuMemAlloc would invalidate a global-mode capture.
  /// The allocation is not part of the graph; the caller keeps it alive as long as the graph may run.
  CUdeviceptr memAllocDuringCapture(size_t bytes) const;
  void memFree(CUdeviceptr pointer) const;
  void memcpyHtoD(CUdeviceptr dst, const void* src, size_t bytes) const;
  void memcpyDtoH(void* dst, CUdeviceptr src, size_t bytes) const;
  void memcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) const;
  void memsetD8Async(CUdeviceptr dst, uint8_t value, size_t count, CUstream stream) const;
  void memsetD32Async(CUdeviceptr dst, uint32_t value, size_t count, CUstream stream) const;
  void streamSynchronize(CUstream stream) const;
  /// What the driver knows about `pointer`; plain host memory yields isDevice == false (no throw).
  PointerInfo pointerInfo(CUdeviceptr pointer) const;

  CUevent eventCreate(unsigned flags = CU_EVENT_DEFAULT) const;
  void eventRecord(CUevent event, CUstream stream) const;
  void eventSynchronize(CUevent event) const;
  float eventElapsedMs(CUevent start, CUevent end) const;
  void eventDestroy(CUevent event) const;

  CudaDriver(const CudaDriver&) = delete;
  CudaDriver& operator=(const CudaDriver&) = delete;

 private:
  CudaDriver() = default;
  static void load(CudaDriver& driver);  // throws Error; defined in CudaDriver.cpp

  DriverApi api_;
  int driverVersion_ = 0;
  std::mutex contextMutex_;
  std::vector<CUcontext> primaryContexts_;  // by ordinal; null until retained
};

}  // namespace flexjit
