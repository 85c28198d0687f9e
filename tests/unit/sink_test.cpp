// Attention sinks (sink_mod) and max scores on the CPU: the float64 reference against a dense computation
// written out here (softmax over the kept keys plus one extra logit), fully masked rows (O = 0, LSE = the
// sink), GQA and odd lengths, the sink's gradient against central finite differences, and that sink
// variants compile for both forward families and the backward (NVRTC, no GPU).
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

constexpr int64_t kB = 2, kHq = 4, kHkv = 2, kLq = 37, kLkv = 29, kD = 8;

/// Per-head sink logits [Hq] as a float32 CPU tensor, and the sink_mod reading them.
struct Sinks {
  std::vector<float> values;
  CapturedTensor tensor;
  SinkMod mod;
  explicit Sinks(bool requiresGrad)
      : values{0.7f, -1.3f, 2.1f, -0.2f},
        tensor("sinks", TensorView(values.data(), DType::F32, Device::cpu(), {kHq}), requiresGrad),
        mod("per_head", [this](Expr, Expr h, Expr) { return tensor[h]; }) {}
};

/// Keys q - 3 <= kv <= q, and none for the first two rows (fully masked).
MaskMod bandMask() {
  return MaskMod("band", [](Expr, Expr, Expr q, Expr kv) { return (q >= 2) & (kv <= q) & (q - kv <= 3); });
}
bool keeps(int64_t q, int64_t kv) { return q >= 2 && kv <= q && q - kv <= 3; }

/// O, LSE and max score of one row, densely: softmax over the kept keys plus exp(sink) in the denominator.
struct DenseRow {
  std::vector<double> out;
  double lse, max;
};
DenseRow denseRow(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                  int64_t b, int64_t h, int64_t i, double sink) {
  const int64_t hk = h / (kHq / kHkv);
  const double scale = 1.0 / std::sqrt(double(kD));
  std::vector<double> s(kLkv, -INFINITY);
  double top = sink, max = -INFINITY;
  for (int64_t j = 0; j < kLkv; ++j) {
    if (!keeps(i, j)) continue;
    double dot = 0;
    for (int64_t d = 0; d < kD; ++d) dot += q[((b * kHq + h) * kLq + i) * kD + d] * k[((b * kHkv + hk) * kLkv + j) * kD + d];
    s[j] = scale * dot;
    top = std::max(top, s[j]);
    max = std::max(max, s[j]);
  }
  double denom = std::exp(sink - top);
  DenseRow r{std::vector<double>(kD, 0.0), 0.0, max};
  for (int64_t j = 0; j < kLkv; ++j) {
    if (s[j] == -INFINITY) continue;
    const double p = std::exp(s[j] - top);
    denom += p;
    for (int64_t d = 0; d < kD; ++d) r.out[d] += p * v[((b * kHkv + hk) * kLkv + j) * kD + d];
  }
  for (double& o : r.out) o /= denom;
  r.lse = top + std::log(denom);
  return r;
}

struct Inputs {
  Tensor q = randomTensor(DType::F32, {kB, kHq, kLq, kD}, Device::cpu(), 11);
  Tensor k = randomTensor(DType::F32, {kB, kHkv, kLkv, kD}, Device::cpu(), 12);
  Tensor v = randomTensor(DType::F32, {kB, kHkv, kLkv, kD}, Device::cpu(), 13);
  BlockMask mask = createBlockMask(bandMask(), kB, kHq, kLq, kLkv, Device::cpu(), 16, 16);
};

}  // namespace

TEST(SinkCpu, ForwardMatchesTheDenseSoftmaxWithAnExtraLogit) {
  Sinks sinks(false);
  Inputs in;
  AttentionOptions options;
  options.sink = sinks.mod;
  options.returnMaxScores = true;
  AttentionResult r = flex_attention(in.q.view(), in.k.view(), in.v.view(), ScoreMod::noop(), &in.mask, options);
  std::vector<double> q = asDoubles(in.q), k = asDoubles(in.k), v = asDoubles(in.v);
  std::vector<double> out = asDoubles(r.out), lse = asDoubles(r.lse), mx = asDoubles(r.maxScores);
  for (int64_t b = 0; b < kB; ++b)
    for (int64_t h = 0; h < kHq; ++h)
      for (int64_t i = 0; i < kLq; ++i) {
        const DenseRow want = denseRow(q, k, v, b, h, i, sinks.values[h]);
        const int64_t row = (b * kHq + h) * kLq + i;
        EXPECT_NEAR(lse[row], want.lse, 1e-5) << b << h << i;
        EXPECT_EQ(mx[row] == -INFINITY, want.max == -INFINITY) << i;
        if (want.max != -INFINITY) {
          EXPECT_NEAR(mx[row], want.max, 1e-5);
        }
        for (int64_t d = 0; d < kD; ++d) EXPECT_NEAR(out[row * kD + d], want.out[d], 1e-5) << b << h << i << d;
        if (i < 2) {  // every key masked: the sink alone in the denominator
          EXPECT_NEAR(lse[row], sinks.values[h], 1e-6);
          for (int64_t d = 0; d < kD; ++d) EXPECT_EQ(out[row * kD + d], 0.0);
        }
      }
}

TEST(SinkCpu, GradientsMatchFiniteDifferences) {
  // loss = sum(O * W): d loss / d sinks[h] and d loss / d q against central differences of the reference.
  Sinks sinks(/*requiresGrad=*/true);
  Inputs in;
  Tensor w = randomTensor(DType::F32, {kB, kHq, kLq, kD}, Device::cpu(), 14);
  BackwardOptions options;
  options.sink = sinks.mod;
  auto loss = [&] {
    AttentionResult r = flex_attention(in.q.view(), in.k.view(), in.v.view(), ScoreMod::noop(), &in.mask, options);
    std::vector<double> o = asDoubles(r.out), ww = asDoubles(w);
    double l = 0;
    for (size_t e = 0; e < o.size(); ++e) l += o[e] * ww[e];
    return l;
  };
  AttentionResult r = flex_attention(in.q.view(), in.k.view(), in.v.view(), ScoreMod::noop(), &in.mask, options);
  AttentionGradients g = flex_attention_backward(in.q.view(), in.k.view(), in.v.view(), r.out.view(), r.lse.view(),
                                                 w.view(), ScoreMod::noop(), &in.mask, options);
  const Tensor* dsinks = g.gradFor(sinks.tensor);
  ASSERT_NE(dsinks, nullptr);
  std::vector<double> ds = asDoubles(*dsinks);
  constexpr double kStep = 1e-3;
  for (int64_t h = 0; h < kHq; ++h) {
    const float saved = sinks.values[h];
    sinks.values[h] = saved + kStep;
    const double up = loss();
    sinks.values[h] = saved - kStep;
    const double down = loss();
    sinks.values[h] = saved;
    // O is stored in float32, so the differences carry ~1e-7 / kStep of rounding: a relative tolerance.
    const double fd = (up - down) / (2 * kStep);
    EXPECT_NEAR(ds[h], fd, 1e-3 * std::max(1.0, std::fabs(fd))) << "d loss / d sinks[" << h << "]";
  }
  std::vector<double> dq = asDoubles(g.dq);
  float* qd = static_cast<float*>(in.q.data());
  for (int64_t e : {int64_t(5 * kD + 1), int64_t((kHq * kLq + 20) * kD + 3), int64_t((3 * kLq + 36) * kD)}) {
    const float saved = qd[e];
    qd[e] = saved + kStep;
    const double up = loss();
    qd[e] = saved - kStep;
    const double down = loss();
    qd[e] = saved;
    const double fd = (up - down) / (2 * kStep);
    EXPECT_NEAR(dq[e], fd, 1e-3 * std::max(1.0, std::fabs(fd))) << "d loss / d q[" << e << "]";
  }
}

TEST(SinkCpu, TheSinkReadsOnlyRowParameters) {
  try {
    SinkMod bad("reads_kv", [](Expr, Expr, Expr) { return Expr::param(Param::KV) * 1.0f; });
    FAIL() << "a sink_mod reading kv_idx was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no parameter kv_idx"), std::string::npos) << e.what();
  }
}

TEST(SinkCompile, SinkVariantsCompileForBothFamiliesAndTheBackward) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  Sinks sinks(/*requiresGrad=*/true);
  ExtraHooks extra{sinks.mod};
  Variant fwd = generateVariant(ScoreMod::noop(), bandMask(), {false}, extra);
  EXPECT_TRUE(fwd.facts.hasSink);
  for (FwdKernelConfig c : {defaultFwdConfig(DType::BF16, 128, 128, 9, 0), defaultSm90FwdConfig(DType::BF16, 128, 128, 9, 0)}) {
    ForwardBuild build = forwardKernel(fwd, c, "sink_test");
    EXPECT_FALSE(build.kernel->cubin.empty()) << familyName(c.family);
  }
  Variant bwd = generateVariant(ScoreMod::noop(), bandMask(), {true}, extra);
  EXPECT_TRUE(bwd.facts.sinkHasTensorGrads);
  EXPECT_NE(bwd.prelude.find("sink_mod_grad("), std::string::npos);
  BwdKernelConfig c = defaultBwdConfig(DType::BF16, 128, 128, 9, 0);
  c.sinkGrads = true;
  const CompiledKernel& k = backwardKernel(&bwd, c, BwdKernelKind::DkDv, "sink_test");
  EXPECT_NE(k.ptx.find(kBwdSinkKernelName), std::string::npos);
}
