// The phases both sm80 backward kernels share: tile loads (cp.async) and the epilogue's coalesced row
// stores. The element-wise work (P, dS, the mods and their gradients) is common/bwd_tile_math.cuh.
#pragma once

#include "codegen/templates/common/bwd_tile_math.cuh"
#include "codegen/templates/sm80/attention_bwd_traits.cuh"

namespace fjk {

/// The dynamic shared memory of the dK/dV and dQ kernels (BwdTraits / DqTraits::kSmemBytes).
extern __shared__ Bytes16 fjk_bwd_smem[];

/// Starts the asynchronous copy of rows [row0, row0 + kRows) of a row-major slab (row stride `stride`
/// elements, `len` valid rows) into shared memory at `dst` (pitch kPitch elements). Rows at or past `len`
/// are zero-filled: zero Q / dO / K / V rows give finite scores and zero products, and the masking below
/// keeps them out of every gradient.
template <int kRows, int kCols, int kPitch, int kNThreads>
__device__ __forceinline__ void bwd_load_rows_async(unsigned dst, const unsigned short* src, long long stride, int row0,
                                                    int len, int tid) {
  constexpr int kChunksPerRow = kCols / kElemsPerCopy;
  constexpr int kChunks = kRows * kChunksPerRow;
  if constexpr (kNThreads % kChunksPerRow == 0) {
    // Each thread copies column `col` of rows row, row + kRowStep, ...: one pointer bumped by a 64-bit step.
    constexpr int kRowStep = kNThreads / kChunksPerRow;
    constexpr int kIters = (kRows + kRowStep - 1) / kRowStep;
    const int row = tid / kChunksPerRow;
    const int col = (tid % kChunksPerRow) * kElemsPerCopy;
    const unsigned short* g = src + (long long)(row0 + row) * stride + col;
    const long long step = kRowStep * stride;
    const unsigned d = dst + smem_offset<kPitch>(row, col);
    const bool inside = row0 + kRows <= len;
#pragma unroll
    for (int it = 0; it < kIters; ++it, g += step) {
      if (kRows % kRowStep == 0 || row + it * kRowStep < kRows) {
        // An invalid row reads nothing (src-size 0); its address is the slab base, never out of range.
        const bool valid = inside || row0 + row + it * kRowStep < len;
        cp_async_16(d + smem_offset<kPitch>(it * kRowStep, 0), valid ? g : src, valid);
      }
    }
  } else {
    // Head dims whose rows do not divide the CTA (D = 96: 12 pieces a row): chunk c = tid + k * kNThreads.
    constexpr int kIters = (kChunks + kNThreads - 1) / kNThreads;
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int c = tid + it * kNThreads;
      if (kChunks % kNThreads == 0 || c < kChunks) {
        const int row = c / kChunksPerRow;
        const int col = (c % kChunksPerRow) * kElemsPerCopy;
        const bool valid = row0 + row < len;
        const unsigned short* g = valid ? src + (long long)(row0 + row) * stride + col : src;
        cp_async_16(dst + smem_offset<kPitch>(row, col), g, valid);
      }
    }
  }
}

/// Starts the copy of kRows floats of LSE2 and of Delta from the padded workspace (len_q_pad rows per
/// head, so a q tile never reads past it): threads [0, n) copy LSE2, threads [n, 2n) Delta.
template <int kRows>
__device__ __forceinline__ void bwd_load_stats_async(unsigned dst_lse2, unsigned dst_delta, const float* lse2,
                                                     const float* delta, int tid) {
  constexpr int kFloatsPerCopy = kCopyBytes / 4;
  constexpr int kCopies = kRows / kFloatsPerCopy;
  if (tid < kCopies) {
    cp_async_16(dst_lse2 + tid * kCopyBytes, lse2 + tid * kFloatsPerCopy, true);
  } else if (tid < 2 * kCopies) {
    cp_async_16(dst_delta + (tid - kCopies) * kCopyBytes, delta + (tid - kCopies) * kFloatsPerCopy, true);
  }
}

/// Stores rows [0, kRows) of a shared-memory tile (pitch kPitch) to global rows row0.. of a slab with row
/// stride `stride`, 16 bytes per thread and store; rows at or past `len` are not written.
template <int kRows, int kCols, int kPitch, int kNThreads>
__device__ __forceinline__ void bwd_store_rows(unsigned short* dst, long long stride, int row0, int len,
                                               const unsigned short* src, int tid) {
  constexpr int kChunksPerRow = kCols / kElemsPerCopy;
  constexpr int kChunks = kRows * kChunksPerRow;
  constexpr int kIters = (kChunks + kNThreads - 1) / kNThreads;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int c = tid + it * kNThreads;
    const int row = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * kElemsPerCopy;
    if ((kChunks % kNThreads == 0 || c < kChunks) && row0 + row < len) {
      *reinterpret_cast<Bytes16*>(dst + (long long)(row0 + row) * stride + col) =
          *reinterpret_cast<const Bytes16*>(src + row * kPitch + col);
    }
  }
}

}  // namespace fjk
