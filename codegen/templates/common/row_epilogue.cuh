// The end of a row's online softmax, written once for every forward family: the normaliser of O and the
// row's LSE (with the variant's sink term when it has one), and the stores of LSE and of the optional max
// score (torch's return_aux max_scores) for the rows a thread holds.
#pragma once

#include "codegen/templates/common/attention_params.h"
#include "codegen/templates/common/online_softmax.cuh"

namespace fjk {

/// Whether the variant has a sink_mod (hand-written variants without the member have none).
template <class V, class = void>
inline constexpr bool kHasSinkOf = false;
template <class V>
inline constexpr bool kHasSinkOf<V, decltype(void(V::kHasSink))> = V::kHasSink;

/// inv_sum (what O is multiplied by) and lse (natural log) of the kRows rows whose first query indices are
/// q_of_row; with a sink_mod, each row's denominator gains exp(sink_mod(b, h, q)) (see finalize_with_sink).
template <class Var, int kRows>
__device__ __forceinline__ void finalize_rows(const RowStats<kRows>& st, float factor, const FwdParams& p, int b,
                                              int h, const int (&q_of_row)[kRows], float (&inv_sum)[kRows],
                                              float (&lse)[kRows]) {
  if constexpr (kHasSinkOf<Var>) {
    float sink[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) sink[r] = Var::sink_mod(b, h, q_of_row[r], p.cap);
    finalize_with_sink(st, factor, sink, inv_sum, lse);
  } else {
    finalize_row_stats(st, factor, inv_sum, lse);
  }
}

/// Stores one row's LSE and, when asked for (p.max_score), its max score in natural units (the max of the
/// modded, scaled scores; -inf for a row with every key masked). Rows at or past Lq are not written.
__device__ __forceinline__ void store_row_stats(const FwdParams& p, int b, int h, int q, float lse, float row_max,
                                                float factor) {
  if (q >= p.len_q) return;
  p.lse[b * p.lse_stride.b + h * p.lse_stride.h + q * p.lse_stride.l] = lse;
  if (p.max_score != nullptr) {
    // x units -> natural: exp(score) = 2^(x * factor), so score = x * factor * ln 2.
    const float m = row_max == neg_inf() ? neg_inf() : row_max * factor * fj::kLn2;
    p.max_score[b * p.max_score_stride.b + h * p.max_score_stride.h + q * p.max_score_stride.l] = m;
  }
}

}  // namespace fjk
