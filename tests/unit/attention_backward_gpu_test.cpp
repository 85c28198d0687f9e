// The generated backward kernels on a GPU (skipped without one) against the float64 reference backward:
// dQ, dK, dV and captured-tensor gradients for every seed variant (learned biases with gradients, a tensor
// read twice, document / sliding-window / prefix / NATTEN masks), odd sizes, GQA, Lq != Lkv, fully masked
// rows, strided inputs, fp16 and bf16, head dims 32-256, in the default (atomic dQ) and the deterministic
// mode, which must also repeat bit for bit. Pass rule: FlashAttention-3's, see BackwardTestUtil.h.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <random>
#include <tuple>

#include "BackwardTestUtil.h"
#include "codegen/Variant.h"
#include "examples/SeedVariants.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime_test_support.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

const Device kGpu = Device::cuda(0);
/// atol of the pass rule, relative to the largest exact gradient (a few bf16 ulps of it).
constexpr double kRelAtol = 4e-3;

struct Case {
  int64_t B, Hq, Hkv, Lq, Lkv, D;
  DType dtype;
};

std::string describe(const std::string& name, const Case& c, bool deterministic) {
  return fmt::format("{} B{} Hq{} Hkv{} Lq{} Lkv{} D{} {}{}", name, c.B, c.Hq, c.Hkv, c.Lq, c.Lkv, c.D,
                     dtypeName(c.dtype), deterministic ? " deterministic" : "");
}

/// The inputs of one case on the CPU and the GPU: Q, K, V, dO random; O and LSE from the float64
/// reference forward (O rounded to the dtype, as a forward kernel stores it).
struct Inputs {
  Tensor q, k, v, dout, out, lse;  // CPU
  Tensor gq, gk, gv, gdout, gout, glse;
};

Inputs makeInputs(const Case& c, const ScoreMod& cpuScore, const BlockMask& cpuMask, uint32_t seed) {
  Inputs in;
  in.q = randomTensor(c.dtype, {c.B, c.Hq, c.Lq, c.D}, Device::cpu(), seed);
  in.k = randomTensor(c.dtype, {c.B, c.Hkv, c.Lkv, c.D}, Device::cpu(), seed + 1);
  in.v = randomTensor(c.dtype, {c.B, c.Hkv, c.Lkv, c.D}, Device::cpu(), seed + 2);
  in.dout = randomTensor(c.dtype, {c.B, c.Hq, c.Lq, c.D}, Device::cpu(), seed + 3);
  AttentionResult f = flex_attention(in.q.view(), in.k.view(), in.v.view(), cpuScore, &cpuMask);
  in.out = f.out;
  in.lse = f.lse;
  in.gq = in.q.to(kGpu), in.gk = in.k.to(kGpu), in.gv = in.v.to(kGpu), in.gdout = in.dout.to(kGpu);
  in.gout = in.out.to(kGpu), in.glse = in.lse.to(kGpu);
  return in;
}

Tensor asF32(const Tensor& t) {
  Tensor f = Tensor::empty(DType::F32, t.shape(), Device::cpu());
  std::vector<double> x = asDoubles(t);
  for (size_t i = 0; i < x.size(); ++i) static_cast<float*>(f.data())[i] = static_cast<float>(x[i]);
  return f;
}

/// The exact gradients: the float64 reference on float32 copies of the inputs (float32 outputs).
GradValues exactGrads(const Inputs& in, const ScoreMod& cpuScore, const BlockMask& cpuMask) {
  AttentionGradients r = flex_attention_backward(asF32(in.q).view(), asF32(in.k).view(), asF32(in.v).view(),
                                                 asF32(in.out).view(), in.lse.view(), asF32(in.dout).view(), cpuScore,
                                                 &cpuMask);
  GradValues g{asDoubles(r.dq), asDoubles(r.dk), asDoubles(r.dv), {}};
  for (auto& [capture, grad] : r.captureGrads) g.captures.push_back(asDoubles(grad));
  return g;
}

GradValues gpuGrads(const Inputs& in, const ScoreMod& gpuScore, const BlockMask& gpuMask, bool deterministic) {
  BackwardOptions options;
  options.deterministic = deterministic;
  // Outputs start as NaN so that an element the kernels never write fails the comparison.
  Tensor dq = poisoned(in.gq.dtype(), in.gq.shape(), kGpu), dk = poisoned(in.gk.dtype(), in.gk.shape(), kGpu),
         dv = poisoned(in.gv.dtype(), in.gv.shape(), kGpu);
  std::vector<Tensor> caps;
  std::vector<TensorView> capViews;
  for (const auto& t : gradientCaptures(gpuScore)) {
    caps.push_back(Tensor::zeros(DType::F32, t->view->shape, kGpu));
    capViews.push_back(caps.back().view());
  }
  flex_attention_backward_into(in.gq.view(), in.gk.view(), in.gv.view(), in.gout.view(), in.glse.view(),
                               in.gdout.view(), gpuScore, &gpuMask, dq.view(), dk.view(), dv.view(), capViews, options);
  GradValues g{asDoubles(dq), asDoubles(dk), asDoubles(dv), {}};
  for (const Tensor& t : caps) g.captures.push_back(asDoubles(t));
  return g;
}

/// Checks every gradient of one run; returns a one-line summary.
std::string expectClose(const GradValues& got, const GradValues& lowPrecision, const GradValues& exact,
                        const std::string& what) {
  std::string summary;
  auto one = [&](const std::vector<double>& a, const std::vector<double>& lp, const std::vector<double>& ex,
                 const std::string& name) {
    GradCheck c = checkGrad(a, lp, ex);
    EXPECT_TRUE(c.pass(kRelAtol)) << what << ": " << name << " error " << c.error << " (low-precision reference "
                                  << c.lowPrecisionError << ", max |grad| " << c.scale << ")";
    summary += fmt::format(" {} {:.2g}/{:.2g}", name, c.error, c.lowPrecisionError);
  };
  one(got.dq, lowPrecision.dq, exact.dq, "dq");
  one(got.dk, lowPrecision.dk, exact.dk, "dk");
  one(got.dv, lowPrecision.dv, exact.dv, "dv");
  EXPECT_EQ(got.captures.size(), exact.captures.size()) << what;
  for (size_t w = 0; w < got.captures.size() && w < exact.captures.size(); ++w)
    one(got.captures[w], lowPrecision.captures[w], exact.captures[w], fmt::format("capture{}", w));
  return summary;
}

/// A float32 host tensor of random values in [-1, 1) for a test variant's capture.
std::shared_ptr<examples::HostTensor> randomCapture(std::vector<int64_t> shape, uint32_t seed) {
  auto t = std::make_shared<examples::HostTensor>();
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::mt19937 gen(seed);
  std::vector<float> values(n);
  for (float& x : values) x = std::uniform_real_distribution<float>(-1, 1)(gen);
  t->bytes.resize(values.size() * sizeof(float));
  std::memcpy(t->bytes.data(), values.data(), t->bytes.size());
  t->view = TensorView(t->bytes.data(), DType::F32, Device::cpu(), std::move(shape));
  return t;
}

/// Variants for the dK/dV kernel's gradient windows beyond the seeds (relative_bias: windows that fit;
/// gated_decay: a tensor read twice, overlapping windows), all causal:
///   grad_full_bias  s + full[q][kv] + w[h]: full's window spans 64 rows of Lkv, too large past Lkv ~ 30
///                   (global atomics), w's is one element (every lane of a warp adds to it)
///   grad_many_sites five reads of g: more sites than windows (the fifth adds to global memory), windows
///                   of different widths on one buffer
examples::SeedVariant makeVariant(const std::string& name, const examples::Shape& shape) {
  if (name != "grad_full_bias" && name != "grad_many_sites") return examples::makeSeedVariant(name, shape);
  examples::SeedVariant v;
  v.name = name;
  v.shape = shape;
  v.mask = MaskMod("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  if (name == "grad_full_bias") {
    v.data = {randomCapture({shape.Lq, shape.Lkv}, 31), randomCapture({shape.H}, 32)};
    CapturedTensor full("full_bias", v.data[0]->view, true), w("head_bias", v.data[1]->view, true);
    v.score = ScoreMod(name, [full, w](Expr s, Expr, Expr h, Expr q, Expr kv) { return s + full[q][kv] + w[h]; });
  } else {
    const int64_t L = std::max(shape.Lq, shape.Lkv);
    v.data = {randomCapture({L}, 33)};
    CapturedTensor g("g", v.data[0]->view, true);
    const int len = static_cast<int>(L);
    v.score = ScoreMod(name, [g, len](Expr s, Expr, Expr, Expr q, Expr kv) {
      return s + g[q] - g[kv] + 0.5f * g[(q + kv) % len] + 0.25f * g[abs(q - kv)] + 0.125f * g[floordiv(q, 2)];
    });
  }
  return v;
}

void runCase(const std::string& name, const Case& c, uint32_t seed, bool deterministic) {
  const examples::Shape shape{c.B, c.Hq, c.Lq, c.Lkv};
  examples::SeedVariant cpu = makeVariant(name, shape);
  examples::SeedVariant gpu = makeVariant(name, shape);  // same data, placed on the GPU
  gpu.placeCaptures(kGpu);
  BlockMask cpuMask = createBlockMask(cpu.mask, c.B, c.Hq, c.Lq, c.Lkv, Device::cpu());
  BlockMask gpuMask = createBlockMask(gpu.mask, c.B, c.Hq, c.Lq, c.Lkv, kGpu);
  Inputs in = makeInputs(c, cpu.score, cpuMask, seed);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
  GradValues exact = exactGrads(in, cpu.score, cpuMask);
  GradValues lp = lowPrecisionBackward(in.q, in.k, in.v, in.out, in.lse, in.dout, cpu.score, cpu.mask, scale);
  GradValues got = gpuGrads(in, gpu.score, gpuMask, deterministic);
  const std::string what = describe(name, c, deterministic);
  std::string summary = expectClose(got, lp, exact, what);
  std::printf("[ backward ] %-52s%s\n", what.c_str(), summary.c_str());
}

/// Rows q < 5 keep nothing: LSE = -inf, and every gradient of them must be exactly 0, never NaN; the
/// rest within the rule (B1 H2 L200 bf16, head dim D).
void checkFullyMaskedRows(int64_t D, bool deterministic, uint32_t seed, const std::string& label) {
  MaskMod late("late_rows", [](Expr, Expr, Expr q, Expr kv) { return (q >= 5) & (kv <= q); });
  const Case c{1, 2, 2, 200, 200, D, DType::BF16};
  BlockMask cpuMask = createBlockMask(late, 1, 2, 200, 200, Device::cpu());
  BlockMask gpuMask = createBlockMask(late, 1, 2, 200, 200, kGpu);
  Inputs in = makeInputs(c, ScoreMod::noop(), cpuMask, seed);
  GradValues exact = exactGrads(in, ScoreMod::noop(), cpuMask);
  GradValues lp = lowPrecisionBackward(in.q, in.k, in.v, in.out, in.lse, in.dout, ScoreMod::noop(), late,
                                       1.0f / std::sqrt(static_cast<float>(D)));
  GradValues got = gpuGrads(in, ScoreMod::noop(), gpuMask, deterministic);
  std::string summary = expectClose(got, lp, exact, describe(label, c, deterministic));
  std::printf("[ backward ] %-52s%s\n", describe(label, c, deterministic).c_str(), summary.c_str());
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 5 * D; ++i) EXPECT_EQ(got.dq[h * 200 * D + i], 0.0) << "masked row of head " << h;
}

/// Two deterministic backward runs of seed variant `name` on case c give the same bits.
void expectDeterministicRepeats(const std::string& name, const Case& c, uint32_t seed) {
  examples::SeedVariant gpu = examples::makeSeedVariant(name, {c.B, c.Hq, c.Lq, c.Lkv});
  examples::SeedVariant cpu = examples::makeSeedVariant(name, {c.B, c.Hq, c.Lq, c.Lkv});
  gpu.placeCaptures(kGpu);
  BlockMask cpuMask = createBlockMask(cpu.mask, c.B, c.Hq, c.Lq, c.Lkv, Device::cpu());
  BlockMask gpuMask = createBlockMask(gpu.mask, c.B, c.Hq, c.Lq, c.Lkv, kGpu);
  Inputs in = makeInputs(c, cpu.score, cpuMask, seed);
  GradValues a = gpuGrads(in, gpu.score, gpuMask, true);
  GradValues b = gpuGrads(in, gpu.score, gpuMask, true);
  EXPECT_TRUE(a.dq == b.dq && a.dk == b.dk && a.dv == b.dv) << name << ": two deterministic runs differ";
}

const Case kCases[] = {{1, 2, 2, 1, 1, 64, DType::BF16},     {2, 4, 2, 17, 17, 128, DType::F16},
                       {1, 4, 1, 127, 129, 64, DType::BF16}, {2, 2, 2, 129, 127, 128, DType::BF16},
                       {1, 2, 2, 1000, 300, 64, DType::F16}, {1, 2, 1, 300, 1000, 128, DType::BF16}};

}  // namespace

/// One seed variant per test, so that gtest sharding (GTEST_TOTAL_SHARDS) spreads the NVRTC builds and the
/// CPU references over processes.
class AttentionBackwardGpuSeeds : public ::testing::TestWithParam<std::string> {};

TEST_P(AttentionBackwardGpuSeeds, MatchesTheReference) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  uint32_t seed = 500;
  for (const Case& c : kCases) runCase(GetParam(), c, seed += 5, false);
}

TEST_P(AttentionBackwardGpuSeeds, DeterministicModeMatchesTheReference) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  uint32_t seed = 900;
  for (const Case& c : kCases) runCase(GetParam(), c, seed += 5, true);
}

INSTANTIATE_TEST_SUITE_P(Seeds, AttentionBackwardGpuSeeds, ::testing::ValuesIn(examples::seedVariantNames()),
                         [](const auto& info) { return info.param; });

/// Both backward families on the cases above plus a GQA and a multi-tile case, for every seed variant
/// (FLEXJIT_BWD_CONFIG=family=80 / family=90): the planner's choice is covered by the suite above, this one
/// keeps the other family tested on the same GPU. family=90 skips where it cannot run (a GPU
/// other than sm_90; gradient sites indexed by q and kv together, relative_bias's, which need the sm80
/// family's windows).
class AttentionBackwardGpuFamily : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

bool gpuIsSm90() {
  const DeviceInfo info = deviceInfo(0);
  return info.computeMajor == 9 && info.computeMinor == 0;
}

TEST_P(AttentionBackwardGpuFamily, MatchesTheReference) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const auto& [name, family] = GetParam();
  const bool sm90 = family != "sm80";
  if (sm90 && !gpuIsSm90()) GTEST_SKIP() << "the sm90 family needs an sm_90 GPU";
  if (sm90) {
    const examples::SeedVariant seed = examples::makeSeedVariant(name);
    const Variant v = generateVariant(seed.score, seed.mask, {true});
    if (v.gradSites > 0 && v.gradSitesMixQAndKv)
      GTEST_SKIP() << "gradients of captured tensors indexed by q and kv together run on the sm80 family's windows";
  }
  ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string(sm90 ? "family=90" : "family=80"));
  uint32_t seed = 2500;
  for (const Case& c : kCases) runCase(name, c, seed += 5, false);
  for (const Case& c : {Case{2, 8, 2, 700, 900, 128, DType::BF16}, Case{1, 4, 4, 1030, 1030, 64, DType::F16}})
    runCase(name, c, seed += 5, false);
}

INSTANTIATE_TEST_SUITE_P(Families, AttentionBackwardGpuFamily,
                         ::testing::Combine(::testing::ValuesIn(examples::seedVariantNames()),
                                            ::testing::Values(std::string("sm80"), std::string("sm90"))),
                         [](const auto& info) { return std::get<0>(info.param) + "_" + std::get<1>(info.param); });

TEST(AttentionBackwardGpuSm90Rows, FullyMaskedRowsGiveZeroGradients) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  if (!gpuIsSm90()) GTEST_SKIP() << "the sm90 family needs an sm_90 GPU";
  ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string("family=90"));
  uint32_t seed = 2700;
  for (int64_t D : {64, 128}) checkFullyMaskedRows(D, false, seed += 4, "late_rows sm90");
}

/// Deterministic mode on the sm90 family (FLEXJIT_BWD_CONFIG=family=90): its dK/dV kernel without dQ, then
/// the sm80 family's dQ kernel; against the reference, and two runs bit for bit.
TEST(AttentionBackwardGpuSm90Rows, DeterministicModeMatchesAndRepeats) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  if (!gpuIsSm90()) GTEST_SKIP() << "the sm90 family needs an sm_90 GPU";
  ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string("family=90"));
  uint32_t seed = 2900;
  const Case repeat{2, 8, 2, 700, 900, 128, DType::BF16};
  for (const char* name : {"causal", "alibi", "document"}) {
    for (const Case& c : {kCases[1], kCases[2], repeat}) runCase(name, c, seed += 5, true);
    expectDeterministicRepeats(name, repeat, 41);
  }
}

/// Captured-tensor gradients through the dK/dV kernel's shared-memory windows (see makeVariant; the seeds
/// relative_bias and gated_decay run above): windows too large for their capacity, more sites than
/// windows, a one-element window, odd sizes (tiles clipped at the sequence ends), GQA; then relative_bias
/// and gated_decay with small windows forced on (gradWindows=4,gradWindowFloats=64: relative_bias's
/// 191-element windows fall back near the diagonal; gated_decay has none by default, its sites index q or kv
/// alone) and with none (gradWindows=0: the global atomics alone).
TEST(AttentionBackwardGpu, CapturedGradientWindows) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const Case cases[] = {{1, 2, 2, 17, 17, 64, DType::BF16},     {2, 4, 1, 127, 129, 128, DType::BF16},
                        {1, 4, 2, 300, 1000, 64, DType::F16},   {1, 2, 2, 1000, 300, 128, DType::BF16}};
  uint32_t seed = 1700;
  for (const char* name : {"grad_full_bias", "grad_many_sites"})
    for (const Case& c : cases)
      for (bool deterministic : {false, true}) runCase(name, c, seed += 3, deterministic);
  for (const char* config : {"gradWindows=4,gradWindowFloats=64", "gradWindows=0"}) {
    setenv("FLEXJIT_BWD_CONFIG", (std::string("family=80,") + config).c_str(), 1);  // sm80 tunables
    SCOPED_TRACE(config);
    for (const char* name : {"relative_bias", "gated_decay", "grad_many_sites"})
      for (const Case& c : {cases[1], cases[3]}) runCase(name, c, seed += 3, false);
    unsetenv("FLEXJIT_BWD_CONFIG");
  }
}

/// The alternatives to the defaults (FLEXJIT_BWD_CONFIG overrides): 2-step unrolling (no spills),
/// FlashAttention-2's 128-row q tiles for D = 64, the one-stage ring of smaller GPUs, the 64-row kv tiles
/// that smaller mask blocks get, and dQ before dV / dK. One configuration per test, for sharding.
class AttentionBackwardGpuConfigs : public ::testing::TestWithParam<std::string> {};

TEST_P(AttentionBackwardGpuConfigs, MatchTheReference) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const Case cases[] = {{1, 4, 1, 127, 129, 64, DType::BF16}, {2, 2, 2, 129, 127, 128, DType::BF16},
                        {1, 2, 2, 300, 200, 64, DType::F16}};
  uint32_t seed = 1300;
  // These are the sm80 family's tunables (the sm90 family's tiles are fixed).
  setenv("FLEXJIT_BWD_CONFIG", ("family=80," + GetParam()).c_str(), 1);
  for (const char* name : {"causal", "relative_bias", "document"})
    for (const Case& c : cases)
      for (bool deterministic : {false, true}) {
        // 128-row q tiles only fit next to D <= 64 (shared memory and registers).
        if (GetParam() == "blockM=128" && c.D > 64) continue;
        SCOPED_TRACE(GetParam());
        runCase(name, c, seed += 3, deterministic);
      }
  unsetenv("FLEXJIT_BWD_CONFIG");
}

INSTANTIATE_TEST_SUITE_P(Overrides, AttentionBackwardGpuConfigs,
                         ::testing::Values("unroll=2", "blockM=128", "stages=1", "blockN=64", "dqFirst=1"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(AttentionBackwardGpu, FullyMaskedRowsAndOtherHeadDims) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  uint32_t seed = 70;
  for (int64_t D : {32, 48, 64, 80, 96, 128, 144, 256})  // 48, 80, 144: the 4-warp tiles
    for (bool deterministic : {false, true}) checkFullyMaskedRows(D, deterministic, seed += 4, "late_rows");
}

TEST(AttentionBackwardGpu, DeterministicModeRepeatsBitForBit) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  // GQA (4 query heads per kv head) and Lq != Lkv: the orders that atomics would scramble.
  for (const char* name : {"causal", "alibi", "document"})
    expectDeterministicRepeats(name, Case{2, 8, 2, 700, 900, 128, DType::BF16}, 31);
}

TEST(AttentionBackwardGpu, StridedInputsAndNoBlockMask) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  // Q and dO are [B, L, H, D] tensors viewed as [B, H, L, D] (a fused QKV projection's layout).
  const int64_t B = 2, H = 4, Lq = 77, Lkv = 90, D = 64;
  auto asBhld = [&](const Tensor& t) {
    TensorView x = t.view();
    x.shape = {B, H, Lq, D};
    x.strides = {Lq * H * D, D, H * D, 1};
    return x;
  };
  Tensor q = randomTensor(DType::BF16, {B, Lq, H, D}, Device::cpu(), 11),
         dout = randomTensor(DType::BF16, {B, Lq, H, D}, Device::cpu(), 14),
         k = randomTensor(DType::BF16, {B, H, Lkv, D}, Device::cpu(), 12),
         v = randomTensor(DType::BF16, {B, H, Lkv, D}, Device::cpu(), 13);
  AttentionResult fwd = flex_attention(asBhld(q), k.view(), v.view());
  AttentionGradients ref = flex_attention_backward(asBhld(q), k.view(), v.view(), fwd.out.view(), fwd.lse.view(),
                                                   asBhld(dout));
  Tensor gq = q.to(kGpu), gdout = dout.to(kGpu), gk = k.to(kGpu), gv = v.to(kGpu), gout = fwd.out.to(kGpu),
         glse = fwd.lse.to(kGpu);
  AttentionGradients gpu = flex_attention_backward(asBhld(gq), gk.view(), gv.view(), gout.view(), glse.view(),
                                                   asBhld(gdout));
  // Both round their outputs to bf16: a few ulps of the largest gradient.
  for (auto [a, b, name] : {std::tuple{&gpu.dq, &ref.dq, "dq"}, {&gpu.dk, &ref.dk, "dk"}, {&gpu.dv, &ref.dv, "dv"}}) {
    std::vector<double> x = asDoubles(*a), y = asDoubles(*b);
    double scale = 1;
    for (double e : y) scale = std::max(scale, std::fabs(e));
    EXPECT_LT(maxError(x, y), 2e-2 * scale) << name;
  }
}
