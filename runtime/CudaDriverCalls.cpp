// The checked wrappers of CudaDriver.h: one driver call each, errors turned into flexjit::Error by check().
#include <fmt/format.h>

#include "dsl/Error.h"
#include "runtime/CudaDriver.h"

namespace flexjit {

namespace {

/// Longest device name the driver returns (cuDeviceGetName truncates to the buffer).
constexpr int kDeviceNameBytes = 256;

}  // namespace

int CudaDriver::deviceCount() const {
  int count = 0;
  check(api_.cuDeviceGetCount(&count), "cuDeviceGetCount");
  return count;
}

CUdevice CudaDriver::device(int ordinal) const {
  int count = deviceCount();
  if (ordinal < 0 || ordinal >= count)
    throw Error(fmt::format("CUDA device {} does not exist: this machine has {} device(s), numbered 0 to {}",
                            ordinal, count, count - 1));
  CUdevice device = 0;
  check(api_.cuDeviceGet(&device, ordinal), "cuDeviceGet");
  return device;
}

int CudaDriver::deviceAttribute(CUdevice_attribute attribute, CUdevice device) const {
  int value = 0;
  check(api_.cuDeviceGetAttribute(&value, attribute, device), "cuDeviceGetAttribute");
  return value;
}

std::string CudaDriver::deviceName(CUdevice device) const {
  char name[kDeviceNameBytes] = {};
  check(api_.cuDeviceGetName(name, kDeviceNameBytes, device), "cuDeviceGetName");
  return name;
}

size_t CudaDriver::deviceTotalMemory(CUdevice device) const {
  size_t bytes = 0;
  check(api_.cuDeviceTotalMem(&bytes, device), "cuDeviceTotalMem");
  return bytes;
}

CUcontext CudaDriver::currentContext() const {
  CUcontext context = nullptr;
  check(api_.cuCtxGetCurrent(&context), "cuCtxGetCurrent");
  return context;
}

void CudaDriver::setCurrentContext(CUcontext context) const {
  check(api_.cuCtxSetCurrent(context), "cuCtxSetCurrent");
}

CUdevice CudaDriver::currentDevice() const {
  CUdevice device = 0;
  check(api_.cuCtxGetDevice(&device), "cuCtxGetDevice");
  return device;
}

CUcontext CudaDriver::primaryContext(int ordinal) {
  CUdevice dev = device(ordinal);
  std::lock_guard<std::mutex> lock(contextMutex_);
  if (primaryContexts_.size() <= static_cast<size_t>(ordinal)) primaryContexts_.resize(ordinal + 1, nullptr);
  CUcontext& context = primaryContexts_[ordinal];
  if (context == nullptr) check(api_.cuDevicePrimaryCtxRetain(&context, dev), "cuDevicePrimaryCtxRetain");
  return context;
}

void CudaDriver::contextSynchronize() const { check(api_.cuCtxSynchronize(), "cuCtxSynchronize"); }

CUmodule CudaDriver::loadModule(const void* image) const {
  CUmodule module = nullptr;
  check(api_.cuModuleLoadData(&module, image), "cuModuleLoadData");
  return module;
}

void CudaDriver::unloadModule(CUmodule module) const { check(api_.cuModuleUnload(module), "cuModuleUnload"); }

CUfunction CudaDriver::moduleFunction(CUmodule module, const std::string& name) const {
  CUfunction function = nullptr;
  CUresult result = api_.cuModuleGetFunction(&function, module, name.c_str());
  if (result == CUDA_ERROR_NOT_FOUND)
    throw Error(fmt::format("the compiled module has no kernel function '{}'; declare it extern \"C\" "
                            "__global__ so its name is not mangled",
                            name));
  check(result, "cuModuleGetFunction");
  return function;
}

int CudaDriver::functionAttribute(CUfunction_attribute attribute, CUfunction function) const {
  int value = 0;
  check(api_.cuFuncGetAttribute(&value, attribute, function), "cuFuncGetAttribute");
  return value;
}

void CudaDriver::setFunctionAttribute(CUfunction function, CUfunction_attribute attribute, int value) const {
  check(api_.cuFuncSetAttribute(function, attribute, value), "cuFuncSetAttribute");
}

void CudaDriver::launchKernel(CUfunction function, Dim3 grid, Dim3 block, unsigned dynamicSharedBytes,
                              CUstream stream, void** params) const {
  check(api_.cuLaunchKernel(function, grid.x, grid.y, grid.z, block.x, block.y, block.z, dynamicSharedBytes,
                            stream, params, nullptr),
        "cuLaunchKernel");
}

void CudaDriver::launchKernelEx(const CUlaunchConfig& config, CUfunction function, void** params) const {
  if (!hasLaunchKernelEx())
    throw Error(fmt::format("the NVIDIA driver (CUDA {}) lacks cuLaunchKernelEx; update the driver",
                            cudaVersionText(driverVersion_)));
  check(api_.cuLaunchKernelEx(&config, function, params, nullptr), "cuLaunchKernelEx");
}

int CudaDriver::occupancyMaxActiveBlocks(CUfunction function, int blockSize, size_t dynamicSharedBytes) const {
  int blocks = 0;
  check(api_.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, function, blockSize, dynamicSharedBytes),
        "cuOccupancyMaxActiveBlocksPerMultiprocessor");
  return blocks;
}

CUdeviceptr CudaDriver::memAlloc(size_t bytes) const {
  CUdeviceptr pointer = 0;
  check(api_.cuMemAlloc(&pointer, bytes), "cuMemAlloc");
  return pointer;
}

bool CudaDriver::streamIsCapturing(CUstream stream) const {
  if (api_.cuStreamIsCapturing == nullptr) return false;
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  check(api_.cuStreamIsCapturing(stream, &status), "cuStreamIsCapturing");
  return status != CU_STREAM_CAPTURE_STATUS_NONE;
}

CUdeviceptr CudaDriver::memAllocDuringCapture(size_t bytes) const {
  if (api_.cuThreadExchangeStreamCaptureMode == nullptr) return memAlloc(bytes);
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  check(api_.cuThreadExchangeStreamCaptureMode(&mode), "cuThreadExchangeStreamCaptureMode");
  CUdeviceptr pointer = 0;
  const CUresult r = api_.cuMemAlloc(&pointer, bytes);
  api_.cuThreadExchangeStreamCaptureMode(&mode);  // the caller's mode back, whatever cuMemAlloc said
  check(r, "cuMemAlloc (during CUDA-graph capture)");
  return pointer;
}

void CudaDriver::memFree(CUdeviceptr pointer) const { check(api_.cuMemFree(pointer), "cuMemFree"); }

void CudaDriver::memcpyHtoD(CUdeviceptr dst, const void* src, size_t bytes) const {
  check(api_.cuMemcpyHtoD(dst, src, bytes), "cuMemcpyHtoD");
}

void CudaDriver::memcpyDtoH(void* dst, CUdeviceptr src, size_t bytes) const {
  check(api_.cuMemcpyDtoH(dst, src, bytes), "cuMemcpyDtoH");
}

void CudaDriver::memcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) const {
  check(api_.cuMemcpyDtoDAsync(dst, src, bytes, stream), "cuMemcpyDtoDAsync");
}

void CudaDriver::memsetD8Async(CUdeviceptr dst, uint8_t value, size_t count, CUstream stream) const {
  check(api_.cuMemsetD8Async(dst, value, count, stream), "cuMemsetD8Async");
}

void CudaDriver::memsetD32Async(CUdeviceptr dst, uint32_t value, size_t count, CUstream stream) const {
  check(api_.cuMemsetD32Async(dst, value, count, stream), "cuMemsetD32Async");
}

void CudaDriver::streamSynchronize(CUstream stream) const {
  check(api_.cuStreamSynchronize(stream), "cuStreamSynchronize");
}

PointerInfo CudaDriver::pointerInfo(CUdeviceptr pointer) const {
  PointerInfo info;
  unsigned memoryType = 0;
  CUresult result = api_.cuPointerGetAttribute(&memoryType, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, pointer);
  // The driver answers CUDA_ERROR_INVALID_VALUE for memory it never allocated or registered: plain host
  // memory, which is an answer ("not device memory"), not a failure.
  if (result == CUDA_ERROR_INVALID_VALUE) return info;
  check(result, "cuPointerGetAttribute(MEMORY_TYPE)");
  unsigned managed = 0;
  check(api_.cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, pointer),
        "cuPointerGetAttribute(IS_MANAGED)");
  info.isManaged = managed != 0;
  info.isDevice = memoryType == CU_MEMORYTYPE_DEVICE || info.isManaged;
  if (info.isDevice)
    check(api_.cuPointerGetAttribute(&info.deviceOrdinal, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, pointer),
          "cuPointerGetAttribute(DEVICE_ORDINAL)");
  return info;
}

CUevent CudaDriver::eventCreate(unsigned flags) const {
  CUevent event = nullptr;
  check(api_.cuEventCreate(&event, flags), "cuEventCreate");
  return event;
}

void CudaDriver::eventRecord(CUevent event, CUstream stream) const {
  check(api_.cuEventRecord(event, stream), "cuEventRecord");
}

void CudaDriver::eventSynchronize(CUevent event) const { check(api_.cuEventSynchronize(event), "cuEventSynchronize"); }

float CudaDriver::eventElapsedMs(CUevent start, CUevent end) const {
  float ms = 0.0f;
  check(api_.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
  return ms;
}

void CudaDriver::eventDestroy(CUevent event) const { check(api_.cuEventDestroy(event), "cuEventDestroy"); }

}  // namespace flexjit
