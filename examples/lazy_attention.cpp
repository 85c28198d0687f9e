// Lazy Attention (../shared/seeds/lazy_attention_000.txt) with flexjit's C++ DSL: the twin of
// examples/python/lazy_attention.py. Three hooks over three learned tensors,
//
//   score_mod  s + bias[h][clamp(q - kv, 0, kBias - 1)]        a learned relative bias
//   sink_mod   norm_bias[h]                                    a per-head softmax-denominator term
//   prob_mod   max(p - |offset[h] + 1| / num_visible, 0)       the adaptive offset and ReLU
//
// trained for a few SGD steps on random data (loss = mean squared distance of O from a random target), then
// checked against the seed's maths written out densely in float64: the output, and all six gradients (q, k,
// v, bias, norm_bias, offset) against central finite differences of the loss. Runs on the CPU (flexjit's
// float64 reference), so it needs no GPU; `ctest -R LazyAttentionExample` runs it.
//
//   build/examples/lazy_attention_example     (exit status 0: every check passed)
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "dsl/Mods.h"
#include "runtime/Attention.h"
#include "runtime/AttentionBackward.h"
#include "runtime/BlockMask.h"

using namespace flexjit;

namespace {

constexpr int64_t kB = 1, kH = 2, kL = 40, kD = 16, kBias = 16;

std::vector<float> randomValues(size_t n, float stddev, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

TensorView cpuView(std::vector<float>& data, std::vector<int64_t> shape) {
  return TensorView(data.data(), DType::F32, Device::cpu(), std::move(shape));
}

/// The model: q, k, v and the three learned tensors, with the hooks that read them.
struct LazyAttention {
  std::vector<float> q = randomValues(kB * kH * kL * kD, 1.0f, 1), k = randomValues(kB * kH * kL * kD, 1.0f, 2),
                     v = randomValues(kB * kH * kL * kD, 1.0f, 3), target = randomValues(kB * kH * kL * kD, 1.0f, 4);
  std::vector<float> bias = randomValues(kH * kBias, 0.1f, 5), normBias{0.2f, -0.4f}, offset{-0.7f, -1.3f};
  CapturedTensor biasT{"bias", cpuView(bias, {kH, kBias}), true};
  CapturedTensor normT{"norm_bias", cpuView(normBias, {kH}), true};
  CapturedTensor offsetT{"offset", cpuView(offset, {kH}), true};
  ScoreMod score{"lazy_bias", [this](Expr s, Expr, Expr h, Expr qi, Expr kv) { return s + biasT[h][clamp(qi - kv, 0, kBias - 1)]; }};
  BlockMask mask = createBlockMask(MaskMod("causal", [](Expr, Expr, Expr qi, Expr kv) { return qi >= kv; }), kB, kH, kL,
                                   kL, Device::cpu(), 16, 16);
  BackwardOptions options;

  LazyAttention() {
    options.sink = SinkMod("norm_bias", [this](Expr, Expr h, Expr) { return normT[h]; });
    options.prob = ProbMod("lazy_offset", [this](Expr p, Expr, Expr h, Expr, Expr, Expr n) {
      return maximum(p - abs(offsetT[h] + 1.0f) / toFloat(n), 0.0f);
    });
  }
  TensorView view(std::vector<float>& t) { return cpuView(t, {kB, kH, kL, kD}); }
  std::vector<float> forward() {
    AttentionResult r = flex_attention(view(q), view(k), view(v), score, &mask, options);
    return r.out.toVector<float>();
  }
  double loss() {
    std::vector<float> o = forward();
    double l = 0;
    for (size_t e = 0; e < o.size(); ++e) l += (o[e] - target[e]) * (o[e] - target[e]);
    return l / double(o.size());
  }
  /// d loss / d everything, by flexjit's backward.
  AttentionGradients gradients() {
    AttentionResult r = flex_attention(view(q), view(k), view(v), score, &mask, options);
    std::vector<float> o = r.out.toVector<float>(), dout(o.size());
    for (size_t e = 0; e < o.size(); ++e) dout[e] = float(2.0 * (o[e] - target[e]) / double(o.size()));
    return flex_attention_backward(view(q), view(k), view(v), r.out.view(), r.lse.view(), view(dout), score, &mask,
                                   options);
  }
};

/// The seed's maths densely in float64 (causal: row i sees keys 0..i, so num_visible = i + 1).
std::vector<double> denseLazy(const LazyAttention& m) {
  std::vector<double> out(kB * kH * kL * kD, 0.0);
  const double scale = 1.0 / std::sqrt(double(kD));
  for (int64_t h = 0; h < kH; ++h)
    for (int64_t i = 0; i < kL; ++i) {
      std::vector<double> s(i + 1);
      double top = m.normBias[h];
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < kD; ++d) dot += double(m.q[(h * kL + i) * kD + d]) * m.k[(h * kL + j) * kD + d];
        s[j] = scale * dot + m.bias[h * kBias + std::min<int64_t>(i - j, kBias - 1)];
        top = std::max(top, s[j]);
      }
      double denom = std::exp(m.normBias[h] - top);
      for (double x : s) denom += std::exp(x - top);
      const double cut = std::fabs(m.offset[h] + 1.0) / double(i + 1);
      for (int64_t j = 0; j <= i; ++j) {
        const double p = std::max(std::exp(s[j] - top) / denom - cut, 0.0);
        for (int64_t d = 0; d < kD; ++d) out[(h * kL + i) * kD + d] += p * m.v[(h * kL + j) * kD + d];
      }
    }
  return out;
}

}  // namespace

int main() {
  LazyAttention model;
  constexpr float kLearningRate = 20.0f;
  for (int step = 0; step < 5; ++step) {
    AttentionGradients g = model.gradients();
    std::printf("step %d: loss %.6f\n", step, model.loss());
    for (auto [data, t] : {std::pair{&model.bias, &model.biasT}, {&model.normBias, &model.normT}, {&model.offset, &model.offsetT}}) {
      std::vector<float> grad = g.gradFor(*t)->toVector<float>();
      for (size_t e = 0; e < data->size(); ++e) (*data)[e] -= kLearningRate * grad[e];
    }
  }
  bool ok = true;
  std::vector<float> got = model.forward();
  std::vector<double> want = denseLazy(model);
  double outError = 0;
  for (size_t e = 0; e < want.size(); ++e) outError = std::max(outError, std::fabs(got[e] - want[e]));
  std::printf("out: max |flexjit - dense float64| = %.2e\n", outError);
  ok &= outError < 1e-5;
  // Central differences of the loss for a few elements of each of the six tensors.
  AttentionGradients g = model.gradients();
  std::vector<float> dq = g.dq.toVector<float>(), dk = g.dk.toVector<float>(), dv = g.dv.toVector<float>();
  struct Check {
    const char* name;
    std::vector<float>* data;
    std::vector<float> analytic;
  };
  Check checks[] = {{"q", &model.q, dq},
                    {"k", &model.k, dk},
                    {"v", &model.v, dv},
                    {"bias", &model.bias, g.gradFor(model.biasT)->toVector<float>()},
                    {"norm_bias", &model.normBias, g.gradFor(model.normT)->toVector<float>()},
                    {"offset", &model.offset, g.gradFor(model.offsetT)->toVector<float>()}};
  constexpr double kStep = 1e-3;
  for (Check& c : checks) {
    double worst = 0;
    for (size_t e = 0; e < c.data->size(); e += std::max<size_t>(1, c.data->size() / 7)) {
      const float saved = (*c.data)[e];
      (*c.data)[e] = saved + float(kStep);
      const double up = model.loss();
      (*c.data)[e] = saved - float(kStep);
      const double down = model.loss();
      (*c.data)[e] = saved;
      const double fd = (up - down) / (2 * kStep);
      worst = std::max(worst, std::fabs(fd - c.analytic[e]) / std::max(1e-3, std::fabs(fd)));
    }
    std::printf("d loss / d %-9s: worst relative difference from finite differences %.2e\n", c.name, worst);
    ok &= worst < 5e-2;
  }
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
