// The two small kernels around the attention backward's main kernels; they do not depend on the variant,
// so one build serves every score_mod / mask_mod of a dtype and head dim.
//
//   preprocess: per query row, Delta = rowsum(dO * O) (the sum over j of P_ij dP_ij, from the forward's
//               output instead of a second pass over the keys) and LSE2 = LSE * log2(e), into the padded
//               workspace that the main kernels read in whole tiles.
//   convert:    dQ = scale * dQ_accum, rounded to the 16-bit type, after the atomic dK/dV kernel.
#pragma once

#include "codegen/templates/common/attention_bwd_params.h"
#include "codegen/templates/fastmath.cuh"
#include "codegen/templates/sm80/bwd_warp_gemm.cuh"

namespace fjk {

/// Query rows per CTA of the preprocess (the workspace padding, so the grid covers it exactly).
constexpr int kBwdPreRows = kBwdLenPad;
/// Query rows per CTA of the dQ convert kernel.
constexpr int kBwdConvertRows = 64;

/// Sum of the 8 products of two 16-byte pieces of fp16 / bf16 values.
template <bool kIsBf16>
__device__ __forceinline__ float dot8(const Bytes16& a, const Bytes16& b) {
  const unsigned wa[4] = {a.x, a.y, a.z, a.w};
  const unsigned wb[4] = {b.x, b.y, b.z, b.w};
  float acc = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    acc = fmaf(half_bits_to_float<kIsBf16>(wa[i] & 0xffffu), half_bits_to_float<kIsBf16>(wb[i] & 0xffffu), acc);
    acc = fmaf(half_bits_to_float<kIsBf16>(wa[i] >> 16), half_bits_to_float<kIsBf16>(wb[i] >> 16), acc);
  }
  return acc;
}

/// The smallest power of two >= n (n <= 32): lanes per row of the preprocess.
__device__ __forceinline__ constexpr int pow2_at_least(int n) {
  int p = 1;
  while (p < n) p *= 2;
  return p;
}

/// Writes Delta and LSE2 for kBwdPreRows rows [blockIdx.x * kBwdPreRows, ...) of head (blockIdx.z,
/// blockIdx.y), padding rows included. Each row is read by a power-of-two group of lanes (one 16-byte
/// piece of O and dO each per step) and reduced with shuffles inside the group.
template <bool kIsBf16, int kHeadDimV, int kNThreads>
__device__ __forceinline__ void attention_bwd_preprocess(const BwdParams& p) {
  constexpr int kChunks = kHeadDimV / kElemsPerCopy;
  constexpr int kLanesPerRow = pow2_at_least(kChunks);
  constexpr int kRowsPerPass = kNThreads / kLanesPerRow;
  constexpr int kPasses = (kBwdPreRows + kRowsPerPass - 1) / kRowsPerPass;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int sub = threadIdx.x % kLanesPerRow;
  const unsigned short* o_ptr = static_cast<const unsigned short*>(p.o) + b * p.o_stride.b + h * p.o_stride.h;
  const unsigned short* do_ptr = static_cast<const unsigned short*>(p.dout) + b * p.do_stride.b + h * p.do_stride.h;
  const long long ws_row0 = ((long long)b * p.heads_q + h) * p.len_q_pad;
#pragma unroll 1
  for (int pass = 0; pass < kPasses; ++pass) {
    // Every lane runs every pass (the shuffles below need the whole warp); rows past the block do no work.
    const int r = pass * kRowsPerPass + threadIdx.x / kLanesPerRow;
    const int q = blockIdx.x * kBwdPreRows + r;
    const bool live = r < kBwdPreRows && q < p.len_q;
    float acc = 0.0f;
    if (live) {
#pragma unroll
      for (int c = sub; c < kChunks; c += kLanesPerRow) {
        const Bytes16 o = *reinterpret_cast<const Bytes16*>(o_ptr + (long long)q * p.o_stride.l + c * kElemsPerCopy);
        const Bytes16 d = *reinterpret_cast<const Bytes16*>(do_ptr + (long long)q * p.do_stride.l + c * kElemsPerCopy);
        acc += dot8<kIsBf16>(o, d);
      }
    }
#pragma unroll
    for (int off = kLanesPerRow / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (sub == 0 && r < kBwdPreRows && q < p.len_q_pad) {
      const float inf = fj::infinity();
      float lse = q < p.len_q ? p.lse[b * p.lse_stride.b + h * p.lse_stride.h + q * p.lse_stride.l] : -inf;
      // LSE = -inf marks a fully masked row (and padding rows are treated alike). Its P must be 0
      // everywhere; exp2(x - (+inf)) = 0 for every finite or -inf x, whereas -inf would give exp2(+inf) and
      // (-inf) - (-inf) = NaN. Delta is 0 there (O = 0), so the row's dS is exactly 0.
      p.lse2[ws_row0 + q] = lse == -inf ? inf : lse * fj::kLog2e;
      // An upstream gradient of the LSE enters every dS of the row as dlse * P (d LSE / d s = P), which is
      // Delta - dlse in place of Delta. A fully masked row's P is 0, so its dS stays 0 whatever dlse is.
      if (p.dlse != nullptr && q < p.len_q)
        acc -= p.dlse[b * p.dlse_stride.b + h * p.dlse_stride.h + q * p.dlse_stride.l];
      p.delta[ws_row0 + q] = acc;
    }
  }
}

/// dQ = scale * dQ_accum for kBwdConvertRows rows of head (blockIdx.z, blockIdx.y), 8 values per thread
/// and step: two 16-byte loads, one 16-byte store.
template <bool kIsBf16, int kHeadDim, int kNThreads>
__device__ __forceinline__ void attention_bwd_convert(const BwdParams& p) {
  constexpr int kChunksPerRow = kHeadDim / kElemsPerCopy;
  constexpr int kChunks = kBwdConvertRows * kChunksPerRow;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int q0 = blockIdx.x * kBwdConvertRows;
  const float* src = p.dq_accum + (((long long)b * p.heads_q + h) * p.len_q_pad + q0) * kHeadDim;
  unsigned short* dst = static_cast<unsigned short*>(p.dq) + b * p.dq_stride.b + h * p.dq_stride.h;
#pragma unroll 2
  for (int c = threadIdx.x; c < kChunks; c += kNThreads) {
    const int row = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * kElemsPerCopy;
    if (q0 + row >= p.len_q) continue;
    const Bytes16 lo = *reinterpret_cast<const Bytes16*>(src + row * kHeadDim + col);
    const Bytes16 hi = *reinterpret_cast<const Bytes16*>(src + row * kHeadDim + col + kElemsPerCopy / 2);
    Bytes16 out;
    out.x = pack_half2<kIsBf16>(__uint_as_float(lo.x) * p.scale, __uint_as_float(lo.y) * p.scale);
    out.y = pack_half2<kIsBf16>(__uint_as_float(lo.z) * p.scale, __uint_as_float(lo.w) * p.scale);
    out.z = pack_half2<kIsBf16>(__uint_as_float(hi.x) * p.scale, __uint_as_float(hi.y) * p.scale);
    out.w = pack_half2<kIsBf16>(__uint_as_float(hi.z) * p.scale, __uint_as_float(hi.w) * p.scale);
    *reinterpret_cast<Bytes16*>(dst + (long long)(q0 + row) * p.dq_stride.l + col) = out;
  }
}

}  // namespace fjk
