// Kernel-argument helpers shared by the forward and backward launchers: the layout the kernels require
// of a tensor, and torch-layout tensors (strides, block-mask lists) as the kernels read them.
#pragma once

#include "codegen/templates/attention_params.h"
#include "dsl/TensorView.h"
#include "runtime/Tensor.h"

namespace flexjit {

/// Raises flexjit::Error unless `t` is 16-byte aligned with B/H/L strides that are multiples of 8 elements
/// (the kernels move rows in 16-byte pieces). `call` and `name` go into the message.
void checkKernelLayout(const TensorView& t, const char* call, const char* name);

/// The B, H, L element strides of a [B, H, L, D] tensor.
fjk::BhlStrides bhlStrides(const TensorView& t);

/// One BlockMask list (num [Bs, Hs, rows], idx [Bs, Hs, rows, entries]) as the kernels read it: a stored dim
/// of size 1 is broadcast with stride 0; undefined tensors are an empty list.
fjk::BlockList kernelBlockList(const Tensor& num, const Tensor& idx);

}  // namespace flexjit
