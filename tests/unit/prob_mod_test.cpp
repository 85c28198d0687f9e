// prob_mod on the CPU, through Lazy Attention (../shared/seeds/lazy_attention_000.txt), the seed it exists for:
//   p_ij  = exp(s_ij + bias[h][clamp(i - j)]) / (sum_j exp(...) + exp(norm_bias[h]))   a score_mod and a sink
//   p'_ij = relu(p_ij - |offset[h] + 1| / num_visible_i)                              the prob_mod
//   O_i   = sum_j p'_ij v_j
// The float64 reference against this formula written out densely here, masked rows (O = 0), the state the
// forward saves for the backward (num_visible, the delta weights), all six gradients (q, k, v, bias,
// norm_bias, offset) against central finite differences of a scalar loss, and the GPU programs of both
// forward families and the backward compiled through NVRTC (no GPU needed).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "AttentionTestUtil.h"
#include "codegen/AttentionConfig.h"
#include "codegen/BackwardConfig.h"
#include "codegen/Variant.h"
#include "runtime/AttentionBackward.h"
#include "runtime/BackwardBuild.h"
#include "runtime/KernelBuild.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

constexpr int64_t kB = 2, kH = 3, kL = 23, kD = 8, kBias = 8;

/// The learned tensors of Lazy Attention (float32, CPU) and its three hooks over them.
struct Lazy {
  std::vector<float> bias, normBias, offset;
  CapturedTensor biasT, normBiasT, offsetT;
  ScoreMod score;
  SinkMod sink;
  ProbMod prob;
  Lazy()
      : bias(kH * kBias),
        normBias{0.3f, -0.8f, 1.2f},
        offset{-0.6f, 0.2f, -1.4f},
        biasT("bias", TensorView(bias.data(), DType::F32, Device::cpu(), {kH, kBias}), true),
        normBiasT("norm_bias", TensorView(normBias.data(), DType::F32, Device::cpu(), {kH}), true),
        offsetT("offset", TensorView(offset.data(), DType::F32, Device::cpu(), {kH}), true),
        score("lazy_bias", [this](Expr s, Expr, Expr h, Expr q, Expr kv) { return s + biasT[h][clamp(q - kv, 0, kBias - 1)]; }),
        sink("norm_bias", [this](Expr, Expr h, Expr) { return normBiasT[h]; }),
        prob("lazy_offset", [this](Expr p, Expr, Expr h, Expr, Expr, Expr visible) {
          return maximum(p - abs(offsetT[h] + 1.0f) / toFloat(visible), 0.0f);
        }) {
    for (int64_t e = 0; e < kH * kBias; ++e) bias[e] = 0.25f * std::sin(1.7f * e);
  }
  AttentionOptions options() const {
    AttentionOptions o;
    o.sink = sink;
    o.prob = prob;
    return o;
  }
};

/// Causal, and the first row keeps no key.
MaskMod causalLate() { return MaskMod("causal_late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 1) & (kv <= q); }); }

std::vector<double> denseLazy(const Lazy& z, const std::vector<double>& q, const std::vector<double>& k,
                              const std::vector<double>& v) {
  std::vector<double> out(kB * kH * kL * kD, 0.0);
  const double scale = 1.0 / std::sqrt(double(kD));
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t h = 0; h < kH; ++h)
      for (int64_t i = 1; i < kL; ++i) {  // row 0 keeps no key: O = 0
        std::vector<double> s(i + 1);
        double top = z.normBias[h];
        for (int64_t j = 0; j <= i; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < kD; ++d) dot += q[((b * kH + h) * kL + i) * kD + d] * k[((b * kH + h) * kL + j) * kD + d];
          s[j] = scale * dot + z.bias[h * kBias + std::min<int64_t>(i - j, kBias - 1)];
          top = std::max(top, s[j]);
        }
        double denom = std::exp(z.normBias[h] - top);
        for (double x : s) denom += std::exp(x - top);
        const double cut = std::fabs(z.offset[h] + 1.0) / double(i + 1);
        for (int64_t j = 0; j <= i; ++j) {
          const double p = std::max(std::exp(s[j] - top) / denom - cut, 0.0);
          for (int64_t d = 0; d < kD; ++d) out[((b * kH + h) * kL + i) * kD + d] += p * v[((b * kH + h) * kL + j) * kD + d];
        }
      }
  return out;
}

}  // namespace

TEST(ProbModCpu, LazyAttentionForwardMatchesTheFormula) {
  Lazy z;
  Tensor q = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 41);
  Tensor k = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 42);
  Tensor v = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 43);
  BlockMask mask = createBlockMask(causalLate(), kB, kH, kL, kL, Device::cpu(), 16, 16);
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), z.score, &mask, z.options());
  std::vector<double> want = denseLazy(z, asDoubles(q), asDoubles(k), asDoubles(v)), got = asDoubles(r.out);
  for (size_t e = 0; e < want.size(); ++e) ASSERT_NEAR(got[e], want[e], 1e-5) << "element " << e;
  // The offset really cuts: some probabilities are zeroed (the output is not the softmax's).
  AttentionOptions noProb = z.options();
  noProb.prob.reset();
  AttentionResult plain = flex_attention(q.view(), k.view(), v.view(), z.score, &mask, noProb);
  EXPECT_GT(maxError(asDoubles(plain.out), got), 1e-3);
}

TEST(ProbModCpu, LazyAttentionGradientsMatchFiniteDifferences) {
  Lazy z;
  Tensor q = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 51);
  Tensor k = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 52);
  Tensor v = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 53);
  Tensor w = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 54);
  BlockMask mask = createBlockMask(causalLate(), kB, kH, kL, kL, Device::cpu(), 16, 16);
  BackwardOptions options;
  static_cast<AttentionOptions&>(options) = z.options();
  auto loss = [&] {
    AttentionResult r = flex_attention(q.view(), k.view(), v.view(), z.score, &mask, options);
    std::vector<double> o = asDoubles(r.out), ww = asDoubles(w);
    double l = 0;
    for (size_t e = 0; e < o.size(); ++e) l += o[e] * ww[e];
    return l;
  };
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), z.score, &mask, options);
  AttentionGradients g = flex_attention_backward(q.view(), k.view(), v.view(), r.out.view(), r.lse.view(), w.view(),
                                                 z.score, &mask, options);
  // Central differences of the float64 reference (O stored in float32: a relative tolerance). The step is
  // small because the ReLU's kink is near: at 1e-3 some probabilities cross the cut and bias the offset's.
  auto check = [&](const char* what, float* data, int64_t e, double analytic) {
    constexpr double kStep = 2e-4;
    const float saved = data[e];
    data[e] = saved + kStep;
    const double up = loss();
    data[e] = saved - kStep;
    const double down = loss();
    data[e] = saved;
    const double fd = (up - down) / (2 * kStep);
    EXPECT_NEAR(analytic, fd, 2e-3 * std::max(1.0, std::fabs(fd))) << what << "[" << e << "]";
  };
  std::vector<double> dq = asDoubles(g.dq), dk = asDoubles(g.dk), dv = asDoubles(g.dv);
  for (int64_t e : {int64_t(3 * kD + 1), int64_t((kH * kL + 11) * kD + 5)}) {
    check("q", static_cast<float*>(q.data()), e, dq[e]);
    check("k", static_cast<float*>(k.data()), e, dk[e]);
    check("v", static_cast<float*>(v.data()), e, dv[e]);
  }
  std::vector<double> dbias = asDoubles(*g.gradFor(z.biasT)), dnorm = asDoubles(*g.gradFor(z.normBiasT)),
                      doffset = asDoubles(*g.gradFor(z.offsetT));
  for (int64_t e : {int64_t(0), int64_t(kBias + 2), int64_t(2 * kBias + 7)}) check("bias", z.bias.data(), e, dbias[e]);
  for (int64_t h = 0; h < kH; ++h) {
    check("norm_bias", z.normBias.data(), h, dnorm[h]);
    check("offset", z.offset.data(), h, doffset[h]);
  }
}

TEST(ProbModCpu, SavedStateIsTheVisibleCountsAndTheDeltaWeights) {
  // rowVisible_i = i + 1 keys (row 0: none); probDelta_i = sum_j p_ij g'(p_ij) v_j with g = relu(p - cut),
  // so g' = 1 where p > cut: the part of O's sum whose probabilities survive the cut, before subtracting it.
  Lazy z;
  Tensor q = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 61);
  Tensor k = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 62);
  Tensor v = randomTensor(DType::F32, {kB, kH, kL, kD}, Device::cpu(), 63);
  BlockMask mask = createBlockMask(causalLate(), kB, kH, kL, kL, Device::cpu(), 16, 16);
  AttentionOptions options = z.options();
  options.saveForBackward = true;
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), z.score, &mask, options);
  ASSERT_EQ(r.rowVisible.numel(), kB * kH * kL);
  std::vector<int32_t> visible = r.rowVisible.toVector<int32_t>();
  for (int64_t row = 0; row < kB * kH * kL; ++row) EXPECT_EQ(visible[row], row % kL == 0 ? 0 : row % kL + 1) << row;
  // Dense: the same formula as denseLazy, keeping only p > cut and not subtracting it.
  const std::vector<double> qd = asDoubles(q), kd = asDoubles(k), vd = asDoubles(v), got = asDoubles(r.probDelta);
  const double scale = 1.0 / std::sqrt(double(kD));
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t h = 0; h < kH; ++h)
      for (int64_t i = 0; i < kL; ++i) {
        std::vector<double> want(kD, 0.0);
        if (i > 0) {
          std::vector<double> s(i + 1);
          double top = z.normBias[h];
          for (int64_t j = 0; j <= i; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < kD; ++d) dot += qd[((b * kH + h) * kL + i) * kD + d] * kd[((b * kH + h) * kL + j) * kD + d];
            s[j] = scale * dot + z.bias[h * kBias + std::min<int64_t>(i - j, kBias - 1)];
            top = std::max(top, s[j]);
          }
          double denom = std::exp(z.normBias[h] - top);
          for (double x : s) denom += std::exp(x - top);
          const double cut = std::fabs(z.offset[h] + 1.0) / double(i + 1);
          for (int64_t j = 0; j <= i; ++j) {
            const double p = std::exp(s[j] - top) / denom;
            if (p > cut)
              for (int64_t d = 0; d < kD; ++d) want[d] += p * vd[((b * kH + h) * kL + j) * kD + d];
          }
        }
        for (int64_t d = 0; d < kD; ++d)
          ASSERT_NEAR(got[((b * kH + h) * kL + i) * kD + d], want[d], 1e-5) << "b" << b << " h" << h << " row " << i;
      }
  // Without saveForBackward nothing extra is allocated.
  AttentionResult plain = flex_attention(q.view(), k.view(), v.view(), z.score, &mask, z.options());
  EXPECT_EQ(plain.probDelta.data(), nullptr);
}

TEST(ProbModCpu, SavedStateIsRefusedWithoutAProbMod) {
  Tensor q = randomTensor(DType::F32, {1, 1, 4, kD}, Device::cpu(), 1);
  Tensor out = Tensor::empty(DType::F32, {1, 1, 4, kD}, Device::cpu()), lse = Tensor::empty(DType::F32, {1, 1, 4}, Device::cpu());
  Tensor visible = Tensor::empty(DType::I32, {1, 1, 4}, Device::cpu());
  const TensorView visibleView = visible.view();
  try {
    flex_attention_into(q.view(), q.view(), q.view(), ScoreMod::noop(), nullptr,
                        ForwardOutputs{out.view(), lse.view(), nullptr, nullptr, &visibleView}, AttentionOptions{});
    FAIL() << "row_visible without a prob_mod was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no prob_mod"), std::string::npos) << e.what();
  }
}

TEST(ProbModCompile, LazyAttentionCompilesForBothFamiliesAndTheBackward) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  Lazy z;
  const ExtraHooks extra = z.options().extraHooks();
  Variant fwd = generateVariant(z.score, causalLate(), {false}, extra);
  EXPECT_TRUE(fwd.facts.hasProb);
  EXPECT_TRUE(fwd.facts.probReadsVisible);
  EXPECT_NE(fwd.prelude.find("prob_mod_dp("), std::string::npos) << "the forward's delta pass needs g'(p)";
  for (FwdKernelConfig c : {defaultFwdConfig(DType::BF16, 128, 128, 9, 0), defaultSm90FwdConfig(DType::BF16, 128, 128, 9, 0)}) {
    c.probPasses = true;
    c.probDelta = true;
    ForwardBuild build = forwardKernel(fwd, c, "prob_test");
    ASSERT_FALSE(build.kernel->cubin.empty()) << familyName(c.family);
    for (const char* entry : {kFwdKernelName, kFwdApplyKernelName, kFwdDeltaKernelName})
      EXPECT_NE(build.kernel->ptx.find(std::string(".entry ") + entry), std::string::npos) << familyName(c.family) << " " << entry;
    if (c.family == KernelFamily::Sm90) {
      EXPECT_EQ(build.spillBytes, 0) << "sm90 prob passes spill";
    }
    // A forward that saves no backward state (inference) gets the program without the delta pass.
    c.probDelta = false;
    ForwardBuild inference = forwardKernel(fwd, c, "prob_test");
    EXPECT_NE(inference.kernel->ptx.find(std::string(".entry ") + kFwdApplyKernelName), std::string::npos);
    EXPECT_EQ(inference.kernel->ptx.find(std::string(".entry ") + kFwdDeltaKernelName), std::string::npos);
  }
  // A prob_mod that ignores num_visible makes the statistics pass count nothing.
  ProbMod square("square", [](Expr p, Expr, Expr, Expr, Expr, Expr) { return p * p; });
  Variant plain = generateVariant(ScoreMod::noop(), causalLate(), {false}, ExtraHooks{std::nullopt, square});
  EXPECT_FALSE(plain.facts.probReadsVisible);
  Variant bwd = generateVariant(z.score, causalLate(), {true}, extra);
  EXPECT_TRUE(bwd.facts.probHasTensorGrads);
  for (bool deterministic : {false, true}) {
    BwdKernelConfig c = defaultBwdConfig(DType::BF16, 128, 128, 9, 0, 128, 128, deterministic);
    c.sinkGrads = true;
    const CompiledKernel& k = backwardKernel(&bwd, c, BwdKernelKind::DkDv, "prob_test");
    EXPECT_NE(k.ptx.find(kBwdDkDvKernelName), std::string::npos);
    if (deterministic) {
      const CompiledKernel& dq = backwardKernel(&bwd, c, BwdKernelKind::Dq, "prob_test");
      EXPECT_NE(dq.ptx.find(kBwdDqKernelName), std::string::npos);
    }
  }
}
