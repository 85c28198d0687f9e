// The phases of the forward kernel, one device function each: tile loads (cp.async), S = Q K^T,
// score_mod / mask_mod on the accumulators, O += P V, and the epilogue that writes O and LSE.
//
// Fragment ownership (see tile_mma.cuh): warp w owns rows [w * kWarpRows, (w + 1) * kWarpRows) of the
// row block; lane (g = lane / 4, t = lane % 4) holds, in m-tile i and n-tile j, the accumulator elements
// (row w * kWarpRows + 16 i + g + 8 (e / 2), column 8 j + 2 t + e % 2) for e = 0..3.
#pragma once

#include "codegen/templates/common/online_softmax.cuh"
#include "codegen/templates/common/row_epilogue.cuh"
#include "codegen/templates/common/tile_hooks.cuh"
#include "codegen/templates/sm80/attention_fwd_traits.cuh"

namespace fjk {

/// Starts the asynchronous copy of rows [row0, row0 + kRows) of a row-major slab with `len` valid rows
/// and a row stride of `stride` elements into shared memory at `dst` (row pitch kPitch elements). Rows
/// at or past `len` are zero-filled, so partial tiles at the end of a sequence need no other care.
template <int kRows, int kCols, int kPitch, int kNThreads>
__device__ __forceinline__ void load_tile_async(unsigned dst, const unsigned short* src, long long stride, int row0,
                                                int len, int tid) {
  constexpr int kChunksPerRow = kCols / kElemsPerCopy;
  constexpr int kChunks = kRows * kChunksPerRow;
  constexpr int kIters = (kChunks + kNThreads - 1) / kNThreads;
  if constexpr (kNThreads % kChunksPerRow == 0 && kChunks % kNThreads == 0) {
    // Each thread copies one fixed column of rows r, r + kRowStep, ...: one pointer bumped by a 64-bit
    // step, instead of a 64-bit offset per copy.
    constexpr int kRowStep = kNThreads / kChunksPerRow;
    const int row = tid / kChunksPerRow;
    const int col = (tid % kChunksPerRow) * kElemsPerCopy;
    const unsigned short* g = src + (long long)(row0 + row) * stride + col;
    const long long step = kRowStep * stride;
    const unsigned d = dst + (row * kPitch + col) * kElemBytes;
    if (row0 + kRows <= len) {
      // The common case, a tile inside the sequence: no predicates at all.
#pragma unroll
      for (int it = 0; it < kIters; ++it, g += step) cp_async_16(d + it * kRowStep * kPitch * kElemBytes, g, true);
    } else {
#pragma unroll
      for (int it = 0; it < kIters; ++it, g += step) {
        const bool valid = row0 + row + it * kRowStep < len;
        // An invalid row reads nothing (src-size 0); its address is replaced by the slab base so that no
        // out-of-range address is ever handed to the copy.
        cp_async_16(d + it * kRowStep * kPitch * kElemBytes, valid ? g : src, valid);
      }
    }
  } else {
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int c = tid + it * kNThreads;
      if (kChunks % kNThreads == 0 || c < kChunks) {
        const int row = c / kChunksPerRow;
        const int col = (c % kChunksPerRow) * kElemsPerCopy;
        const bool valid = row0 + row < len;
        const unsigned short* g = valid ? src + (long long)(row0 + row) * stride + col : src;
        cp_async_16(dst + (row * kPitch + col) * kElemBytes, g, valid);
      }
    }
  }
}

/// Reads this warp's Q fragments (A operand of every k-step) from shared memory into registers.
template <class Tr>
__device__ __forceinline__ void load_q_fragments(unsigned (&qf)[Tr::kQFragSteps][Tr::kMmaM][4], unsigned s_q, int warp,
                                                 int lane) {
  // ldmatrix.x4 lane address of an A tile: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15), so lane l
  // points at row l % 16, column 8 * (l / 16).
  const unsigned base = s_q + ((warp * Tr::kWarpRows + (lane & 15)) * Tr::kQPitch + (lane >> 4) * 8) * kElemBytes;
#pragma unroll
  for (int kk = 0; kk < Tr::kQFragSteps; ++kk) {
#pragma unroll
    for (int i = 0; i < Tr::kMmaM; ++i) {
      ldmatrix_x4(qf[kk][i], base + (i * kMmaRows * Tr::kQPitch + kk * kMmaK) * kElemBytes);
    }
  }
}

/// s = Q K^T for one kv tile (fp32 accumulators, unscaled). Q comes from registers or shared memory.
template <class Tr>
__device__ __forceinline__ void compute_qk(float (&s)[Tr::kMmaM][Tr::kTilesN][4],
                                           const unsigned (&qf)[Tr::kQFragSteps][Tr::kMmaM][4], unsigned s_q,
                                           unsigned s_k, int warp, int lane) {
#pragma unroll
  for (int i = 0; i < Tr::kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < Tr::kTilesN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[i][j][e] = 0.0f;

  const unsigned q_base = s_q + ((warp * Tr::kWarpRows + (lane & 15)) * Tr::kQPitch + (lane >> 4) * 8) * kElemBytes;
  // B operand from K rows (n-major): matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
  // (n 8-15, k 8-15) give b0, b1 of n-tile 2jp and b0, b1 of n-tile 2jp + 1.
  const unsigned k_base = s_k + (((lane & 7) + (lane >> 4) * 8) * Tr::kKPitch + ((lane >> 3) & 1) * 8) * kElemBytes;
#pragma unroll
  for (int kk = 0; kk < Tr::kStepsD; ++kk) {
    unsigned a[Tr::kMmaM][4];
#pragma unroll
    for (int i = 0; i < Tr::kMmaM; ++i) {
      if constexpr (Tr::kQInRegs) {
#pragma unroll
        for (int r = 0; r < 4; ++r) a[i][r] = qf[kk][i][r];
      } else {
        ldmatrix_x4(a[i], q_base + (i * kMmaRows * Tr::kQPitch + kk * kMmaK) * kElemBytes);
      }
    }
#pragma unroll
    for (int jp = 0; jp < Tr::kTilesN / 2; ++jp) {
      unsigned b[4];
      ldmatrix_x4(b, k_base + (jp * 2 * kMmaCols * Tr::kKPitch + kk * kMmaK) * kElemBytes);
#pragma unroll
      for (int i = 0; i < Tr::kMmaM; ++i) {
        mma_16x8x16<Tr::kIsBf16>(s[i][2 * jp], a[i], b[0], b[1]);
        mma_16x8x16<Tr::kIsBf16>(s[i][2 * jp + 1], a[i], b[2], b[3]);
      }
    }
  }
}

/// o += P V for one kv tile, P given as A fragments (convert_p).
template <class Tr>
__device__ __forceinline__ void compute_pv(float (&o)[Tr::kMmaM][Tr::kTilesDv][4],
                                           const unsigned (&pa)[Tr::kMmaM][Tr::kStepsN][4], unsigned s_v, int lane) {
  // B operand from V rows (k-major), transposed by ldmatrix: matrices (kv 0-7, dv 0-7), (kv 8-15, dv 0-7),
  // (kv 0-7, dv 8-15), (kv 8-15, dv 8-15) give b0, b1 of dv-tile 2jp and b0, b1 of dv-tile 2jp + 1.
  const unsigned v_base = s_v + (((lane & 7) + ((lane >> 3) & 1) * 8) * Tr::kVPitch + (lane >> 4) * 8) * kElemBytes;
#pragma unroll
  for (int kk = 0; kk < Tr::kStepsN; ++kk) {
#pragma unroll
    for (int jp = 0; jp < Tr::kTilesDv / 2; ++jp) {
      unsigned b[4];
      ldmatrix_x4_trans(b, v_base + (kk * kMmaK * Tr::kVPitch + jp * 2 * kMmaCols) * kElemBytes);
#pragma unroll
      for (int i = 0; i < Tr::kMmaM; ++i) {
        mma_16x8x16<Tr::kIsBf16>(o[i][2 * jp], pa[i][kk], b[0], b[1]);
        mma_16x8x16<Tr::kIsBf16>(o[i][2 * jp + 1], pa[i][kk], b[2], b[3]);
      }
    }
  }
}

/// The query index of each accumulator row this thread holds (rows 2 i and 2 i + 1 of m-tile i).
template <class Tr>
__device__ __forceinline__ void thread_rows(int (&q_of_row)[Tr::kRowsPerThread], int q0, int warp, int lane) {
#pragma unroll
  for (int r = 0; r < Tr::kRowsPerThread; ++r)
    q_of_row[r] = q0 + warp * Tr::kWarpRows + (r / 2) * kMmaRows + (lane >> 2) + (r % 2) * (kMmaRows / 2);
}

/// Normalises O, stages it in shared memory (the Q region) and writes it with coalesced 16-byte stores;
/// writes LSE (and what else the pass produces per row, store_pass_rows). Rows at or past Lq are not
/// written. The statistics pass writes no O. The caller has drained all cp.async groups and passed a
/// barrier, so every warp is done with Q, K and V.
template <class Tr, class Var, int kPass>
__device__ __forceinline__ void write_o_lse(float (&o)[Tr::kMmaM][Tr::kTilesDv][4],
                                            const RowStats<Tr::kRowsPerThread>& st,
                                            const ProbRows<Tr::kRowsPerThread>& rows, float factor,
                                            unsigned short* s_o, const FwdParams& p, int b, int h, int q0,
                                            int warp, int lane, int tid) {
  const int g = lane >> 2;
  const int t = lane & 3;
  int q_of_row[Tr::kRowsPerThread];
  thread_rows<Tr>(q_of_row, q0, warp, lane);
  float inv_sum[Tr::kRowsPerThread];
  float lse[Tr::kRowsPerThread];
  finish_rows<Var, kPass>(st, rows, factor, p, b, h, q_of_row, inv_sum, lse);
  store_pass_rows<Var, kPass>(p, b, h, q_of_row, lse, st, rows, factor, t == 0);
  if constexpr (kPass == kPassStats) return;  // uniform: the statistics pass has no O
#pragma unroll
  for (int i = 0; i < Tr::kMmaM; ++i) {
    const int row = warp * Tr::kWarpRows + i * kMmaRows + g;
#pragma unroll
    for (int j = 0; j < Tr::kTilesDv; ++j) {
      const int col = j * kMmaCols + 2 * t;
      *reinterpret_cast<unsigned*>(s_o + row * Tr::kOPitch + col) =
          pack_half2<Tr::kIsBf16>(o[i][j][0] * inv_sum[2 * i], o[i][j][1] * inv_sum[2 * i]);
      *reinterpret_cast<unsigned*>(s_o + (row + kMmaRows / 2) * Tr::kOPitch + col) =
          pack_half2<Tr::kIsBf16>(o[i][j][2] * inv_sum[2 * i + 1], o[i][j][3] * inv_sum[2 * i + 1]);
    }
  }
  __syncthreads();

  constexpr int kChunksPerRow = Tr::kHeadDimV / kElemsPerCopy;
  constexpr int kChunks = Tr::kBlockM * kChunksPerRow;
  unsigned short* o_base = static_cast<unsigned short*>(p.o) + b * p.o_stride.b + h * p.o_stride.h;
#pragma unroll
  for (int c = tid; c < kChunks; c += Tr::kNThreads) {
    const int row = c / kChunksPerRow;
    const int col = (c % kChunksPerRow) * kElemsPerCopy;
    if (q0 + row < p.len_q) {
      *reinterpret_cast<Bytes16*>(o_base + (long long)(q0 + row) * p.o_stride.l + col) =
          *reinterpret_cast<const Bytes16*>(s_o + row * Tr::kOPitch + col);
    }
  }
}

}  // namespace fjk
