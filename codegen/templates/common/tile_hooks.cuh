// The hooks applied to an accumulator tile, written once for every kernel family: mask_mod into one bit
// per element, score_mod and the mask on the S scores, and P's conversion into the A operand of the PV
// product.
//
// A tile type `Tile` names the m16n8 accumulator layout of common/fragment.cuh: Tile::kMmaM 16-row
// m-tiles by Tile::kTilesN 8-column n-tiles per warp, s[i][j][e] holding row 16 i + g + 8 (e / 2) and column
// 8 j + 2 t + e % 2 from the thread's first element (q_first, kv_first). The sm80 FwdTraits is such a type;
// the sm90 family passes AccTile (one m-tile per warp of its warpgroup).
#pragma once

#include "codegen/templates/common/attention_params.h"
#include "codegen/templates/common/fragment.cuh"
#include "codegen/templates/common/online_softmax.cuh"

namespace fjk {

/// The m16n8 accumulator layout of kMmaM x kTilesN tiles per warp, fp32, with 16-bit operands.
template <bool kIsBf16_, int kMmaM_, int kTilesN_>
struct AccTile {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kMmaM = kMmaM_;
  static constexpr int kTilesN = kTilesN_;
  static constexpr int kStepsN = kTilesN / 2;  ///< 16-column k-steps of P as the A operand of PV
  static constexpr int kRowsPerThread = 2 * kMmaM;
};

/// Whether the variant comes with the row / column split of its score_mod or mask_mod (codegen's
/// SplitEmitter; hand-written variants without the members never use it).
template <class V, class = void>
inline constexpr bool kScoreSplitOf = false;
template <class V>
inline constexpr bool kScoreSplitOf<V, decltype(void(V::kScoreSplit))> = V::kScoreSplit;
template <class V, class = void>
inline constexpr bool kMaskSplitOf = false;
template <class V>
inline constexpr bool kMaskSplitOf<V, decltype(void(V::kMaskSplit))> = V::kMaskSplit;

/// Where the rows of a thread's tile sit: head(i, half) and query(i, half) of row half `half` (fragment rows
/// g and g + 8) of m-tile i. The prefill kernels' rows are consecutive queries of one head (UniformRows);
/// the decode family packs the query heads of a GQA group into one tile (decode/packed_rows.cuh).
struct UniformRows {
  int h;
  int q_first;  ///< query of the thread's element 0 in m-tile 0
  __device__ __forceinline__ int head(int, int) const { return h; }
  __device__ __forceinline__ int query(int i, int half) const { return q_first + i * kMmaRows + half * (kMmaRows / 2); }
};

/// Whether a kv tile needs masking: none (a full block inside the sequence) or the precomputed
/// per-element bits of TileMaskBits (a partial block, or a full block crossing Lkv).
enum MaskMode { kMaskNone = 0, kMaskBits = 1 };

/// One bit per accumulator element of a tile: the mask of a partial tile, evaluated before S exists.
template <class Tile>
struct TileMaskBits {
  static constexpr int kWords = (Tile::kMmaM * Tile::kTilesN * 4 + 31) / 32;
  unsigned word[kWords];
};

/// Evaluates the kv < Lkv bound and, for a partial block (kUseMaskMod), mask_mod for every element this
/// lane holds in the tile (its row and column parts once per row and column where the variant is split). Running it before S = QK^T keeps the scores out of registers while
/// mask_mod's own loads (captured tensors) are in flight. q_first / kv_first are the query / kv index of
/// this lane's element 0 in m-tile 0, n-tile 0.
template <class Tile, class Var, bool kUseMaskMod, class Rows>
__device__ __forceinline__ void compute_mask_bits(TileMaskBits<Tile>& bits, const FwdParams& p, int b, const Rows& rows,
                                                  int kv_first) {
#pragma unroll
  for (int w = 0; w < TileMaskBits<Tile>::kWords; ++w) bits.word[w] = 0u;
  if constexpr (kUseMaskMod && !Var::kMaskModIsNoop && kMaskSplitOf<Var>) {
    // The row part once per row this thread holds, the column part once per column, the rest per element.
    typename Var::MaskRow row_part[Tile::kMmaM][2];
#pragma unroll
    for (int i = 0; i < Tile::kMmaM; ++i)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        row_part[i][half] = Var::mask_mod_row(b, rows.head(i, half), rows.query(i, half), p.cap);
#pragma unroll
    for (int j = 0; j < Tile::kTilesN; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int kv_idx = kv_first + j * kMmaCols + c;
        // The column part is taken at the first row's head, which is every row's in the prefill kernels; the
        // decode family, whose rows mix heads, turns the split off (a column part may read h).
        const typename Var::MaskCol col = Var::mask_mod_col(b, rows.head(0, 0), kv_idx, p.cap);
#pragma unroll
        for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            // Columns at or past Lkv hold zero-filled K rows; they must not count as scores of 0.
            const bool keep = kv_idx < p.len_kv && Var::mask_mod_split(b, rows.head(i, half), rows.query(i, half), kv_idx,
                                                                       row_part[i][half], col, p.cap);
            const int n = (i * Tile::kTilesN + j) * 4 + 2 * half + c;
            bits.word[n / 32] |= keep ? 1u << (n % 32) : 0u;
          }
        }
      }
    }
    return;
  }
#pragma unroll
  for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
    for (int j = 0; j < Tile::kTilesN; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        // Element e sits 8 rows lower for e >= 2 and one column right for odd e.
        const int q_idx = rows.query(i, e >> 1);
        const int kv_idx = kv_first + j * kMmaCols + (e & 1);
        // Columns at or past Lkv hold zero-filled K rows; they must not count as scores of 0.
        bool keep = kv_idx < p.len_kv;
        if constexpr (kUseMaskMod && !Var::kMaskModIsNoop)
          keep = keep && Var::mask_mod(b, rows.head(i, e >> 1), q_idx, kv_idx, p.cap);
        const int n = (i * Tile::kTilesN + j) * 4 + e;
        bits.word[n / 32] |= keep ? 1u << (n % 32) : 0u;
      }
    }
  }
}

/// compute_mask_bits over consecutive queries of one head.
template <class Tile, class Var, bool kUseMaskMod>
__device__ __forceinline__ void compute_mask_bits(TileMaskBits<Tile>& bits, const FwdParams& p, int b, int h, int q_first,
                                                  int kv_first) {
  compute_mask_bits<Tile, Var, kUseMaskMod>(bits, p, b, UniformRows{h, q_first}, kv_first);
}

/// Applies score_mod and masking to one S tile in place, turning it into x units (see
/// online_softmax.cuh): raw q.k without a score_mod, score_mod(q.k * scale, ...) with one (its row and column
/// parts once per row and column where the variant is split). With kMaskBits, entries whose bit is clear
/// become -inf. A full tile inside the sequence with no score_mod costs nothing here.
template <class Tile, class Var, int kMode, class Rows>
__device__ __forceinline__ void apply_mods(float (&s)[Tile::kMmaM][Tile::kTilesN][4], const TileMaskBits<Tile>& bits,
                                           const FwdParams& p, int b, const Rows& rows, int kv_first) {
  auto masked = [&](int i, int j, int e, float x) {
    if constexpr (kMode == kMaskBits) {
      const int n = (i * Tile::kTilesN + j) * 4 + e;
      if (!((bits.word[n / 32] >> (n % 32)) & 1u)) x = neg_inf();
    }
    return x;
  };
  if constexpr (!Var::kScoreModIsNoop && kScoreSplitOf<Var>) {
    // The row part once per row this thread holds, the column part once per column, the rest per element.
    typename Var::ScoreRow row_part[Tile::kMmaM][2];
#pragma unroll
    for (int i = 0; i < Tile::kMmaM; ++i)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        row_part[i][half] = Var::score_mod_row(b, rows.head(i, half), rows.query(i, half), p.cap);
#pragma unroll
    for (int j = 0; j < Tile::kTilesN; ++j) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int kv_idx = kv_first + j * kMmaCols + c;
        // As in compute_mask_bits: one head for the column part (the decode family turns the split off).
        const typename Var::ScoreCol col = Var::score_mod_col(b, rows.head(0, 0), kv_idx, p.cap);
#pragma unroll
        for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int e = 2 * half + c;
            const float x = Var::score_mod_split(s[i][j][e] * p.scale, b, rows.head(i, half), rows.query(i, half), kv_idx,
                                                 row_part[i][half], col, p.cap);
            s[i][j][e] = masked(i, j, e, x);
          }
        }
      }
    }
  } else if constexpr (!Var::kScoreModIsNoop || kMode != kMaskNone) {
#pragma unroll
    for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
      for (int j = 0; j < Tile::kTilesN; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[i][j][e];
          if constexpr (!Var::kScoreModIsNoop) {
            const int q_idx = rows.query(i, e >> 1);
            const int kv_idx = kv_first + j * kMmaCols + (e & 1);
            x = Var::score_mod(x * p.scale, b, rows.head(i, e >> 1), q_idx, kv_idx, p.cap);
          }
          s[i][j][e] = masked(i, j, e, x);
        }
      }
    }
  }
}

/// apply_mods over consecutive queries of one head.
template <class Tile, class Var, int kMode>
__device__ __forceinline__ void apply_mods(float (&s)[Tile::kMmaM][Tile::kTilesN][4], const TileMaskBits<Tile>& bits,
                                           const FwdParams& p, int b, int h, int q_first, int kv_first) {
  apply_mods<Tile, Var, kMode>(s, bits, p, b, UniformRows{h, q_first}, kv_first);
}

/// Rounds the probabilities of one tile (s, already exponentiated) to the 16-bit type and moves them from
/// the C layout of n-tiles 2kk, 2kk + 1 into the A layout of PV's k-step kk, entirely in registers. Done
/// for the whole tile at once so the fp32 scores die before the V fragments are loaded.
template <class Tile>
__device__ __forceinline__ void convert_p(unsigned (&pa)[Tile::kMmaM][Tile::kStepsN][4],
                                          const float (&s)[Tile::kMmaM][Tile::kTilesN][4]) {
#pragma unroll
  for (int i = 0; i < Tile::kMmaM; ++i) {
#pragma unroll
    for (int kk = 0; kk < Tile::kStepsN; ++kk) {
      pa[i][kk][0] = pack_half2<Tile::kIsBf16>(s[i][2 * kk][0], s[i][2 * kk][1]);
      pa[i][kk][1] = pack_half2<Tile::kIsBf16>(s[i][2 * kk][2], s[i][2 * kk][3]);
      pa[i][kk][2] = pack_half2<Tile::kIsBf16>(s[i][2 * kk + 1][0], s[i][2 * kk + 1][1]);
      pa[i][kk][3] = pack_half2<Tile::kIsBf16>(s[i][2 * kk + 1][2], s[i][2 * kk + 1][3]);
    }
  }
}

}  // namespace fjk
