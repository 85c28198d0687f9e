// Kernel-argument helpers shared by the forward and backward launchers: the layout the kernels require
// of a tensor, and torch-layout tensors (strides, block-mask lists) as the kernels read them.
#pragma once

#include "codegen/templates/common/attention_params.h"
#include "dsl/TensorView.h"
#include "runtime/Attention.h"
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

/// Fills the fields fjk::FwdParams and fjk::BwdParams share: sizes, GQA grouping, scale, mask block sizes
/// and the LSE strides.
template <class Params>
void setProblemSizes(Params& p, const AttentionShape& s, const BlockMask& blockMask, const TensorView& lse) {
  p.lse_stride = fjk::BhlStrides{lse.strides[0], lse.strides[1], lse.strides[2]};
  p.batch = static_cast<int>(s.B);
  p.heads_q = static_cast<int>(s.Hq);
  p.heads_kv = static_cast<int>(s.Hkv);
  p.q_per_kv = static_cast<int>(s.Hq / s.Hkv);
  p.len_q = static_cast<int>(s.Lq);
  p.len_kv = static_cast<int>(s.Lkv);
  p.scale = s.scale;
  p.mask_block_q = blockMask.blockQ;
  p.mask_block_kv = blockMask.blockKV;
}

}  // namespace flexjit
