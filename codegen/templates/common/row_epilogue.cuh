// The end of a row's online softmax, written once for every forward family: the normaliser of O and the
// row's LSE (with the variant's sink term when it has one), and the stores of LSE and of the optional max
// score (torch's return_aux max_scores) for the rows a thread holds.
#pragma once

#include "codegen/templates/common/attention_params.h"
#include "codegen/templates/common/online_softmax.cuh"
#include "codegen/templates/common/prob_pass.cuh"

namespace fjk {

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

/// What each row of O is multiplied by at the end, and the row's LSE: the online softmax's normaliser
/// (finalize_rows) in kPassOnline and kPassStats; in the apply passes, whose weights are already
/// normalised, 1 for a row with a softmax and 0 for one without (O = 0, as in the one-pass kernel; lse is
/// not produced there).
template <class Var, int kPass, int kRows>
__device__ __forceinline__ void finish_rows(const RowStats<kRows>& st, const ProbRows<kRows>& rows, float factor,
                                            const FwdParams& p, int b, int h, const int (&q_of_row)[kRows],
                                            float (&inv_sum)[kRows], float (&lse)[kRows]) {
  if constexpr (pass_applies_prob(kPass)) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      inv_sum[r] = rows.lse2[r] == fj::infinity() ? 0.0f : 1.0f;
      lse[r] = 0.0f;
    }
  } else {
    finalize_rows<Var>(st, factor, p, b, h, q_of_row, inv_sum, lse);
  }
}

/// Stores what a pass produces per row besides O: LSE and max scores (kPassOnline, kPassStats) and the
/// row's num_visible (kPassStats, when the prob_mod reads it). Called by all four lanes of a quad (the count
/// is their sum); `leader` (one lane per quad) stores.
template <class Var, int kPass, int kRows>
__device__ __forceinline__ void store_pass_rows(const FwdParams& p, int b, int h, const int (&q_of_row)[kRows],
                                                const float (&lse)[kRows], const RowStats<kRows>& st,
                                                const ProbRows<kRows>& rows, float factor, bool leader) {
  if constexpr (!pass_applies_prob(kPass)) {
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (leader) store_row_stats(p, b, h, q_of_row[r], lse[r], st.max[r], factor);
  }
  if constexpr (kPass == kPassStats && kProbReadsVisibleOf<Var>) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int visible = quad_sum_int(rows.visible[r]);
      if (leader && q_of_row[r] < p.len_q) p.row_visible[visible_index(p, b, h, q_of_row[r])] = visible;
    }
  }
}

}  // namespace fjk
