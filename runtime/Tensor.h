// Tensor: an owned, contiguous tensor in host or device memory, for what flexjit allocates itself
// (attention outputs, block masks, gradient buffers, test data). User tensors stay TensorViews.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dsl/Error.h"
#include "dsl/TensorView.h"

namespace flexjit {

class Tensor {
 public:
  Tensor() = default;
  /// Uninitialised contiguous memory; CUDA tensors are allocated in the device's primary context.
  static Tensor empty(DType dtype, std::vector<int64_t> shape, Device device);
  /// Zero-filled.
  static Tensor zeros(DType dtype, std::vector<int64_t> shape, Device device);
  /// A copy of host data (contiguous, numel * dtypeSize bytes) on `device`.
  static Tensor fromHost(const void* data, DType dtype, std::vector<int64_t> shape, Device device);
  template <class T>
  static Tensor fromVector(const std::vector<T>& values, DType dtype, std::vector<int64_t> shape, Device device) {
    return fromHost(values.data(), dtype, std::move(shape), device);
  }

  /// A contiguous tensor inside `base`'s memory at `byteOffset` (sharing its storage; base must be large
  /// enough and the offset aligned for `dtype`).
  static Tensor viewInto(const Tensor& base, size_t byteOffset, DType dtype, std::vector<int64_t> shape);

  bool defined() const { return storage_ != nullptr; }
  const TensorView& view() const { return view_; }
  void* data() const { return view_.data; }
  DType dtype() const { return view_.dtype; }
  Device device() const { return view_.device; }
  const std::vector<int64_t>& shape() const { return view_.shape; }
  int64_t numel() const { return view_.numel(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtypeSize(dtype()); }

  /// A copy on another device (or the same tensor if already there).
  Tensor to(Device device) const;
  /// The contents copied to host memory as T (T's size must equal the dtype's).
  template <class T>
  std::vector<T> toVector() const {
    if (sizeof(T) != static_cast<size_t>(dtypeSize(dtype())))
      throw Error("Tensor::toVector: element type size does not match the tensor's dtype");
    std::vector<T> out(static_cast<size_t>(numel()));
    copyToHost(out.data());
    return out;
  }
  /// Sets every byte to `value`.
  void fillBytes(unsigned char value);

 private:
  void copyToHost(void* dst) const;
  TensorView view_;
  std::shared_ptr<void> storage_;
};

/// Sets every 4-byte word of a contiguous view to `word` (0 clears a view of any dtype), asynchronously on
/// `stream` for a device view. Raises flexjit::Error for a strided view.
void fillWords(const TensorView& view, uint32_t word, void* stream, const char* what);

/// Copies `bytes` between any two places (host or device), synchronously.
void copyBytes(void* dst, Device dstDevice, const void* src, Device srcDevice, size_t bytes);

}  // namespace flexjit
