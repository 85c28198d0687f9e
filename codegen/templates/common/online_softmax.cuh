// Online softmax over the kv tiles of one row block (FlashAttention-2 style), on the registers of the
// mma accumulators.
//
// Each thread owns kRows accumulator rows (two per 16-row m-tile: fragment rows g and g + 8) and, per
// row, a slice of the columns; the 4 lanes of a quad together hold a full row of a tile. Scores arrive
// in "x units" with a per-kernel factor: exp(score) == 2^(x * factor). Without a score_mod x is the raw
// q.k dot product and factor = scale * log2(e); with a score_mod x is the modded score and factor =
// log2(e).
//
// Each exponent is (x - m) * factor, not FlashAttention's single FFMA x * factor - m * factor: the FFMA
// leaves the rounding residual of m * factor, up to half an ulp of it, in the max's own term, so for
// large scores (|m * factor| >= 2^31, e.g. a score_mod 1e30 / score) the max's 2^0 became 2^-128 = 0 or
// 2^128 = inf and the row came out 0 / 0 = NaN from finite inputs (the GPU fuzzer's case 20261421), and
// from |m * factor| ~ 2^17 on it was off by more than bf16's precision. x - m is exact for the max, so
// its term is exactly 1 and l >= 1 for every row with a finite score.
//
// Running state per row: m = max of x so far, l = sum of 2^((x - m) * factor) over this thread's
// columns (the quad sum is taken once, at the end). O is rescaled by 2^((m_old - m_new) * factor)
// whenever a tile raises the max.
#pragma once

#include "codegen/templates/fastmath.cuh"
#include "codegen/templates/common/fragment.cuh"

namespace fjk {

/// -inf as a float, the value of a masked score.
__device__ __forceinline__ float neg_inf() { return -fj::infinity(); }

/// Per-thread running max and partial sum of its accumulator rows.
template <int kRows>
struct RowStats {
  float max[kRows];
  float sum[kRows];
};

template <int kRows>
__device__ __forceinline__ void init_row_stats(RowStats<kRows>& st) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    st.max[r] = neg_inf();
    st.sum[r] = 0.0f;
  }
}

/// Folds one tile of scores s[kMmaM][kTilesN][4] (x units, masked entries -inf) into the row stats,
/// turns s into the unnormalised probabilities 2^((x - m_new) * factor) and returns in `corr` the factor
/// each row of O must be multiplied by (2^((m_old - m_new) * factor)).
template <int kMmaM, int kTilesN>
__device__ __forceinline__ void update_row_stats(float (&s)[kMmaM][kTilesN][4], RowStats<2 * kMmaM>& st,
                                                 float (&corr)[2 * kMmaM], float factor) {
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = 2 * i + half;
      float tile_max = st.max[r];
#pragma unroll
      for (int j = 0; j < kTilesN; ++j) {
        tile_max = fmaxf(tile_max, fmaxf(s[i][j][2 * half], s[i][j][2 * half + 1]));
      }
      const float m_new = quad_max(tile_max);
      // A row with every score so far masked keeps m_new == -inf. Subtracting it would give
      // (-inf) - (-inf) = NaN in both exponents below; subtracting 0 instead gives 2^-inf = 0 for the
      // masked entries and for the (still zero) history, so the row stays exactly O = 0, l = 0.
      const float m_ref = m_new == neg_inf() ? 0.0f : m_new;
      // m_old == -inf (nothing seen yet) gives corr = 2^-inf = 0, which clears nothing but zeros.
      corr[r] = fj::fastExp2((st.max[r] - m_ref) * factor);
      st.max[r] = m_new;
      float row_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < kTilesN; ++j) {
#pragma unroll
        for (int e = 2 * half; e < 2 * half + 2; ++e) {
          const float p = fj::fastExp2((s[i][j][e] - m_ref) * factor);
          s[i][j][e] = p;
          row_sum += p;
        }
      }
      st.sum[r] = st.sum[r] * corr[r] + row_sum;
    }
  }
}

/// Multiplies each row of the O accumulator o[kMmaM][kTilesDv][4] by its correction factor.
template <int kMmaM, int kTilesDv>
__device__ __forceinline__ void rescale_o(float (&o)[kMmaM][kTilesDv][4], const float (&corr)[2 * kMmaM]) {
#pragma unroll
  for (int i = 0; i < kMmaM; ++i) {
#pragma unroll
    for (int j = 0; j < kTilesDv; ++j) {
      o[i][j][0] *= corr[2 * i];
      o[i][j][1] *= corr[2 * i];
      o[i][j][2] *= corr[2 * i + 1];
      o[i][j][3] *= corr[2 * i + 1];
    }
  }
}

/// Completes the row sums across the quad and returns, per row, the factor that normalises O
/// (1 / l) and the natural-log logsumexp.
template <int kRows>
__device__ __forceinline__ void finalize_row_stats(const RowStats<kRows>& st, float factor, float (&inv_sum)[kRows],
                                                   float (&lse)[kRows]) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float l = quad_sum(st.sum[r]);
    // Fully masked row (every score -inf, so every term is 2^-inf = 0 and l == 0 exactly): torch's
    // flex_attention returns O = 0 and LSE = -inf. Testing l == 0 rather than dividing keeps
    // 0 * (1/0) = NaN and log(0) out of the output. If any score is finite, its max term contributes
    // exactly 2^0 = 1 (update_row_stats), so l >= 1 and the normal path is safe. A NaN score (NaN in q or k, or a score_mod that
    // returns NaN) makes l NaN: that row is not "masked" and must come out NaN (O and LSE), as torch's
    // does, so the test is l == 0 and never !(l > 0). fmaxf ignores NaN, so the max alone cannot tell.
    const bool empty = l == 0.0f;
    inv_sum[r] = empty ? 0.0f : 1.0f / l;
    // log2(sum 2^(x * factor)) = m * factor + log2(l); times ln 2 gives torch's natural-log LSE.
    lse[r] = empty ? neg_inf() : (st.max[r] * factor + fj::fastLog2(l)) * fj::kLn2;
  }
}

/// finalize_row_stats for a variant with a sink: row r's denominator gains exp(sink[r]) (sink in natural
/// units), an extra key with no value, so O = sum_j 2^(x_j * factor) v_j / (l + exp(sink)) and LSE =
/// log(l_natural + exp(sink)). Computed in log2 units around M = max(row max, sink) so that neither term
/// overflows. A row whose keys are all masked (l == 0) gets O = 0 and LSE = sink, finite; a NaN score or
/// sink makes the row NaN; a sink of -inf adds nothing (and with every key masked the row is masked: O = 0,
/// LSE = -inf).
template <int kRows>
__device__ __forceinline__ void finalize_with_sink(const RowStats<kRows>& st, float factor, const float (&sink)[kRows],
                                                   float (&inv_sum)[kRows], float (&lse)[kRows]) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float l = quad_sum(st.sum[r]);
    const float m2 = st.max[r] == neg_inf() ? neg_inf() : st.max[r] * factor;
    const float s2 = sink[r] * fj::kLog2e;
    // fmaxf ignores a NaN operand; a NaN sink still reaches `total` through its own exp2 below.
    const float big = fmaxf(m2, s2);
    if (big == neg_inf() && s2 == s2) {  // no finite score and a -inf sink: the fully masked rule
      inv_sum[r] = l == 0.0f ? 0.0f : 1.0f / l;
      lse[r] = l == 0.0f ? neg_inf() : fj::quietNaN();
      continue;
    }
    // m2 = -inf (every key masked) gives 2^-inf = 0: O = 0 and the sink alone in the denominator.
    const float keep = fj::fastExp2(m2 - big);
    const float total = l * keep + fj::fastExp2(s2 - big);
    inv_sum[r] = keep / total;
    lse[r] = (big + fj::fastLog2(total)) * fj::kLn2;
  }
}

}  // namespace fjk
