// Implementation of Device.h.
#include "runtime/Device.h"

#include <utility>

#include <fmt/format.h>

#include "dsl/Error.h"
#include "runtime/Arch.h"
#include "runtime/CudaDriver.h"

namespace flexjit {

DeviceInfo deviceInfo(int ordinal) {
  CudaDriver& driver = CudaDriver::get();
  CUdevice device = driver.device(ordinal);
  DeviceInfo info;
  info.ordinal = ordinal;
  info.name = driver.deviceName(device);
  info.computeMajor = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
  info.computeMinor = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
  info.smCount = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
  info.maxSharedMemoryPerBlockOptin =
      driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device);
  info.l2CacheBytes = driver.deviceAttribute(CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, device);
  info.totalMemoryBytes = driver.deviceTotalMemory(device);
  // Describing an old GPU is not an error; compiling for it is (archForDevice throws there).
  if (info.computeMajor >= kMinComputeMajor) info.arch = archForDevice(info.computeMajor, info.computeMinor);
  return info;
}

ScopedContext::ScopedContext(int ordinal) {
  CudaDriver& driver = CudaDriver::get();
  context_ = driver.primaryContext(ordinal);
  previous_ = driver.currentContext();
  driver.setCurrentContext(context_);
}

ScopedContext::~ScopedContext() {
  // Destructors must not throw; restoring a context that was valid a moment ago does not fail in practice.
  CudaDriver::get().api().cuCtxSetCurrent(previous_);
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  CudaDriver& driver = CudaDriver::get();
  context_ = driver.currentContext();
  if (context_ == nullptr)
    throw Error("DeviceBuffer needs a current CUDA context: create it inside a flexjit::ScopedContext");
  pointer_ = driver.memAlloc(bytes);
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : pointer_(std::exchange(other.pointer_, 0)),
      bytes_(std::exchange(other.bytes_, 0)),
      context_(std::exchange(other.context_, nullptr)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    pointer_ = std::exchange(other.pointer_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
    context_ = std::exchange(other.context_, nullptr);
  }
  return *this;
}

void DeviceBuffer::upload(const void* src, size_t bytes) {
  if (bytes > bytes_)
    throw Error(fmt::format("DeviceBuffer::upload of {} bytes into a buffer of {} bytes", bytes, bytes_));
  CudaDriver::get().memcpyHtoD(pointer_, src, bytes);
}

void DeviceBuffer::download(void* dst, size_t bytes) const {
  if (bytes > bytes_)
    throw Error(fmt::format("DeviceBuffer::download of {} bytes from a buffer of {} bytes", bytes, bytes_));
  CudaDriver::get().memcpyDtoH(dst, pointer_, bytes);
}

void DeviceBuffer::release() noexcept {
  if (pointer_ == 0) return;
  // Free in the allocating context, then put back whatever was current. Errors are ignored: a destructor
  // cannot report them, and the only realistic one (context already destroyed) freed the memory anyway.
  const DriverApi& api = CudaDriver::get().api();
  CUcontext current = nullptr;
  api.cuCtxGetCurrent(&current);
  api.cuCtxSetCurrent(context_);
  api.cuMemFree(pointer_);
  api.cuCtxSetCurrent(current);
  pointer_ = 0;
  bytes_ = 0;
}

}  // namespace flexjit
