#include "runtime/KernelArgs.h"

#include <fmt/format.h>

#include <cstdint>

namespace flexjit {

namespace {
constexpr int kVectorElems = 8;  // the kernels move rows in 16-byte pieces of 8 fp16/bf16
constexpr uintptr_t kAlignment = 16;
}  // namespace

void checkKernelLayout(const TensorView& t, const char* call, const char* name) {
  if (reinterpret_cast<uintptr_t>(t.data) % kAlignment != 0)
    throw Error(fmt::format("{}: {} must be 16-byte aligned for the GPU kernels; call .contiguous()", call, name));
  for (int d = 0; d < 3; ++d)
    if (t.shape[d] > 1 && t.strides[d] % kVectorElems != 0)
      throw Error(fmt::format("{}: {} strides must be multiples of 8 elements on the GPU (got stride {} in dim {}); "
                              "call .contiguous()", call, name, t.strides[d], d));
}

fjk::BhlStrides bhlStrides(const TensorView& t) { return {t.strides[0], t.strides[1], t.strides[2]}; }

fjk::BlockList kernelBlockList(const Tensor& num, const Tensor& idx) {
  fjk::BlockList l{};
  if (!num.defined() || !idx.defined()) return l;
  const auto& ns = num.shape();
  const auto& is = idx.shape();
  l.num_blocks = static_cast<const int*>(num.data());
  l.indices = static_cast<const int*>(idx.data());
  l.num_stride_b = ns[0] == 1 ? 0 : ns[1] * ns[2];
  l.num_stride_h = ns[1] == 1 ? 0 : ns[2];
  l.num_stride_q = 1;
  l.idx_stride_b = is[0] == 1 ? 0 : is[1] * is[2] * is[3];
  l.idx_stride_h = is[1] == 1 ? 0 : is[2] * is[3];
  l.idx_stride_q = is[3];
  l.idx_stride_kv = 1;
  return l;
}

}  // namespace flexjit
