// The TMA tensor maps of the sm90 forward and backward kernels, encoded from the same pointers, sizes and strides the
// common FwdParams hold. Header-only over an injected cuTensorMapEncodeTiled, so the runtime (through its
// dlopen'ed driver) and bench/fwd_selftest.cu (which has no runtime library) share one definition.
//
// Q, K, V and O are [B, H, L, D] with the head dim contiguous: rank-4 maps with dims (D, L, H, B) innermost
// first, byte strides for L, H and B, and boxes of 64 columns (one 128-byte swizzled chunk) by the
// kernel's rows (kBlockM for Q, kBlockN for K and V, one warpgroup's 64 rows for O). L is a dimension of
// its own, so a box past the end of a sequence is zero-filled (loads) or clipped (stores) instead of
// touching the next head.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "codegen/AttentionConfig.h"
#include "codegen/BackwardConfig.h"
#include "codegen/templates/sm90/bwd_layout.h"
#include "codegen/templates/sm90/bwd_params.h"
#include "codegen/templates/sm90/fwd_params.h"

namespace flexjit {

using TensorMapEncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                            const cuuint64_t*, const cuuint32_t*, const cuuint32_t*,
                                            CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                            CUtensorMapFloatOOBfill);

/// Columns of one TMA box: 64 16-bit elements, the 128-byte swizzle span.
inline constexpr unsigned kTmaBoxCols = 64;

/// The element strides TMA is given for a [batch, heads, len, cols] tensor: a dimension of size 1 is never
/// stepped over, so whatever stride it carries (torch allows any, 0 for an expanded one) is replaced by a
/// valid one.
inline fjk::BhlStrides tmaStrides(const fjk::BhlStrides& s, int batch, int heads, int len, int cols) {
  fjk::BhlStrides t = s;
  if (len <= 1) t.l = cols;
  if (heads <= 1) t.h = t.l * (len > 1 ? len : 1);
  if (batch <= 1) t.b = t.h * (heads > 1 ? heads : 1);
  return t;
}

/// Whether TMA can describe a [batch, heads, len, cols] 16-bit tensor: a 16-byte-aligned base and, for every
/// dimension of more than one element, a nonzero stride that is a multiple of 16 bytes below 2^40.
/// (A broadcast dimension, stride 0 over several elements, cannot be described.)
inline bool tmaDescribable(const void* data, const fjk::BhlStrides& s, int batch, int heads, int len, int cols) {
  constexpr long long kElem = 2, kAlign = 16, kLimit = 1ll << 40;
  const fjk::BhlStrides t = tmaStrides(s, batch, heads, len, cols);
  for (long long st : {t.b, t.h, t.l})
    if (st <= 0 || (st * kElem) % kAlign != 0 || st * kElem >= kLimit) return false;
  return reinterpret_cast<uintptr_t>(data) % kAlign == 0;
}

/// Encodes one map of a [batch, heads, len, cols] 16-bit tensor with a box of kTmaBoxCols x boxRows.
inline CUresult encodeBhlMap(TensorMapEncodeTiledFn encode, fjk::TmaMap& out, DType dtype, const void* data,
                             const fjk::BhlStrides& strides, int batch, int heads, int len, int cols, int boxRows) {
  static_assert(sizeof(CUtensorMap) == sizeof(fjk::TmaMap), "fjk::TmaMap mirrors CUtensorMap");
  constexpr cuuint64_t kElem = 2;
  const fjk::BhlStrides s = tmaStrides(strides, batch, heads, len, cols);
  const cuuint64_t dims[4] = {cuuint64_t(cols), cuuint64_t(len), cuuint64_t(heads), cuuint64_t(batch)};
  const cuuint64_t byteStrides[3] = {cuuint64_t(s.l) * kElem, cuuint64_t(s.h) * kElem, cuuint64_t(s.b) * kElem};
  const cuuint32_t box[4] = {kTmaBoxCols, cuuint32_t(boxRows), 1, 1};
  const cuuint32_t elementStrides[4] = {1, 1, 1, 1};
  return encode(reinterpret_cast<CUtensorMap*>(&out),
                dtype == DType::BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                const_cast<void*>(data), dims, byteStrides, box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

/// Fills P.q, P.k, P.v and P.o from P.p (pointers, strides, sizes) for configuration c; returns the first
/// failing CUresult (CUDA_SUCCESS when all four were encoded). Lengths of 0 are encoded as 1 (TMA needs
/// nonzero dims); such launches have no CTAs anyway.
inline CUresult encodeSm90FwdMaps(TensorMapEncodeTiledFn encode, fjk::Sm90FwdParams& P, const FwdKernelConfig& c) {
  const fjk::FwdParams& p = P.p;
  auto atLeast1 = [](int n) { return n > 0 ? n : 1; };
  const int b = atLeast1(p.batch), lq = atLeast1(p.len_q), lkv = atLeast1(p.len_kv);
  CUresult r = encodeBhlMap(encode, P.q, c.dtype, p.q, p.q_stride, b, atLeast1(p.heads_q), lq, c.headDim, c.blockM);
  if (r == CUDA_SUCCESS)
    r = encodeBhlMap(encode, P.k, c.dtype, p.k, p.k_stride, b, atLeast1(p.heads_kv), lkv, c.headDim, c.blockN);
  if (r == CUDA_SUCCESS)
    r = encodeBhlMap(encode, P.v, c.dtype, p.v, p.v_stride, b, atLeast1(p.heads_kv), lkv, c.headDimV, c.blockN);
  if (r == CUDA_SUCCESS)
    r = encodeBhlMap(encode, P.o, c.dtype, p.o, p.o_stride, b, atLeast1(p.heads_q), lq, c.headDimV,
                     fjk::kWarpgroupRows);
  return r;
}

/// Encodes a rank-2 float32 map over `rows` contiguous rows of `cols` floats with boxes of 32 columns (128
/// bytes, the swizzle span) by boxRows rows: the sm90 backward's dQ accumulator, which TMA reductions add to.
inline CUresult encodeFloatRowsMap(TensorMapEncodeTiledFn encode, fjk::TmaMap& out, void* data, long long rows,
                                   int cols, int boxRows) {
  constexpr cuuint64_t kFloat = 4;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows > 0 ? rows : 1)};
  const cuuint64_t byteStrides[1] = {cuuint64_t(cols) * kFloat};
  const cuuint32_t box[2] = {32, cuuint32_t(boxRows)};
  const cuuint32_t elementStrides[2] = {1, 1};
  return encode(reinterpret_cast<CUtensorMap*>(&out), CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, data, dims, byteStrides,
                box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

/// Fills the maps of the sm90 dK/dV kernel from P.p (fjk::Sm90BwdParams says which boxes); returns the first
/// failing CUresult. Lengths of 0 are encoded as 1 (such launches have no CTAs or no q tiles).
inline CUresult encodeSm90BwdMaps(TensorMapEncodeTiledFn encode, fjk::Sm90BwdParams& P, const BwdKernelConfig& c) {
  const fjk::BwdParams& p = P.p;
  auto atLeast1 = [](int n) { return n > 0 ? n : 1; };
  const int b = atLeast1(p.batch), hq = atLeast1(p.heads_q), hkv = atLeast1(p.heads_kv);
  const int lq = atLeast1(p.len_q), lkv = atLeast1(p.len_kv);
  constexpr int kRowsQ = fjk::kSm90BwdBlockM, kRowsKv = fjk::kSm90BwdBlockN, kRowsWg = fjk::kSm90BwdWgKv;
  CUresult r = encodeBhlMap(encode, P.q, c.dtype, p.q, p.q_stride, b, hq, lq, c.headDim, kRowsQ);
  if (r == CUDA_SUCCESS) r = encodeBhlMap(encode, P.dout, c.dtype, p.dout, p.do_stride, b, hq, lq, c.headDimV, kRowsQ);
  if (r == CUDA_SUCCESS) r = encodeBhlMap(encode, P.k, c.dtype, p.k, p.k_stride, b, hkv, lkv, c.headDim, kRowsKv);
  if (r == CUDA_SUCCESS) r = encodeBhlMap(encode, P.v, c.dtype, p.v, p.v_stride, b, hkv, lkv, c.headDimV, kRowsKv);
  if (r == CUDA_SUCCESS) r = encodeBhlMap(encode, P.dk, c.dtype, p.dk, p.dk_stride, b, hkv, lkv, c.headDim, kRowsWg);
  if (r == CUDA_SUCCESS) r = encodeBhlMap(encode, P.dv, c.dtype, p.dv, p.dv_stride, b, hkv, lkv, c.headDimV, kRowsWg);
  if (r == CUDA_SUCCESS && p.dq_accum != nullptr)
    r = encodeFloatRowsMap(encode, P.dq_accum, p.dq_accum, static_cast<long long>(b) * hq * p.len_q_pad, c.headDim,
                           kRowsQ);
  return r;
}

}  // namespace flexjit
