// Merging the partial results of one query row computed over disjoint kv ranges (the decode family's
// splits), in natural-log units. Host and device code (FJ_HD): the CPU tests check it against the float64
// reference.
//
// Split s of a row holds lse_s = log(sum of exp(score) over its keys) and o_s = its softmax-weighted mean of
// V (normalised over its own keys). The row's result is
//   LSE = log(sum_s exp(lse_s)),   O = sum_s exp(lse_s - LSE) o_s,
// computed around top = max_s lse_s so that no exponent overflows. With a sink, exp(sink) joins the
// denominator (an extra key with no value): LSE = log(sum_s exp(lse_s) + exp(sink)).
#pragma once

#include "codegen/templates/fastmath.cuh"
#include "dsl/Semantics.h"

namespace fjk {

/// What every split's weight exp(lse_s - LSE) is computed from.
struct SplitMerge {
  float top;        ///< max of the lse_s (and the sink)
  float inv_total;  ///< 1 / sum_s exp(lse_s - top) (with the sink's term); 0 for a row with no softmax
  float lse;        ///< the row's LSE
};

/// Reads the n partial LSEs lse[s * stride]. A split with no kept key has lse_s = -inf and weight 0. Every
/// split empty: LSE = -inf and every weight 0 (O = 0, the fully masked rule), or, with a finite sink,
/// LSE = sink (O = 0). A NaN lse_s (a NaN score in that split) or a NaN sink makes the row NaN: top, the
/// weights and LSE are NaN.
FJ_HD SplitMerge merge_splits(const float* lse, long long stride, int n, bool has_sink, float sink) {
  const float inf = fj::infinity();
  float top = has_sink ? sink : -inf;
  bool nan = has_sink && sink != sink;
  for (int s = 0; s < n; ++s) {
    const float x = lse[s * stride];
    nan = nan || x != x;
    top = x > top ? x : top;
  }
  SplitMerge m;
  if (nan) {
    m.top = m.inv_total = m.lse = fj::quietNaN();
    return m;
  }
  if (top == -inf) {  // no key and no finite sink: the row has no softmax
    m.top = -inf;
    m.inv_total = 0.0f;
    m.lse = -inf;
    return m;
  }
  // -inf terms give exp(-inf) = 0; the largest term is exp(0) = 1, so total >= 1.
  float total = has_sink ? fj::fastExp(sink - top) : 0.0f;
  for (int s = 0; s < n; ++s) total += fj::fastExp(lse[s * stride] - top);
  m.top = top;
  m.inv_total = 1.0f / total;
  m.lse = top + fj::fastLog(total);
  return m;
}

/// The weight of a split with partial LSE lse_s in the row's O. A row without a softmax gives 0 for every
/// split without evaluating exp(-inf - (-inf)) = NaN.
FJ_HD float split_weight(const SplitMerge& m, float lse_s) {
  if (m.inv_total == 0.0f) return 0.0f;
  return fj::fastExp(lse_s - m.top) * m.inv_total;
}

}  // namespace fjk
