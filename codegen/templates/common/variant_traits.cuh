// What a kernel asks of its Variant beyond score_mod / mask_mod, as detection traits: each is false for a
// variant without the member (the hand-written variants of bench/fwd_selftest.cu and the tests), so those
// need not spell out every hook kind they lack.
#pragma once

namespace fjk {

/// The variant has a sink_mod (a per-row softmax-denominator term).
template <class V, class = void>
inline constexpr bool kHasSinkOf = false;
template <class V>
inline constexpr bool kHasSinkOf<V, decltype(void(V::kHasSink))> = V::kHasSink;

/// The variant has a prob_mod (a post-softmax probability mod: prob_pass.cuh).
template <class V, class = void>
inline constexpr bool kHasProbOf = false;
template <class V>
inline constexpr bool kHasProbOf<V, decltype(void(V::kHasProb))> = V::kHasProb;

/// Its prob_mod reads num_visible (each row's count of kept keys).
template <class V, class = void>
inline constexpr bool kProbReadsVisibleOf = false;
template <class V>
inline constexpr bool kProbReadsVisibleOf<V, decltype(void(V::kProbReadsVisible))> = V::kProbReadsVisible;

/// The number of gradient accumulation sites of its prob_mod_grad (0 without a prob_mod).
template <class V, class = void>
inline constexpr int kProbGradSitesOf = 0;
template <class V>
inline constexpr int kProbGradSitesOf<V, decltype(void(V::kProbGradSites))> = V::kProbGradSites;

}  // namespace fjk
