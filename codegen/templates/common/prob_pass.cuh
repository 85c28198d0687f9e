// The passes of a forward whose variant has a prob_mod (dsl/Mods.h), written once for every forward family.
//
// p'_ij = prob_mod(p_ij, ...) needs each row's final normaliser before P @ V, which an online softmax knows
// only after its last tile. Such a forward therefore runs the family's kernel more than once, each launch a
// compile-time pass (FwdPass) of the same template:
//
//   kPassStats         the online softmax without V: LSE (with the sink), max scores and, when the prob_mod
//                      reads it, num_visible (the keys the mask keeps) of every row;
//   kPassApply         p = exp(s - LSE) from the stored LSE, O = sum_j prob_mod(p_ij) v_j, not renormalised;
//   kPassDeltaWeights  the same walk accumulating p g'(p) v_j into a second output (training only). The
//                      backward's D'_i = sum_j p_ij g'(p_ij) dP_ij, which replaces FlashAttention's
//                      rowsum(dO * O) when P is modified, is then dO_i . (sum_j p_ij g'(p_ij) v_j): the usual
//                      preprocess over this output instead of O.
//
// A variant without a prob_mod runs kPassOnline, the one-pass kernel; nothing here is instantiated for it.
#pragma once

#include "codegen/templates/common/attention_params.h"
#include "codegen/templates/common/online_softmax.cuh"
#include "codegen/templates/common/tile_hooks.cuh"
#include "codegen/templates/common/variant_traits.cuh"

namespace fjk {

enum FwdPass { kPassOnline = 0, kPassStats = 1, kPassApply = 2, kPassDeltaWeights = 3 };

/// Whether a pass multiplies by V (the statistics pass loads no V at all).
__host__ __device__ constexpr bool pass_reads_v(int pass) { return pass != kPassStats; }
/// Whether a pass weighs V with the stored LSE instead of an online softmax.
__host__ __device__ constexpr bool pass_applies_prob(int pass) {
  return pass == kPassApply || pass == kPassDeltaWeights;
}

/// Per-row state of the prob passes for the kRows rows a thread holds. In kPassStats `visible` counts the
/// kept keys seen so far (per thread; the quad's sum is the row's); in the apply passes both come from the
/// statistics pass.
template <int kRows>
struct ProbRows {
  float lse2[kRows];  ///< LSE * log2(e): p = 2^(x * factor - lse2); +inf for a row without a softmax
  int visible[kRows];
};

/// Index of row (b, h, q) in FwdParams::row_visible ([B, Hq, Lq], contiguous).
__device__ __forceinline__ long long visible_index(const FwdParams& p, int b, int h, int q) {
  return ((long long)b * p.heads_q + h) * p.len_q + q;
}

template <int kRows>
__device__ __forceinline__ void clear_prob_rows(ProbRows<kRows>& rows) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) rows.lse2[r] = 0.0f, rows.visible[r] = 0;
}

/// Reads the statistics pass's results for the rows q_of_row (apply passes).
template <class Var, int kRows>
__device__ __forceinline__ void load_prob_rows(ProbRows<kRows>& rows, const FwdParams& p, int b, int h,
                                               const int (&q_of_row)[kRows]) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int q = q_of_row[r];
    const bool inside = q < p.len_q;
    const float lse = inside ? p.lse[b * p.lse_stride.b + h * p.lse_stride.h + q * p.lse_stride.l] : neg_inf();
    // LSE = -inf: the row has no softmax (every key masked and no sink, or every kept score -inf), and, as
    // in the one-pass kernel, O = 0. +inf makes every p of the row 2^-inf = 0 instead of the NaN of
    // (-inf) - (-inf), and prob_apply's `live` test keeps prob_mod from being called there (it need not
    // map 0 to 0). Rows past Lq are treated alike and never stored. A NaN LSE stays NaN: its row comes out
    // NaN, as the one-pass kernel's does.
    rows.lse2[r] = lse == neg_inf() ? fj::infinity() : lse * fj::kLog2e;
    rows.visible[r] = kProbReadsVisibleOf<Var> && inside ? p.row_visible[visible_index(p, b, h, q)] : 0;
  }
}

/// kPassStats: adds one tile's kept positions to the thread's per-row counts (num_visible). kMaskNone is a
/// full block's tile inside the sequence: every column this thread holds is kept.
template <class Tile, int kMode>
__device__ __forceinline__ void count_kept(const TileMaskBits<Tile>& bits, ProbRows<Tile::kRowsPerThread>& rows) {
#pragma unroll
  for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      if constexpr (kMode == kMaskNone) {
        rows.visible[2 * i + half] += 2 * Tile::kTilesN;
      } else {
#pragma unroll
        for (int j = 0; j < Tile::kTilesN; ++j) {
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int n = (i * Tile::kTilesN + j) * 4 + 2 * half + c;
            rows.visible[2 * i + half] += (bits.word[n / 32] >> (n % 32)) & 1u;
          }
        }
      }
    }
  }
}

/// The apply passes' replacement for the online softmax: turns a tile of scores s (x units, masked entries
/// -inf) into the weights of V, p' = prob_mod(p) (kPassApply) or p * d prob_mod / d p (kPassDeltaWeights),
/// with p = 2^(x * factor - lse2). Positions the mask drops get 0 without calling prob_mod, like the
/// reference; a kept position whose score is -inf (score_mod) has p = 0 and gets prob_mod(0).
template <class Tile, class Var, int kMode, int kPass>
__device__ __forceinline__ void prob_apply(float (&s)[Tile::kMmaM][Tile::kTilesN][4], const TileMaskBits<Tile>& bits,
                                           const ProbRows<Tile::kRowsPerThread>& rows, float factor,
                                           const FwdParams& p, int b, int h, int q_first, int kv_first) {
#pragma unroll
  for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
    for (int j = 0; j < Tile::kTilesN; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = 2 * i + (e >> 1);
        const int n = (i * Tile::kTilesN + j) * 4 + e;
        const bool kept = kMode == kMaskNone || ((bits.word[n / 32] >> (n % 32)) & 1u);
        const bool live = rows.lse2[r] != fj::infinity();
        const int q = q_first + i * kMmaRows + (e >> 1) * (kMmaRows / 2);
        const int kv = kv_first + j * kMmaCols + (e & 1);
        const float pr = fj::fastExp2(fmaf(s[i][j][e], factor, -rows.lse2[r]));
        float w;
        if constexpr (kPass == kPassApply) {
          w = Var::prob_mod(pr, b, h, q, kv, rows.visible[r], p.cap);
        } else {
          w = pr * Var::prob_mod_dp(pr, b, h, q, kv, rows.visible[r], p.cap);
        }
        s[i][j][e] = kept && live ? w : 0.0f;  // a select: a dropped position's value never leaks
      }
    }
  }
}

/// Integer sum over the 4 lanes of a quad (a row's columns).
__device__ __forceinline__ int quad_sum_int(int x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace fjk
