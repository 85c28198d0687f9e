#include "runtime/Tensor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "runtime/CudaDriver.h"
#include "runtime/Device.h"

namespace flexjit {

namespace {

/// Owns a device allocation (DeviceBuffer frees it in the context it was made in).
struct DeviceStorage {
  DeviceStorage(int ordinal, size_t bytes) {
    ScopedContext context(ordinal);
    buffer = DeviceBuffer(bytes == 0 ? 1 : bytes);
  }
  DeviceBuffer buffer;
};

constexpr size_t kHostAlignment = 64;

}  // namespace

Tensor Tensor::empty(DType dtype, std::vector<int64_t> shape, Device device) {
  Tensor t;
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw Error("Tensor::empty: negative dimension");
    n *= s;
  }
  size_t bytes = static_cast<size_t>(n) * dtypeSize(dtype);
  void* data = nullptr;
  if (device.kind == DeviceKind::CPU) {
    size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
    data = std::aligned_alloc(kHostAlignment, rounded == 0 ? kHostAlignment : rounded);
    if (!data) throw Error(fmt::format("out of host memory allocating {} bytes", bytes));
    t.storage_ = std::shared_ptr<void>(data, [](void* p) { std::free(p); });
  } else {
    auto storage = std::make_shared<DeviceStorage>(device.index, bytes);
    data = reinterpret_cast<void*>(storage->buffer.get());
    t.storage_ = storage;
  }
  t.view_ = TensorView(data, dtype, device, std::move(shape));
  return t;
}

Tensor Tensor::viewInto(const Tensor& base, size_t byteOffset, DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.storage_ = base.storage_;
  t.view_ = TensorView(static_cast<char*>(base.data()) + byteOffset, dtype, base.device(), std::move(shape));
  if (byteOffset % dtypeSize(dtype) != 0 || byteOffset + t.bytes() > base.bytes())
    throw Error("Tensor::viewInto: the view does not fit inside its base tensor");
  return t;
}

Tensor Tensor::zeros(DType dtype, std::vector<int64_t> shape, Device device) {
  Tensor t = empty(dtype, std::move(shape), device);
  t.fillBytes(0);
  return t;
}

Tensor Tensor::fromHost(const void* data, DType dtype, std::vector<int64_t> shape, Device device) {
  Tensor t = empty(dtype, std::move(shape), device);
  copyBytes(t.data(), device, data, Device::cpu(), t.bytes());
  return t;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(dtype(), shape(), device);
  copyBytes(t.data(), device, data(), this->device(), bytes());
  return t;
}

void Tensor::fillBytes(unsigned char value) {
  if (bytes() == 0) return;
  if (device().kind == DeviceKind::CPU) {
    std::memset(data(), value, bytes());
    return;
  }
  ScopedContext ctx(device().index);
  const CudaDriver& d = CudaDriver::get();
  d.memsetD8Async(reinterpret_cast<CUdeviceptr>(data()), value, bytes(), nullptr);
  d.streamSynchronize(nullptr);
}

void fillWords(const TensorView& view, uint32_t word, void* stream, const char* what) {
  const size_t bytes = static_cast<size_t>(view.numel()) * dtypeSize(view.dtype);
  if (bytes == 0) return;
  if (!view.isContiguous()) throw Error(fmt::format("{} must be contiguous here, got {}", what, view.describe()));
  if (bytes % sizeof(uint32_t) != 0 && word != 0)
    throw Error(fmt::format("{}: {} bytes are not whole 4-byte words", what, bytes));
  if (view.device.kind == DeviceKind::CPU) {
    auto* out = static_cast<unsigned char*>(view.data);
    for (size_t i = 0; i < bytes; i += sizeof(uint32_t)) std::memcpy(out + i, &word, std::min(bytes - i, sizeof word));
    return;
  }
  ScopedContext ctx(view.device.index);
  const auto dst = reinterpret_cast<CUdeviceptr>(view.data);
  if (word == 0)
    CudaDriver::get().memsetD8Async(dst, 0, bytes, static_cast<CUstream>(stream));
  else
    CudaDriver::get().memsetD32Async(dst, word, bytes / sizeof(uint32_t), static_cast<CUstream>(stream));
}

void Tensor::copyToHost(void* dst) const { copyBytes(dst, Device::cpu(), data(), device(), bytes()); }

void copyBytes(void* dst, Device dstDevice, const void* src, Device srcDevice, size_t bytes) {
  if (bytes == 0) return;
  bool dstHost = dstDevice.kind == DeviceKind::CPU, srcHost = srcDevice.kind == DeviceKind::CPU;
  if (dstHost && srcHost) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const CudaDriver& d = CudaDriver::get();
  ScopedContext ctx(dstHost ? srcDevice.index : dstDevice.index);
  if (dstHost) d.memcpyDtoH(dst, reinterpret_cast<CUdeviceptr>(src), bytes);
  else if (srcHost) d.memcpyHtoD(reinterpret_cast<CUdeviceptr>(dst), src, bytes);
  else {
    d.memcpyDtoDAsync(reinterpret_cast<CUdeviceptr>(dst), reinterpret_cast<CUdeviceptr>(src), bytes, nullptr);
    d.streamSynchronize(nullptr);
  }
}

}  // namespace flexjit
