// Warp-level GEMMs of the backward kernels: acc[kTM][kTN] (16 x 8 tiles) += A (16 kTM x 16 kSteps) *
// B (16 kSteps x 8 kTN), both operands read from shared memory with ldmatrix in either orientation, or A
// taken from registers; and the moves of accumulator tiles into A fragments or shared memory. Plain C++
// over the mma.sync / ldmatrix primitives of tile_mma.cuh.
//
// The backward multiplies every operand both ways round (dV = P^T dO, dK = dS^T Q, dQ = dS K), so the
// orientation is a template argument instead of a family of hand-written loops:
//   A, kATrans = false: stored row-major, row = m, k contiguous       (Q in S = Q K^T)
//   A, kATrans = true:  stored transposed, row = k, m contiguous      (P stored [q][kv], used as P^T)
//   B, kBKMajor = false: stored n-major, row = n, k contiguous        (K in S = Q K^T)
//   B, kBKMajor = true:  stored k-major, row = k, n contiguous        (dO in dV = P^T dO)
// A tile's address is that of its element (m0, k0) / (k0, n0) in shared memory; every shared-memory row is
// padded so that its pitch is an odd number of 16-byte units, which makes each 8-address ldmatrix phase
// hit 8 distinct bank groups in both orientations.
#pragma once

#include "codegen/templates/sm80/bwd_primitives.cuh"

namespace fjk {

/// Bytes of one fp16 / bf16 element in shared memory.
constexpr int kBwdElemBytes = 2;

/// Byte offset of an element in a shared-memory tile of row pitch kPitch elements.
template <int kPitch>
__device__ __forceinline__ constexpr unsigned smem_offset(int row, int col) {
  return static_cast<unsigned>((row * kPitch + col) * kBwdElemBytes);
}

/// This lane's ldmatrix.x4 row address (relative to the 16x16 tile origin) for an A operand. Matrices
/// 0..3 must come back as a0..a3 = (m 0-7 | 8-15) x (k 0-7 | 8-15), m fastest (tile_mma.cuh).
template <int kPitch, bool kTrans>
__device__ __forceinline__ unsigned a_lane_offset(int lane) {
  if constexpr (kTrans) {
    // Stored rows are k: matrix i = lane / 8 covers k rows 8 (i / 2).., m columns 8 (i % 2)..; .trans
    // hands each lane the column (m = lane / 4) and two consecutive k, which is the A fragment.
    return smem_offset<kPitch>((lane & 7) + (lane >> 4) * 8, ((lane >> 3) & 1) * 8);
  } else {
    return smem_offset<kPitch>(lane & 15, (lane >> 4) * 8);
  }
}

/// This lane's ldmatrix.x4 row address for a B operand pair of n-tiles: matrices 0..3 come back as
/// (b0, b1) of n-tile 0 and (b0, b1) of n-tile 1.
template <int kPitch, bool kKMajor>
__device__ __forceinline__ unsigned b_lane_offset(int lane) {
  if constexpr (kKMajor) {
    // Stored rows are k: matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
    return smem_offset<kPitch>((lane & 7) + ((lane >> 3) & 1) * 8, (lane >> 4) * 8);
  } else {
    // Stored rows are n: matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
    return smem_offset<kPitch>((lane & 7) + (lane >> 4) * 8, ((lane >> 3) & 1) * 8);
  }
}

/// Loads the A fragment of m-tile i, k-step kk (tile origin `a` already includes the lane offset).
template <int kPitch, bool kTrans>
__device__ __forceinline__ void load_a_frag(unsigned (&r)[4], unsigned a, int i, int kk) {
  if constexpr (kTrans) {
    ldmatrix_x4_trans(r, a + smem_offset<kPitch>(kk * kMmaK, i * kMmaRows));
  } else {
    ldmatrix_x4(r, a + smem_offset<kPitch>(i * kMmaRows, kk * kMmaK));
  }
}

/// Loads the B fragments of n-tiles 2 jp and 2 jp + 1, k-step kk.
template <int kPitch, bool kKMajor>
__device__ __forceinline__ void load_b_frags(unsigned (&r)[4], unsigned b, int jp, int kk) {
  if constexpr (kKMajor) {
    ldmatrix_x4_trans(r, b + smem_offset<kPitch>(kk * kMmaK, jp * 2 * kMmaCols));
  } else {
    ldmatrix_x4(r, b + smem_offset<kPitch>(jp * 2 * kMmaCols, kk * kMmaK));
  }
}

/// acc += A B with both operands in shared memory (orientations as in the file header). kUnroll k-steps
/// are unrolled together: all of them gives the scheduler the most freedom to load fragments early, fewer
/// bounds the registers those early loads hold.
template <bool kIsBf16, int kTM, int kTN, int kSteps, bool kATrans, int kAPitch, bool kBKMajor, int kBPitch,
          int kUnroll>
__device__ __forceinline__ void warp_gemm_ss(float (&acc)[kTM][kTN][4], unsigned a_tile, unsigned b_tile, int lane) {
  static_assert(kTN % 2 == 0, "B fragments are loaded for pairs of n-tiles");
  const unsigned a = a_tile + a_lane_offset<kAPitch, kATrans>(lane);
  const unsigned b = b_tile + b_lane_offset<kBPitch, kBKMajor>(lane);
#pragma unroll kUnroll
  for (int kk = 0; kk < kSteps; ++kk) {
    unsigned af[kTM][4];
#pragma unroll
    for (int i = 0; i < kTM; ++i) load_a_frag<kAPitch, kATrans>(af[i], a, i, kk);
#pragma unroll
    for (int jp = 0; jp < kTN / 2; ++jp) {
      unsigned bf[4];
      load_b_frags<kBPitch, kBKMajor>(bf, b, jp, kk);
#pragma unroll
      for (int i = 0; i < kTM; ++i) {
        mma_16x8x16<kIsBf16>(acc[i][2 * jp], af[i], bf[0], bf[1]);
        mma_16x8x16<kIsBf16>(acc[i][2 * jp + 1], af[i], bf[2], bf[3]);
      }
    }
  }
}

/// acc += A B with A already in registers as A fragments (af[i][kk]) and B in shared memory.
template <bool kIsBf16, int kTM, int kTN, int kSteps, bool kBKMajor, int kBPitch>
__device__ __forceinline__ void warp_gemm_rs(float (&acc)[kTM][kTN][4], const unsigned (&af)[kTM][kSteps][4],
                                             unsigned b_tile, int lane) {
  static_assert(kTN % 2 == 0, "B fragments are loaded for pairs of n-tiles");
  const unsigned b = b_tile + b_lane_offset<kBPitch, kBKMajor>(lane);
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk) {
#pragma unroll
    for (int jp = 0; jp < kTN / 2; ++jp) {
      unsigned bf[4];
      load_b_frags<kBPitch, kBKMajor>(bf, b, jp, kk);
#pragma unroll
      for (int i = 0; i < kTM; ++i) {
        mma_16x8x16<kIsBf16>(acc[i][2 * jp], af[i][kk], bf[0], bf[1]);
        mma_16x8x16<kIsBf16>(acc[i][2 * jp + 1], af[i][kk], bf[2], bf[3]);
      }
    }
  }
}

/// Sets an accumulator to zero.
template <int kTM, int kTN>
__device__ __forceinline__ void zero_acc(float (&acc)[kTM][kTN][4]) {
#pragma unroll
  for (int i = 0; i < kTM; ++i)
#pragma unroll
    for (int j = 0; j < kTN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
}

/// Moves a C-layout tile (kTN n-tiles of 8 columns) into the A layout of the next product's k-steps,
/// rounding to the 16-bit type: the C fragments of n-tiles 2kk and 2kk + 1 form the A fragment of k-step
/// kk (tile_mma.cuh), so no shared memory is involved.
template <bool kIsBf16, int kTM, int kTN>
__device__ __forceinline__ void acc_to_a_frags(unsigned (&af)[kTM][kTN / 2][4], const float (&acc)[kTM][kTN][4]) {
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int kk = 0; kk < kTN / 2; ++kk) {
      af[i][kk][0] = pack_half2<kIsBf16>(acc[i][2 * kk][0], acc[i][2 * kk][1]);
      af[i][kk][1] = pack_half2<kIsBf16>(acc[i][2 * kk][2], acc[i][2 * kk][3]);
      af[i][kk][2] = pack_half2<kIsBf16>(acc[i][2 * kk + 1][0], acc[i][2 * kk + 1][1]);
      af[i][kk][3] = pack_half2<kIsBf16>(acc[i][2 * kk + 1][2], acc[i][2 * kk + 1][3]);
    }
  }
}

/// Writes a C-layout tile, scaled by `mul` and rounded to the 16-bit type, into a shared-memory tile
/// (pitch kPitch elements) whose element (0, 0) is this warp's tile origin `dst`.
template <bool kIsBf16, int kPitch, int kTM, int kTN>
__device__ __forceinline__ void store_acc_smem(unsigned short* dst, const float (&acc)[kTM][kTN][4], float mul,
                                               int lane) {
  const int g = lane >> 2;
  const int t = lane & 3;
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
      unsigned short* at = dst + (i * kMmaRows + g) * kPitch + j * kMmaCols + 2 * t;
      *reinterpret_cast<unsigned*>(at) = pack_half2<kIsBf16>(acc[i][j][0] * mul, acc[i][j][1] * mul);
      *reinterpret_cast<unsigned*>(at + (kMmaRows / 2) * kPitch) =
          pack_half2<kIsBf16>(acc[i][j][2] * mul, acc[i][j][3] * mul);
    }
  }
}

}  // namespace fjk
