// Helpers for the GPU backward tests: the "low-precision reference" of FlashAttention-3's pass rule for
// the backward, and the comparison that applies the rule.
//
// The exact reference is flex_attention_backward on float32 CPU copies of the (fp16 / bf16) inputs: the
// float64 reference recomputes everything and rounds only its outputs to float32. The low-precision
// reference also runs in float64 but rounds where a 16-bit kernel must: P to the input dtype before
// dV = P^T dO, dS to the input dtype before dK = dS^T Q and dQ = dS K, Delta = rowsum(dO * O) from the
// forward output O as stored (16-bit), and dQ / dK / dV to the dtype at the end. Its distance to the exact
// reference is the error a correct 16-bit kernel is entitled to; a kernel passes with
// err <= 2 * err(low-precision reference) + atol.
#pragma once

#include <cmath>
#include <vector>

#include "AttentionTestUtil.h"
#include "dsl/Interpreter.h"
#include "runtime/AttentionBackward.h"

namespace flexjit::testing {

/// Gradients as doubles: dq, dk, dv and one vector per gradientCaptures(score) entry.
struct GradValues {
  std::vector<double> dq, dk, dv;
  std::vector<std::vector<double>> captures;
};

inline double roundTo(DType dtype, double x) {
  if (dtype == DType::BF16) return fj::bf16ToFloat(floatToBf16(static_cast<float>(x)));
  if (dtype == DType::F16) return fj::halfToFloat(floatToHalf(static_cast<float>(x)));
  return x;
}

/// The low-precision reference backward on CPU tensors (q, k, v, out, dout in `dtype`, lse float32; the
/// mods' captures on the CPU). Positions are kept where mask_mod says so (the block mask built from it is
/// exact).
inline GradValues lowPrecisionBackward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                       const Tensor& lse, const Tensor& dout, const ScoreMod& score,
                                       const MaskMod& mask, float scale) {
  const auto& qs = q.shape();
  const int64_t B = qs[0], Hq = qs[1], Lq = qs[2], D = qs[3], Hkv = k.shape()[1], Lkv = k.shape()[2],
                Dv = v.shape()[3], group = Hq / Hkv;
  const DType dtype = q.dtype();
  std::vector<double> Q = asDoubles(q), K = asDoubles(k), V = asDoubles(v), O = asDoubles(out), dO = asDoubles(dout),
                      L = asDoubles(lse);
  Program ps(score), pm(mask);
  ps.bindCaptures();
  pm.bindCaptures();
  std::vector<std::shared_ptr<TensorCapture>> wanted = gradientCaptures(score);
  std::vector<int> slotOf(score.tensors().size(), -1);
  for (size_t t = 0; t < score.tensors().size(); ++t)
    for (size_t w = 0; w < wanted.size(); ++w)
      if (score.tensors()[t] == wanted[w]) slotOf[t] = static_cast<int>(w);
  GradValues g;
  g.dq.assign(Q.size(), 0.0);
  g.dk.assign(K.size(), 0.0);
  g.dv.assign(V.size(), 0.0);
  for (const auto& w : wanted) g.captures.emplace_back(static_cast<size_t>(w->view->numel()), 0.0);
  std::vector<double> dp(static_cast<size_t>(Lkv)), pr(static_cast<size_t>(Lkv)), raw(static_cast<size_t>(Lkv));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t hk = h / group, qi = ((b * Hq + h) * Lq + i);
        const double lseI = L[qi];
        if (std::isinf(lseI)) continue;  // a fully masked row: every gradient of it is 0
        double delta = 0;
        for (int64_t d = 0; d < Dv; ++d) delta += dO[qi * Dv + d] * O[qi * Dv + d];
        for (int64_t j = 0; j < Lkv; ++j) {
          const int64_t kj = (b * Hkv + hk) * Lkv + j;
          Position pos{int32_t(b), int32_t(h), int32_t(i), int32_t(j)};
          pr[j] = 0;
          if (!pm.mask(pos)) continue;
          double dot = 0, dpj = 0;
          for (int64_t d = 0; d < D; ++d) dot += Q[qi * D + d] * K[kj * D + d];
          for (int64_t d = 0; d < Dv; ++d) dpj += dO[qi * Dv + d] * V[kj * Dv + d];
          raw[j] = scale * dot;
          pr[j] = std::exp(ps.scoreF64(raw[j], pos) - lseI);
          dp[j] = dpj;
        }
        for (int64_t j = 0; j < Lkv; ++j) {
          if (pr[j] == 0) continue;
          const int64_t kj = (b * Hkv + hk) * Lkv + j;
          const double p16 = roundTo(dtype, pr[j]);
          for (int64_t d = 0; d < Dv; ++d) g.dv[kj * Dv + d] += p16 * dO[qi * Dv + d];
          const Position pos{int32_t(b), int32_t(h), int32_t(i), int32_t(j)};
          ScoreGrad sg = ps.scoreGrad(raw[j], pos, pr[j] * (dp[j] - delta));
          for (size_t t = 0; t < sg.tensorGrads.size(); ++t)
            if (slotOf[t] >= 0)
              for (auto [idx, val] : sg.tensorGrads[t]) g.captures[slotOf[t]][idx] += val;
          const double ds16 = roundTo(dtype, sg.dscore);
          for (int64_t d = 0; d < D; ++d) {
            g.dq[qi * D + d] += scale * ds16 * K[kj * D + d];
            g.dk[kj * D + d] += scale * ds16 * Q[qi * D + d];
          }
        }
      }
  for (auto* t : {&g.dq, &g.dk, &g.dv})
    for (double& x : *t) x = roundTo(dtype, x);
  return g;
}

/// FA3's rule for one gradient: err(kernel) <= 2 * err(low-precision reference) + atol, with errors as
/// max |x - exact| and atol relative to the exact gradient's largest magnitude.
struct GradCheck {
  double error = 0, lowPrecisionError = 0, scale = 0;
  bool pass(double relAtol) const { return error <= 2 * lowPrecisionError + relAtol * std::max(1.0, scale); }
};

inline GradCheck checkGrad(const std::vector<double>& got, const std::vector<double>& lowPrecision,
                           const std::vector<double>& exact) {
  GradCheck c;
  c.error = maxError(got, exact);
  c.lowPrecisionError = maxError(lowPrecision, exact);
  for (double x : exact) c.scale = std::max(c.scale, std::fabs(x));
  return c;
}

}  // namespace flexjit::testing
