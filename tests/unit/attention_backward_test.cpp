// The float64 reference backward against finite differences of the reference forward: dQ, dK, dV and
// captured-tensor gradients, for score_mods with tanh, learned biases (a tensor read twice), GQA and
// fully masked rows.
#include <gtest/gtest.h>

#include <random>

#include "AttentionTestUtil.h"
#include "examples/SeedVariants.h"
#include "runtime/AttentionBackward.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

/// loss = sum(dout * O) through the reference forward, in float64 (F32 tensors keep FD noise small).
double loss(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout, const ScoreMod& score, const BlockMask* m) {
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), score, m);
  std::vector<float> o = r.out.toVector<float>(), g = dout.toVector<float>();
  double s = 0;
  for (size_t i = 0; i < o.size(); ++i) s += double(o[i]) * g[i];
  return s;
}

/// Checks d(loss)/d(x[e]) for a sample of elements of a float32 buffer against central differences.
void checkGradient(float* x, const float* grad, int64_t n, const std::function<double()>& f, const std::string& what,
                   int samples = 24) {
  std::mt19937 gen(3);
  for (int t = 0; t < samples && n > 0; ++t) {
    int64_t e = gen() % n;
    float saved = x[e];
    const float h = 1e-2f;
    x[e] = saved + h;
    double up = f();
    x[e] = saved - h;
    double down = f();
    x[e] = saved;
    double fd = (up - down) / (2.0 * h);
    EXPECT_NEAR(grad[e], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << what << "[" << e << "]";
  }
}

void runVariant(const std::string& name, int64_t Hq, int64_t Hkv, int64_t L, uint32_t seed) {
  const int64_t B = 1, D = 8;
  examples::SeedVariant sv = examples::makeSeedVariant(name, examples::Shape{B, Hq, L, L});
  BlockMask m = createBlockMask(sv.mask, B, Hq, L, L, Device::cpu(), 16, 16);
  Tensor q = randomTensor(DType::F32, {B, Hq, L, D}, Device::cpu(), seed),
         k = randomTensor(DType::F32, {B, Hkv, L, D}, Device::cpu(), seed + 1),
         v = randomTensor(DType::F32, {B, Hkv, L, D}, Device::cpu(), seed + 2),
         dout = randomTensor(DType::F32, {B, Hq, L, D}, Device::cpu(), seed + 3);
  AttentionResult fwd = flex_attention(q.view(), k.view(), v.view(), sv.score, &m);
  AttentionGradients g = flex_attention_backward(q.view(), k.view(), v.view(), fwd.out.view(), fwd.lse.view(),
                                                 dout.view(), sv.score, &m);
  auto f = [&] { return loss(q, k, v, dout, sv.score, &m); };
  checkGradient(static_cast<float*>(q.data()), g.dq.toVector<float>().data(), q.numel(), f, name + " dq");
  checkGradient(static_cast<float*>(k.data()), g.dk.toVector<float>().data(), k.numel(), f, name + " dk");
  checkGradient(static_cast<float*>(v.data()), g.dv.toVector<float>().data(), v.numel(), f, name + " dv");
  for (auto& [capture, grad] : g.captureGrads) {
    std::vector<float> gv = grad.toVector<float>();
    // Only sample elements the mod can read (the rest have zero gradient, checked by the sum below).
    int64_t n = capture->view->numel();
    float* data = static_cast<float*>(capture->view->data);
    double total = 0;
    for (float x : gv) total += std::fabs(x);
    EXPECT_GT(total, 0.0) << name << ": captured tensor '" << capture->name << "' got no gradient";
    std::vector<int64_t> touched;
    for (int64_t e = 0; e < n; ++e)
      if (gv[e] != 0) touched.push_back(e);
    std::mt19937 gen(seed);
    for (int t = 0; t < 12 && !touched.empty(); ++t) {
      int64_t e = touched[gen() % touched.size()];
      float saved = data[e];
      data[e] = saved + 1e-2f;
      double up = f();
      data[e] = saved - 1e-2f;
      double down = f();
      data[e] = saved;
      double fd = (up - down) / 2e-2;
      EXPECT_NEAR(gv[e], fd, 2e-3 * std::max(1.0, std::fabs(fd))) << name << " d" << capture->name << "[" << e << "]";
    }
  }
}

}  // namespace

TEST(AttentionBackwardCpu, MatchesFiniteDifferences) {
  uint32_t seed = 10;
  for (const char* name : {"noop", "causal", "softcap", "alibi", "relative_bias", "gated_decay", "document", "natten"})
    runVariant(name, 2, 1, 19, seed += 7);
}

TEST(AttentionBackwardCpu, FullyMaskedRowsHaveZeroGradients) {
  MaskMod late("late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 4) & (kv <= q); });
  BlockMask m = createBlockMask(late, 1, 1, 9, 9, Device::cpu(), 16, 16);
  Tensor q = randomTensor(DType::BF16, {1, 1, 9, 8}, Device::cpu(), 1), k = randomTensor(DType::BF16, {1, 1, 9, 8}, Device::cpu(), 2),
         v = randomTensor(DType::BF16, {1, 1, 9, 8}, Device::cpu(), 3), dout = randomTensor(DType::BF16, {1, 1, 9, 8}, Device::cpu(), 4);
  AttentionResult fwd = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &m);
  AttentionGradients g = flex_attention_backward(q.view(), k.view(), v.view(), fwd.out.view(), fwd.lse.view(), dout.view(),
                                                 ScoreMod::noop(), &m);
  std::vector<double> dq = asDoubles(g.dq), dk = asDoubles(g.dk), dv = asDoubles(g.dv);
  for (int i = 0; i < 9 * 8; ++i) {
    EXPECT_FALSE(std::isnan(dq[i]) || std::isnan(dk[i]) || std::isnan(dv[i]));
    if (i < 4 * 8) {
      EXPECT_EQ(dq[i], 0.0) << "masked row " << i / 8;
    }
  }
}

TEST(AttentionBackwardCpu, BufferErrors) {
  CapturedTensor bias("bias", DType::F32, 1, true);
  std::vector<float> data(4, 0.5f);
  bias.bind(TensorView(data.data(), DType::F32, Device::cpu(), {4}));
  ScoreMod m("b", [&](Expr s, Expr, Expr h, Expr, Expr) { return s + bias[h]; });
  Tensor q = randomTensor(DType::F32, {1, 2, 5, 4}, Device::cpu(), 1);
  AttentionResult fwd = flex_attention(q.view(), q.view(), q.view(), m);
  Tensor dq = Tensor::empty(DType::F32, {1, 2, 5, 4}, Device::cpu());
  try {
    flex_attention_backward_into(q.view(), q.view(), q.view(), fwd.out.view(), fwd.lse.view(), q.view(), m, nullptr,
                                 dq.view(), dq.view(), dq.view(), {});
    FAIL() << "missing gradient buffer must be an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 captured tensors require a gradient but 0"), std::string::npos) << e.what();
  }
}
