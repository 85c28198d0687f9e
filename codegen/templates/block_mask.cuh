// Block-mask construction on the GPU, for the variant prelude that precedes it (fjv::mask_mod and
// fjv::mask_mod_interval). Three kernels:
//   classify: one CTA per (b, h, q block) row decides every kv block from the mask's interval form (one
//             evaluation per block pair); only blocks the intervals cannot decide are evaluated element-wise,
//             cooperatively by the CTA. The dense mask is never materialised.
//   rows:     one warp per row compacts the classes into kv_num_blocks / kv_indices (+ full_*), ascending.
//   cols:     one warp per (b, h, kv block) column does the same for the transposed q_* lists.
#pragma once

#include "codegen/templates/block_mask_params.h"

namespace fjk {

/// Marks a block the interval form could not decide (only inside classify).
constexpr unsigned char kBlockUndecided = 3;
constexpr int kWarp = 32;

/// Evaluates the mask at every position of one block with the whole CTA; returns its class.
__device__ unsigned char classify_elementwise(const BlockMaskParams& p, int b, int h, int q0, int q1, int kv0,
                                              int kv1) {
  const int width = kv1 - kv0 + 1;
  const int count = (q1 - q0 + 1) * width;
  int anyTrue = 0, anyFalse = 0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    bool keep = fjv::mask_mod(b, h, q0 + i / width, kv0 + i % width, p.cap);
    anyTrue |= keep;
    anyFalse |= !keep;
  }
  anyTrue = __syncthreads_or(anyTrue);
  anyFalse = __syncthreads_or(anyFalse);
  return anyTrue ? (anyFalse ? kBlockPartial : kBlockFull) : kBlockEmpty;
}

}  // namespace fjk

extern "C" __global__ void __launch_bounds__(fjk::kClassifyThreads)
    flexjit_block_mask_classify(const fjk::BlockMaskParams p) {
  using namespace fjk;
  const int qb = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  // The last block may be shorter: boxes are clipped to the sequence lengths, so padding never counts.
  const int q0 = qb * p.block_q, q1 = min(p.len_q, q0 + p.block_q) - 1;
  unsigned char* row = p.classes + (((long long)b * p.heads + h) * p.num_q + qb) * p.num_kv;
  __shared__ unsigned char undecided[kClassifyThreads];
  for (int base = 0; base < p.num_kv; base += kClassifyThreads) {
    const int kvb = base + threadIdx.x;
    unsigned char cls = kBlockEmpty;
    if (kvb < p.num_kv) {
      const int kv0 = kvb * p.block_kv, kv1 = min(p.len_kv, kv0 + p.block_kv) - 1;
      fj::IvBool r = fjv::mask_mod_interval(fj::ivInt(b, b), fj::ivInt(h, h), fj::ivInt(q0, q1), fj::ivInt(kv0, kv1), p.cap);
      cls = !r.canTrue ? kBlockEmpty : (!r.canFalse ? kBlockFull : kBlockUndecided);
      row[kvb] = cls;
    }
    undecided[threadIdx.x] = cls == kBlockUndecided;
    int any = __syncthreads_or(cls == kBlockUndecided);
    if (!any) continue;
    for (int j = 0; j < kClassifyThreads && base + j < p.num_kv; ++j) {
      if (!undecided[j]) continue;  // uniform: every thread reads the same flag
      const int kv0 = (base + j) * p.block_kv, kv1 = min(p.len_kv, kv0 + p.block_kv) - 1;
      unsigned char c = classify_elementwise(p, b, h, q0, q1, kv0, kv1);
      if (threadIdx.x == 0) row[base + j] = c;
    }
    __syncthreads();  // `undecided` is rewritten by the next chunk
  }
}

namespace fjk {

/// Compacts one line of classes (stride `step` between entries) into partial / full index lists.
__device__ void compact_line(const unsigned char* cls, long long step, int n, int* num, int* idx, int* fullNum,
                             int* fullIdx) {
  const int lane = threadIdx.x % kWarp;
  int partialCount = 0, fullCount = 0;
  for (int base = 0; base < n; base += kWarp) {
    const int i = base + lane;
    const unsigned char c = i < n ? cls[i * step] : kBlockEmpty;
    const unsigned partial = __ballot_sync(0xffffffffu, c == kBlockPartial);
    const unsigned full = __ballot_sync(0xffffffffu, c == kBlockFull);
    const unsigned below = (1u << lane) - 1u;
    if (c == kBlockPartial) idx[partialCount + __popc(partial & below)] = i;
    if (c == kBlockFull) fullIdx[fullCount + __popc(full & below)] = i;
    partialCount += __popc(partial);
    fullCount += __popc(full);
  }
  // Unused list entries are zero (the runtime zero-fills the lists first): kernels read only `num` entries.
  if (lane == 0) {
    *num = partialCount;
    *fullNum = fullCount;
  }
}

}  // namespace fjk

extern "C" __global__ void flexjit_block_mask_rows(const fjk::BlockMaskParams p) {
  const long long row = (long long)blockIdx.x * (blockDim.x / fjk::kWarp) + threadIdx.x / fjk::kWarp;
  if (row >= (long long)p.batch * p.heads * p.num_q) return;
  fjk::compact_line(p.classes + row * p.num_kv, 1, p.num_kv, p.kv_num + row, p.kv_idx + row * p.num_kv,
                    p.full_kv_num + row, p.full_kv_idx + row * p.num_kv);
}

extern "C" __global__ void flexjit_block_mask_cols(const fjk::BlockMaskParams p) {
  const long long col = (long long)blockIdx.x * (blockDim.x / fjk::kWarp) + threadIdx.x / fjk::kWarp;
  if (col >= (long long)p.batch * p.heads * p.num_kv) return;
  const long long bh = col / p.num_kv, kvb = col % p.num_kv;
  fjk::compact_line(p.classes + bh * p.num_q * p.num_kv + kvb, p.num_kv, p.num_q, p.q_num + col,
                    p.q_idx + col * p.num_q, p.full_q_num + col, p.full_q_idx + col * p.num_q);
}
