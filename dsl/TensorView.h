// TensorView: a non-owning view of a strided tensor in host or device memory.
//
// flexjit never owns user tensors: Q/K/V, outputs and captured tensors are all passed as views (data
// pointer, dtype, device, shape and strides in elements), the way DLPack and torch describe them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsl/Types.h"

namespace flexjit {

enum class DeviceKind : uint8_t { CPU, CUDA };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;
  static Device cpu() { return {DeviceKind::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceKind::CUDA, i}; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

/// A strided view; strides are in elements (not bytes), like torch.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  TensorView() = default;
  TensorView(void* data, DType dtype, Device device, std::vector<int64_t> shape,
             std::vector<int64_t> strides = {});

  int rank() const { return static_cast<int>(shape.size()); }
  int64_t numel() const;
  int64_t size(int dim) const { return shape.at(dim); }
  int64_t stride(int dim) const { return strides.at(dim); }
  bool isContiguous() const;
  /// "bf16[8, 16, 8192, 128] on cuda:0" — used in error messages.
  std::string describe() const;
  /// Row-major strides for `shape`.
  static std::vector<int64_t> contiguousStrides(const std::vector<int64_t>& shape);
};

}  // namespace flexjit
