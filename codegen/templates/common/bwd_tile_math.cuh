// The element-wise work of every backward family on an S-shaped accumulator tile: the recomputed
// probabilities P (score_mod, mask_mod, sequence bounds, a prob_mod's weights) and dS from dP (through the
// generated score_mod_grad / prob_mod_grad).
//
// Element ownership of an S-shaped accumulator s[kTM][kTN][4] (common/fragment.cuh; an sm80 warp tile
// and each warp of a wgmma accumulator alike): lane (g = lane / 4, t = lane % 4) holds element e of m-tile
// i, n-tile j at query q_first + 16 i + 8 (e / 2) and kv kv_first + 8 j + e % 2, where q_first / kv_first
// are the indices of the lane's element (0, 0, 0).
#pragma once

#include "codegen/templates/common/attention_bwd_params.h"
#include "codegen/templates/common/fragment.cuh"
#include "codegen/templates/common/grad_cache.cuh"
#include "codegen/templates/common/variant_traits.cuh"

namespace fjk {

/// Whether a tile needs per-element masking: kNoCheck for a full mask block inside both sequences,
/// kCheck for a partial block (mask_mod) or a tile crossing Lq or Lkv (bounds).
enum BwdMaskMode { kNoCheck = 0, kCheck = 1 };

/// One bit per accumulator element: the mask of a checked tile, kept from the P phase to the dS phase
/// so that mask_mod runs once per element when P is recomputed.
template <int kElems>
struct TileBits {
  static constexpr int kWords = (kElems + 31) / 32;
  unsigned word[kWords];
  __device__ __forceinline__ void clear() {
#pragma unroll
    for (int w = 0; w < kWords; ++w) word[w] = 0u;
  }
  __device__ __forceinline__ void set(int n, bool v) { word[n / 32] |= v ? 1u << (n % 32) : 0u; }
  __device__ __forceinline__ bool get(int n) const { return (word[n / 32] >> (n % 32)) & 1u; }
};

/// Whether element (q, kv) of a checked tile takes part: inside both sequences and, in a partial block,
/// kept by mask_mod. Columns at or past Lkv hold zero-filled K rows and rows at or past Lq zero-filled Q
/// rows; their scores are real numbers (0) that must not count, so they are masked like mask_mod's.
template <class Var>
__device__ __forceinline__ bool bwd_keep(const BwdParams& p, int b, int h, int q, int kv, bool partial) {
  bool keep = q < p.len_q && kv < p.len_kv;
  if constexpr (!Var::kMaskModIsNoop) keep = keep && (!partial || Var::mask_mod(b, h, q, kv, p.cap));
  return keep;
}

/// exp(t - LSE) of one element, where t = score_mod(scale * dot) or, without a score_mod, scale * dot
/// (folded into `factor` with log2(e)). lse2 = LSE * log2(e) is +inf for a fully masked row (see the
/// preprocess), so every P of such a row is 2^-inf = 0 and its gradients vanish instead of becoming
/// NaN; a masked score t = -inf also gives 0.
template <class Var>
__device__ __forceinline__ float bwd_prob(float dot, float factor, float lse2, const BwdParams& p, int b, int h, int q,
                                          int kv) {
  float x = dot;
  if constexpr (!Var::kScoreModIsNoop) x = Var::score_mod(dot * p.scale, b, h, q, kv, p.cap);
  return fj::fastExp2(fmaf(x, factor, -lse2));
}

/// The factor that turns a score into a base-2 exponent: with no score_mod the score is the raw dot
/// product and scale * log2(e) folds into the exp2 FFMA.
template <class Var>
__device__ __forceinline__ float bwd_exp_factor(const BwdParams& p) {
  return Var::kScoreModIsNoop ? p.scale * fj::kLog2e : fj::kLog2e;
}

/// The prob_mod gradient sink of kernels whose captured-tensor gradients come from elsewhere (the dQ kernel:
/// the dK/dV kernel sees every position too).
struct DroppedGrads {
  __device__ __forceinline__ DroppedGrads enabled_if(bool) const { return *this; }
  template <class... I>
  __device__ __forceinline__ void accumulate(int, int, const fj::TensorArg&, float, I...) const {}
};

/// Whether the backward keeps the raw S of a tile until dS: with a score_mod (its gradient reads the raw
/// score) or a prob_mod (dV takes prob_mod(P) and dS takes P itself, so P is recomputed from S).
template <class Var>
inline constexpr bool kBwdKeepsRawScores = !Var::kScoreModIsNoop || kHasProbOf<Var>;

/// num_visible of the lane's rows (q_first + 16 i + 8 half) for a prob_mod that reads it (the forward's
/// counts, BwdParams::row_visible); 0 otherwise and for rows past Lq.
template <class Var, int kTM>
__device__ __forceinline__ void read_row_visible(int (&visible)[kTM][2], const BwdParams& p, int b, int h,
                                                 int q_first) {
#pragma unroll
  for (int i = 0; i < kTM; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int q = q_first + i * kMmaRows + half * (kMmaRows / 2);
      visible[i][half] = kProbReadsVisibleOf<Var> && q < p.len_q
                             ? p.row_visible[((long long)b * p.heads_q + h) * p.len_q + q]
                             : 0;
    }
}

/// P of one tile from the raw dot products s (q.k, unscaled), into `pr`, which may be s itself (every
/// element is read before it is written); with a prob_mod, the weights of dV: prob_mod(P). Masked elements
/// get 0 (without calling prob_mod, as in the forward, also in a row without a softmax: lse2 = +inf); a
/// checked tile also records its keep bits (for compute_ds's recomputation).
template <class Var, int kTM, int kTN, int kMode>
__device__ __forceinline__ void compute_probs(const float (&s)[kTM][kTN][4], float (&pr)[kTM][kTN][4],
                                              TileBits<kTM * kTN * 4>& bits, const float (&lse2)[kTM][2],
                                              const int (&visible)[kTM][2], const BwdParams& p, int b, int h,
                                              int q_first, int kv_first, bool partial) {
  const float factor = bwd_exp_factor<Var>(p);
  if constexpr (kMode == kCheck) bits.clear();
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int q = q_first + i * kMmaRows + (e >> 1) * (kMmaRows / 2);
        const int kv = kv_first + j * kMmaCols + (e & 1);
        const float prob = bwd_prob<Var>(s[i][j][e], factor, lse2[i][e >> 1], p, b, h, q, kv);
        float w = prob;
        if constexpr (kHasProbOf<Var>)
          w = lse2[i][e >> 1] != fj::infinity() ? Var::prob_mod(prob, b, h, q, kv, visible[i][e >> 1], p.cap) : 0.0f;
        if constexpr (kMode == kCheck) {
          const bool keep = bwd_keep<Var>(p, b, h, q, kv, partial);
          bits.set((i * kTN + j) * 4 + e, keep);
          pr[i][j][e] = keep ? w : 0.0f;
        } else {
          pr[i][j][e] = w;
        }
      }
    }
  }
}

/// Whether compute_ds calls score_mod_grad with a gradient sink on every lane for every element (the
/// dK/dV kernel's GradWindowSink, whose adds are warp-wide; elements with P == 0 add nothing) rather than
/// only where P != 0 (fj::GradArgs).
__host__ __device__ constexpr bool sink_needs_all_lanes(const fj::GradArgs*) { return false; }

/// dS of one tile, in place of dP: dT = P * (dP - Delta), dS = score_mod_grad(scale * dot, ..., dT) (which
/// also adds the captured-tensor gradients into `grads`: fj::GradArgs, or the dK/dV kernel's
/// GradWindowSink), or dS = dT without a score_mod. `ps` holds P when kBwdKeepsRawScores is false;
/// otherwise the raw dot products, and P is recomputed from them (with the keep bits of
/// compute_probs): keeping S, P and dP at once would not fit in registers next to dK and dV.
/// Elements with P == 0 (masked, or underflowed like the reference's) get dS = 0 without calling the
/// gradient: a masked score's derivative may be inf or NaN, and 0 * NaN must not leak into dQ / dK.
///
/// With a prob_mod g, d loss / d P is dP * g'(P) (prob_mod_grad, which adds its captured tensors'
/// gradients into `prob_grads`: common/grad_cache.cuh's SiteCachedGrads, or DroppedGrads) on every kept
/// position of a row with a softmax, including those with P == 0 (g's tensors still get dP * dg / d tensor
/// there), and Delta is the forward's D' (prob_pass.cuh). It is called for every element, the others
/// gated off by a select, so that no lane diverges around it.
template <class Var, int kTM, int kTN, int kMode, class Grads, class ProbGrads>
__device__ __forceinline__ void compute_ds(const float (&ps)[kTM][kTN][4], float (&dp)[kTM][kTN][4],
                                           const TileBits<kTM * kTN * 4>& bits, const float (&lse2)[kTM][2],
                                           const float (&delta)[kTM][2], const int (&visible)[kTM][2],
                                           const BwdParams& p, const Grads& grads, const ProbGrads& prob_grads,
                                           int b, int h, int q_first, int kv_first) {
  const float factor = bwd_exp_factor<Var>(p);
#pragma unroll
  for (int i = 0; i < kTM; ++i) {
#pragma unroll
    for (int j = 0; j < kTN; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int q = q_first + i * kMmaRows + (e >> 1) * (kMmaRows / 2);
        const int kv = kv_first + j * kMmaCols + (e & 1);
        float prob = ps[i][j][e];
        if constexpr (kBwdKeepsRawScores<Var>) {
          prob = bwd_prob<Var>(ps[i][j][e], factor, lse2[i][e >> 1], p, b, h, q, kv);
          if constexpr (kMode == kCheck) prob = bits.get((i * kTN + j) * 4 + e) ? prob : 0.0f;
        }
        float dprob = dp[i][j][e];
        if constexpr (kHasProbOf<Var>) {
          const bool kept =
              (kMode == kNoCheck || bits.get((i * kTN + j) * 4 + e)) && lse2[i][e >> 1] != fj::infinity();
          const float g = Var::prob_mod_grad(prob, b, h, q, kv, visible[i][e >> 1], kept ? dp[i][j][e] : 0.0f, p.cap,
                                             prob_grads.enabled_if(kept));
          dprob = kept ? g : 0.0f;  // a select: a dropped position's derivative never leaks
        }
        const float dt = prob * (dprob - delta[i][e >> 1]);
        float ds = dt;
        if constexpr (!Var::kScoreModIsNoop && sink_needs_all_lanes(static_cast<const Grads*>(nullptr))) {
          const float grad = Var::score_mod_grad(ps[i][j][e] * p.scale, b, h, q, kv, dt, p.cap,
                                                 grads.enabled_if(prob != 0.0f));
          ds = prob != 0.0f ? grad : 0.0f;  // a select: the masked element's derivative never leaks
        } else if constexpr (!Var::kScoreModIsNoop) {
          ds = prob != 0.0f ? Var::score_mod_grad(ps[i][j][e] * p.scale, b, h, q, kv, dt, p.cap, grads) : 0.0f;
        }
        dp[i][j][e] = ds;
      }
    }
  }
}

}  // namespace fjk
