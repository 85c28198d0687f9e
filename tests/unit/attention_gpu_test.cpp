// The generated forward kernels on a GPU against the float64 reference (skipped without a GPU): every
// seed variant, odd sizes, GQA, Lq != Lkv, fully masked rows, NaN rows, strided inputs, fp16 and bf16, D 64/128.
//
// The forward tests run once per kernel family: "planned" takes the planner's choice (the sm90 family on a
// Hopper GPU where it applies, sm80 elsewhere) and "sm80" forces the mma.sync family through
// FLEXJIT_FWD_CONFIG=family=80, so both families pass the same cases on a Hopper GPU.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "AttentionTestUtil.h"
#include "codegen/Variant.h"
#include "dsl/Interpreter.h"
#include "examples/SeedVariants.h"
#include "runtime/Captures.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/KernelCache.h"
#include "runtime/KernelBuild.h"
#include "runtime/Module.h"
#include "runtime/AttentionBackward.h"
#include "runtime_test_support.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

const Device kGpu = Device::cuda(0);

struct Case {
  int64_t B, Hq, Hkv, Lq, Lkv, D;
  DType dtype;
};

void runCase(const std::string& name, const Case& c, uint32_t seed) {
  // Two instances of the variant: captures on the CPU for the reference, on the GPU for the kernels.
  examples::SeedVariant cpu = examples::makeSeedVariant(name, examples::Shape{c.B, c.Hq, c.Lq, c.Lkv});
  examples::SeedVariant v = examples::makeSeedVariant(name, examples::Shape{c.B, c.Hq, c.Lq, c.Lkv});
  BlockMask cpuMask = createBlockMask(cpu.mask, c.B, c.Hq, c.Lq, c.Lkv, Device::cpu());
  v.placeCaptures(kGpu);
  BlockMask gpuMask = createBlockMask(v.mask, c.B, c.Hq, c.Lq, c.Lkv, kGpu);
  Tensor q = randomTensor(c.dtype, {c.B, c.Hq, c.Lq, c.D}, kGpu, seed);
  Tensor k = randomTensor(c.dtype, {c.B, c.Hkv, c.Lkv, c.D}, kGpu, seed + 1);
  Tensor vv = randomTensor(c.dtype, {c.B, c.Hkv, c.Lkv, c.D}, kGpu, seed + 2);
  // The reference reads CPU copies of the captures; the kernel the GPU ones.
  ForwardCheck r = checkForward(q, k, vv, v.score, &gpuMask, &cpuMask, {}, &cpu.score);
  EXPECT_TRUE(r.pass()) << fmt::format("{} B{} Hq{} Hkv{} Lq{} Lkv{} D{} {}: out error {:.3g} (low-precision reference "
                                       "{:.3g}), lse error {:.3g}", name, c.B, c.Hq, c.Hkv, c.Lq, c.Lkv, c.D,
                                       dtypeName(c.dtype), r.outError, r.outLowPrecisionError, r.lseError);
}

/// One forward kernel family for the length of a test (see the file comment).
class AttentionGpuFamily : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
    if (GetParam() == "sm80") setenv("FLEXJIT_FWD_CONFIG", "family=80", 1);
  }
  void TearDown() override { unsetenv("FLEXJIT_FWD_CONFIG"); }
};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Families, AttentionGpuFamily, ::testing::Values("planned", "sm80"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(AttentionGpuFamily, EverySeedVariantMatchesTheReference) {
  const Case cases[] = {{1, 2, 2, 1, 1, 64, DType::BF16},      {2, 4, 2, 17, 17, 128, DType::F16},
                        {1, 4, 1, 127, 129, 64, DType::BF16},  {2, 2, 2, 129, 127, 128, DType::BF16},
                        {1, 2, 2, 1000, 300, 64, DType::F16},  {1, 2, 1, 300, 1000, 128, DType::BF16}};
  uint32_t seed = 100;
  for (const std::string& name : examples::seedVariantNames())
    for (const Case& c : cases) runCase(name, c, seed += 3);
}

TEST_P(AttentionGpuFamily, FullyMaskedRowsAndOtherHeadDims) {
  MaskMod late("late_rows", [](Expr, Expr, Expr q, Expr kv) { return (q >= 5) & (kv <= q); });
  for (int64_t D : {32, 64, 96, 128, 256}) {
    BlockMask cpu = createBlockMask(late, 1, 2, 200, 200, Device::cpu());
    BlockMask gpu = createBlockMask(late, 1, 2, 200, 200, kGpu);
    Tensor q = randomTensor(DType::BF16, {1, 2, 200, D}, kGpu, 7), k = randomTensor(DType::BF16, {1, 2, 200, D}, kGpu, 8),
           v = randomTensor(DType::BF16, {1, 2, 200, D}, kGpu, 9);
    ForwardCheck r = checkForward(q, k, v, ScoreMod::noop(), &gpu, &cpu);
    EXPECT_TRUE(r.pass()) << "D=" << D << " out " << r.outError << " lp " << r.outLowPrecisionError << " lse " << r.lseError;
  }
}

TEST_P(AttentionGpuFamily, StridedInputsAndNoBlockMask) {
  // Q is a [B, L, H, D] tensor viewed as [B, H, L, D] (the layout of a fused QKV projection).
  Tensor qblh = randomTensor(DType::BF16, {2, 77, 4, 64}, kGpu, 11);
  TensorView q = qblh.view();
  q.shape = {2, 4, 77, 64};
  q.strides = {77 * 4 * 64, 64, 4 * 64, 1};
  Tensor k = randomTensor(DType::BF16, {2, 4, 90, 64}, kGpu, 12), v = randomTensor(DType::BF16, {2, 4, 90, 64}, kGpu, 13);
  AttentionResult gpu = flex_attention(q, k.view(), v.view());
  Tensor qc = qblh.to(Device::cpu());
  TensorView qcv = qc.view();
  qcv.shape = q.shape;
  qcv.strides = q.strides;
  Tensor kc = k.to(Device::cpu()), vc = v.to(Device::cpu());
  AttentionResult ref = flex_attention(qcv, kc.view(), vc.view());
  EXPECT_LT(maxError(asDoubles(gpu.out), asDoubles(ref.out)), 2e-2);
  EXPECT_LT(maxError(asDoubles(gpu.lse), asDoubles(ref.lse)), 2e-3 * 8);
}

TEST_P(AttentionGpuFamily, NaNRowsComeOutNaNAndOtherRowsAreUntouched) {
  // NaN in one query row, and a score_mod that returns NaN on another: those rows (and only those) must be
  // NaN in O and LSE, as in torch; a fully masked row stays O = 0, LSE = -inf.
  ScoreMod nanOnRow7("nan_row7", [](Expr s, Expr, Expr, Expr q, Expr) { return where(q == 7, s * Expr(NAN), s); });
  MaskMod causalLate("causal_late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 2) & (kv <= q); });
  for (int64_t D : {64, 128}) {
    Tensor qc = randomTensor(DType::BF16, {1, 2, 150, D}, Device::cpu(), 21);
    writeFloat(qc.data(), DType::BF16, (1 * 150 + 40) * D + 3, std::numeric_limits<double>::quiet_NaN());  // h1 q40
    Tensor q = qc.to(kGpu), k = randomTensor(DType::BF16, {1, 2, 150, D}, kGpu, 22),
           v = randomTensor(DType::BF16, {1, 2, 150, D}, kGpu, 23);
    BlockMask mask = createBlockMask(causalLate, 1, 2, 150, 150, kGpu);
    AttentionResult r = flex_attention(q.view(), k.view(), v.view(), nanOnRow7, &mask);
    std::vector<double> out = asDoubles(r.out), lse = asDoubles(r.lse);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t i = 0; i < 150; ++i) {
        const bool nanRow = i == 7 || (h == 1 && i == 40), masked = i < 2;
        const double l = lse[h * 150 + i];
        EXPECT_EQ(std::isnan(l), nanRow) << "D" << D << " h" << h << " row " << i << " lse " << l;
        if (masked) {
          EXPECT_EQ(l, -INFINITY) << "fully masked row " << i;
        }
        for (int64_t d = 0; d < D; ++d) {
          const double o = out[(h * 150 + i) * D + d];
          EXPECT_EQ(std::isnan(o), nanRow) << "D" << D << " h" << h << " row " << i << " col " << d;
          if (masked) {
            EXPECT_EQ(o, 0.0);
          }
        }
      }
  }
}

TEST_P(AttentionGpuFamily, SinksAndMaxScoresMatchTheReference) {
  // Per-head sink logits and a banded causal mask whose first rows keep no key (O = 0, LSE = the sink);
  // GQA and lengths that are not multiples of the tiles; forward and the sink's gradient.
  MaskMod band("band_late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 3) & (kv <= q) & (q - kv <= 200); });
  for (int64_t D : {64, 128}) {
    const int64_t B = 2, Hq = 4, Hkv = 2, Lq = 300, Lkv = 257;
    Tensor sinksCpu = randomTensor(DType::F32, {Hq}, Device::cpu(), 31, 2.0f), sinksGpu = sinksCpu.to(kGpu);
    CapturedTensor sinks("sinks", sinksGpu.view(), /*requiresGrad=*/true);
    SinkMod sink("per_head", [&](Expr, Expr h, Expr) { return sinks[h]; });
    Tensor q = randomTensor(DType::BF16, {B, Hq, Lq, D}, kGpu, 32), k = randomTensor(DType::BF16, {B, Hkv, Lkv, D}, kGpu, 33),
           v = randomTensor(DType::BF16, {B, Hkv, Lkv, D}, kGpu, 34), dout = randomTensor(DType::BF16, {B, Hq, Lq, D}, kGpu, 35);
    BlockMask gpuMask = createBlockMask(band, B, Hq, Lq, Lkv, kGpu), cpuMask = createBlockMask(band, B, Hq, Lq, Lkv, Device::cpu());
    BackwardOptions options;
    options.sink = sink;
    options.returnMaxScores = true;
    AttentionResult gpu = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &gpuMask, options);
    AttentionGradients gg = flex_attention_backward(q.view(), k.view(), v.view(), gpu.out.view(), gpu.lse.view(),
                                                    dout.view(), ScoreMod::noop(), &gpuMask, options);
    // The reference on CPU copies, its sink reading the CPU tensor.
    Tensor qc = q.to(Device::cpu()), kc = k.to(Device::cpu()), vc = v.to(Device::cpu()), dc = dout.to(Device::cpu());
    sinks.bind(sinksCpu.view());
    AttentionResult ref = flex_attention(qc.view(), kc.view(), vc.view(), ScoreMod::noop(), &cpuMask, options);
    AttentionGradients rg = flex_attention_backward(qc.view(), kc.view(), vc.view(), ref.out.view(), ref.lse.view(),
                                                    dc.view(), ScoreMod::noop(), &cpuMask, options);
    EXPECT_LT(maxError(asDoubles(gpu.out), asDoubles(ref.out)), 2e-2) << "D" << D;
    EXPECT_LT(maxError(asDoubles(gpu.lse), asDoubles(ref.lse)), 2e-3) << "D" << D;
    EXPECT_LT(maxError(asDoubles(gpu.maxScores), asDoubles(ref.maxScores)), 2e-3) << "D" << D;
    std::vector<double> lse = asDoubles(gpu.lse), sinkValues = asDoubles(sinksCpu);
    for (int64_t h = 0; h < Hq; ++h) EXPECT_NEAR(lse[h * Lq], sinkValues[h], 1e-3) << "row 0 keeps no key: LSE = sink";
    std::vector<double> dsGpu = asDoubles(*gg.gradFor(sinks)), dsRef = asDoubles(*rg.gradFor(sinks));
    for (int64_t h = 0; h < Hq; ++h)
      EXPECT_NEAR(dsGpu[h], dsRef[h], 2e-2 * std::max(1.0, std::fabs(dsRef[h]))) << "d sinks[" << h << "] D" << D;
    EXPECT_LT(maxError(asDoubles(gg.dq), asDoubles(rg.dq)), 5e-2) << "D" << D;
  }
}

/// ../shared/seeds/lazy_attention_000.txt: a learned relative bias (score_mod; left out with
/// relativeBias = false, so that no gradient site mixes q and kv), a per-head sink (norm_bias) and the
/// post-softmax offset with ReLU (prob_mod reading num_visible); causal with the first rows empty, GQA, odd
/// lengths. Forward (O, LSE, the saved state), then the backward's gradients, with the saved state and
/// without it (the backward then recomputes it).
void checkLazyAttention(const std::string& what, bool relativeBias) {
  constexpr int64_t kBias = 64;
  MaskMod causalLate("causal_late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 2) & (kv <= q); });
  for (int64_t D : {64, 128}) {
    const int64_t B = 2, Hq = 4, Hkv = 2, L = 333;
    Tensor biasCpu = randomTensor(DType::F32, {Hq, kBias}, Device::cpu(), 41, 0.5f);
    Tensor normCpu = randomTensor(DType::F32, {Hq}, Device::cpu(), 42, 1.0f);
    Tensor offsetCpu = randomTensor(DType::F32, {Hq}, Device::cpu(), 43, 1.0f);
    Tensor biasGpu = biasCpu.to(kGpu), normGpu = normCpu.to(kGpu), offsetGpu = offsetCpu.to(kGpu);
    CapturedTensor bias("bias", biasGpu.view(), true), norm("norm_bias", normGpu.view(), true),
        offset("offset", offsetGpu.view(), true);
    ScoreMod score = relativeBias ? ScoreMod("lazy_bias", [&](Expr s, Expr, Expr h, Expr q, Expr kv) {
      return s + bias[h][clamp(q - kv, 0, kBias - 1)];
    })
                                  : ScoreMod::noop();
    BackwardOptions options;
    options.sink = SinkMod("norm_bias", [&](Expr, Expr h, Expr) { return norm[h]; });
    options.prob = ProbMod("lazy_offset", [&](Expr p, Expr, Expr h, Expr, Expr, Expr n) {
      return maximum(p - abs(offset[h] + 1.0f) / toFloat(n), 0.0f);
    });
    options.saveForBackward = true;
    Tensor q = randomTensor(DType::BF16, {B, Hq, L, D}, kGpu, 44), k = randomTensor(DType::BF16, {B, Hkv, L, D}, kGpu, 45),
           v = randomTensor(DType::BF16, {B, Hkv, L, D}, kGpu, 46), dout = randomTensor(DType::BF16, {B, Hq, L, D}, kGpu, 47);
    BlockMask gpuMask = createBlockMask(causalLate, B, Hq, L, L, kGpu), cpuMask = createBlockMask(causalLate, B, Hq, L, L, Device::cpu());
    AttentionResult gpu = flex_attention(q.view(), k.view(), v.view(), score, &gpuMask, options);
    BackwardOptions withState = options;
    const TensorView delta = gpu.probDelta.view(), visible = gpu.rowVisible.view();
    withState.probDelta = &delta;
    withState.rowVisible = &visible;
    AttentionGradients gg = flex_attention_backward(q.view(), k.view(), v.view(), gpu.out.view(), gpu.lse.view(),
                                                    dout.view(), score, &gpuMask, withState);
    AttentionGradients recomputed = flex_attention_backward(q.view(), k.view(), v.view(), gpu.out.view(),
                                                            gpu.lse.view(), dout.view(), score, &gpuMask, options);
    Tensor qc = q.to(Device::cpu()), kc = k.to(Device::cpu()), vc = v.to(Device::cpu()), dc = dout.to(Device::cpu());
    bias.bind(biasCpu.view()), norm.bind(normCpu.view()), offset.bind(offsetCpu.view());
    AttentionResult ref = flex_attention(qc.view(), kc.view(), vc.view(), score, &cpuMask, options);
    AttentionGradients rg = flex_attention_backward(qc.view(), kc.view(), vc.view(), ref.out.view(), ref.lse.view(),
                                                    dc.view(), score, &cpuMask, options);
    bias.bind(biasGpu.view()), norm.bind(normGpu.view()), offset.bind(offsetGpu.view());
    const std::string at = fmt::format("{} D{}", what, D);
    EXPECT_LT(maxError(asDoubles(gpu.out), asDoubles(ref.out)), 2e-2) << at;
    EXPECT_LT(maxError(asDoubles(gpu.lse), asDoubles(ref.lse)), 2e-3) << at;
    EXPECT_LT(maxError(asDoubles(gpu.probDelta), asDoubles(ref.probDelta)), 2e-2) << at;
    EXPECT_EQ(gpu.rowVisible.toVector<int32_t>(), ref.rowVisible.toVector<int32_t>()) << at;
    // Relative to the largest reference gradient: bf16 inputs, float atomics over every row.
    auto relative = [](const Tensor& got, const Tensor& want) {
      std::vector<double> w = asDoubles(want);
      double top = 0;
      for (double x : w) top = std::max(top, std::fabs(x));
      return maxError(asDoubles(got), w) / std::max(top, 1e-6);
    };
    for (const AttentionGradients* g : {&gg, &recomputed}) {
      const char* which = g == &gg ? "saved state" : "recomputed state";
      EXPECT_LT(relative(g->dq, rg.dq), 2e-2) << at << " dq, " << which;
      EXPECT_LT(relative(g->dk, rg.dk), 2e-2) << at << " dk, " << which;
      EXPECT_LT(relative(g->dv, rg.dv), 2e-2) << at << " dv, " << which;
      for (const CapturedTensor* t : {&bias, &norm, &offset}) {
        if (t == &bias && !relativeBias) continue;
        EXPECT_LT(relative(*g->gradFor(*t), *rg.gradFor(*t)), 2e-2) << at << " d " << t->name() << ", " << which;
      }
    }
  }
}

TEST_P(AttentionGpuFamily, LazyAttentionMatchesTheReference) { checkLazyAttention(GetParam(), true); }

/// The same without the relative bias, whose q - kv gradient site keeps the backward on the sm80 family's
/// windows: the sm90 backward (FLEXJIT_BWD_CONFIG=family=90) with a prob_mod's and a sink's gradients.
TEST(AttentionBackwardGpuSm90Rows, LazyAttentionProbModAndSinkGradients) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const DeviceInfo info = deviceInfo(0);
  if (info.computeMajor != 9 || info.computeMinor != 0) GTEST_SKIP() << "the sm90 family needs an sm_90 GPU";
  ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string("family=90"));
  checkLazyAttention("sm90 backward", false);
}

TEST(AttentionBackwardGpu, TheLseGradientMatchesTheReference) {
  // A loss that reads the LSE (z-loss, sink workarounds): its gradient enters Delta as Delta - dlse. Rows 0-2
  // keep no key (their dlse must change nothing), GQA, odd lengths.
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  MaskMod late("causal_late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 3) & (kv <= q); });
  const int64_t B = 2, Hq = 4, Hkv = 2, L = 301, D = 64;
  Tensor q = randomTensor(DType::BF16, {B, Hq, L, D}, kGpu, 61), k = randomTensor(DType::BF16, {B, Hkv, L, D}, kGpu, 62),
         v = randomTensor(DType::BF16, {B, Hkv, L, D}, kGpu, 63), dout = randomTensor(DType::BF16, {B, Hq, L, D}, kGpu, 64);
  Tensor dlse = randomTensor(DType::F32, {B, Hq, L}, kGpu, 65);
  BlockMask gpuMask = createBlockMask(late, B, Hq, L, L, kGpu), cpuMask = createBlockMask(late, B, Hq, L, L, Device::cpu());
  BackwardOptions options;
  const TensorView dlseView = dlse.view();
  options.dlse = &dlseView;
  AttentionResult gpu = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &gpuMask);
  AttentionGradients gg = flex_attention_backward(q.view(), k.view(), v.view(), gpu.out.view(), gpu.lse.view(),
                                                  dout.view(), ScoreMod::noop(), &gpuMask, options);
  Tensor qc = q.to(Device::cpu()), kc = k.to(Device::cpu()), vc = v.to(Device::cpu()), dc = dout.to(Device::cpu()),
         lc = dlse.to(Device::cpu());
  const TensorView dlseCpu = lc.view();
  options.dlse = &dlseCpu;
  AttentionResult ref = flex_attention(qc.view(), kc.view(), vc.view(), ScoreMod::noop(), &cpuMask);
  AttentionGradients rg = flex_attention_backward(qc.view(), kc.view(), vc.view(), ref.out.view(), ref.lse.view(),
                                                  dc.view(), ScoreMod::noop(), &cpuMask, options);
  EXPECT_LT(maxError(asDoubles(gg.dq), asDoubles(rg.dq)), 5e-2);
  EXPECT_LT(maxError(asDoubles(gg.dk), asDoubles(rg.dk)), 5e-2);
  EXPECT_LT(maxError(asDoubles(gg.dv), asDoubles(rg.dv)), 5e-2);
}

TEST_P(AttentionGpuFamily, ChangingACapturedScalarDoesNotRecompile) {
  CapturedScalar cap("cap", 20.0f);
  ScoreMod softcap("softcap_rt", [&](Expr s, Expr, Expr, Expr, Expr) { return cap * tanh(s / cap); });
  Tensor q = randomTensor(DType::BF16, {1, 1, 64, 64}, kGpu, 1, 4.0f), k = randomTensor(DType::BF16, {1, 1, 64, 64}, kGpu, 2, 4.0f),
         v = randomTensor(DType::BF16, {1, 1, 64, 64}, kGpu, 3);
  AttentionResult a = flex_attention(q.view(), k.view(), v.view(), softcap);
  auto before = KernelCache::global().stats();
  cap.set(2.0f);
  AttentionResult b = flex_attention(q.view(), k.view(), v.view(), softcap);
  auto after = KernelCache::global().stats();
  EXPECT_EQ(before.compilations, after.compilations) << "a scalar change must not recompile";
  EXPECT_GT(maxError(asDoubles(a.out), asDoubles(b.out)), 1e-3) << "the new scalar value must take effect";
}

TEST(AttentionGpu, HooksMatchTheInterpreter) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  ScopedContext ctx(0);
  const std::string arch = cachedDeviceInfo(0).arch;
  for (const std::string& name : examples::seedVariantNames()) {
    examples::SeedVariant sv = examples::makeSeedVariant(name, examples::Shape{2, 4, 300, 300});
    Program ps(sv.score), pm(sv.mask);
    ps.bindCaptures();
    pm.bindCaptures();
    Variant variant = generateVariant(sv.score, sv.mask);
    sv.placeCaptures(kGpu);
    const CompiledKernel& kernel = KernelCache::global().getOrCompile(
        KernelRequest{hookTestSource(variant), "hook_test_" + name, CompileOptions{arch, {}, false}});
    constexpr int n = 512;
    std::mt19937 gen(5);
    std::vector<int> pos(4 * n);
    std::vector<float> scores(n);
    std::vector<long long> boxes(8 * n);
    for (int i = 0; i < n; ++i) {
      pos[4 * i] = gen() % 2, pos[4 * i + 1] = gen() % 4, pos[4 * i + 2] = gen() % 300, pos[4 * i + 3] = gen() % 300;
      scores[i] = std::uniform_real_distribution<float>(-8, 8)(gen);
      long long lo = gen() % 250, lo2 = gen() % 250;
      long long box[8] = {pos[4 * i], pos[4 * i], pos[4 * i + 1], pos[4 * i + 1], lo, lo + 40, lo2, lo2 + 40};
      std::copy(box, box + 8, boxes.begin() + 8 * i);
    }
    Tensor dPos = Tensor::fromVector(pos, DType::I32, {4 * n}, kGpu), dScores = Tensor::fromVector(scores, DType::F32, {n}, kGpu);
    Tensor dBoxes = Tensor::fromVector(boxes, DType::I64, {8 * n}, kGpu);
    Tensor sOut = Tensor::zeros(DType::F32, {n}, kGpu), mOut = Tensor::zeros(DType::I32, {n}, kGpu),
           gOut = Tensor::zeros(DType::F32, {n}, kGpu), iOut = Tensor::zeros(DType::I32, {2 * n}, kGpu);
    Tensor gradBuf = Tensor::zeros(DType::F32, {1 << 16}, kGpu);
    struct {
      int n;
      const int* positions;
      const float* scores;
      float *scoreOut;
      int* maskOut;
      float* gradOut;
      const long long* boxes;
      int* intervalOut;
      fj::CaptureArgs cap;
      fj::GradArgs grads;
    } p{n, (const int*)dPos.data(), (const float*)dScores.data(), (float*)sOut.data(), (int*)mOut.data(),
        (float*)gOut.data(), (const long long*)dBoxes.data(), (int*)iOut.data(), {}, {}};
    p.cap = packCaptures(captureLayout(sv.score, sv.mask), kGpu, "hook test");
    for (int t = 0; t < fj::kMaxCapturedTensors; ++t) {
      p.grads.grad[t] = static_cast<float*>(gradBuf.data());
      for (int d = 0; d < fj::kMaxRank; ++d) p.grads.stride[t][d] = 0;  // all contributions land in element 0
    }
    LoadedKernel fn = ModuleCache::global().load(kernel, 0, "flexjit_hook_test");
    void* args[] = {&p};
    CudaDriver::get().launchKernel(fn.function, Dim3{(n + 127) / 128, 1, 1}, Dim3{128, 1, 1}, 0, nullptr, args);
    CudaDriver::get().contextSynchronize();
    std::vector<float> so = sOut.toVector<float>();
    std::vector<int32_t> mo = mOut.toVector<int32_t>(), io = iOut.toVector<int32_t>();
    for (int i = 0; i < n; ++i) {
      Position x{pos[4 * i], pos[4 * i + 1], pos[4 * i + 2], pos[4 * i + 3]};
      float want = ps.scoreF32(scores[i], x);
      // Fast-math transcendental instructions (tanh.approx: ~2^-11 relative) are the only difference.
      EXPECT_NEAR(so[i], want, 2e-3 * std::max(1.0f, std::fabs(want))) << name << " score at " << i;
      EXPECT_EQ(mo[i] != 0, pm.mask(x)) << name << " mask at " << i;
      Box box{fj::ivInt(boxes[8 * i], boxes[8 * i + 1]), fj::ivInt(boxes[8 * i + 2], boxes[8 * i + 3]),
              fj::ivInt(boxes[8 * i + 4], boxes[8 * i + 5]), fj::ivInt(boxes[8 * i + 6], boxes[8 * i + 7])};
      bool anyTrue = false, anyFalse = false;
      for (long long q = box.q.lo; q <= box.q.hi; q += 1)
        for (long long kv = box.kv.lo; kv <= box.kv.hi; kv += 1)
          (pm.mask({x.b, x.h, int(q), int(kv)}) ? anyTrue : anyFalse) = true;
      EXPECT_TRUE(!anyTrue || io[2 * i + 1]) << name << " interval form claimed never-true at " << i;
      EXPECT_TRUE(!anyFalse || io[2 * i]) << name << " interval form claimed never-false at " << i;
    }
  }
}

// The C++ API checks int64 captures on the GPU too (through a host copy): a value outside int32 is an error.
TEST(AttentionGpu, Int64CapturesOutsideInt32AreRefused) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  std::vector<int64_t> ids(300, 1);
  ids[257] = int64_t(3) << 31;
  Tensor dIds = Tensor::fromVector(ids, DType::I64, {300}, kGpu);
  CapturedTensor doc("doc", dIds.view());
  ScoreMod byDoc("by_doc", [&](Expr s, Expr, Expr, Expr q, Expr) { return s + toFloat(doc[q]); });
  Tensor q = randomTensor(DType::BF16, {1, 2, 300, 64}, kGpu, 5);
  try {
    flex_attention(q.view(), q.view(), q.view(), byDoc);
    FAIL() << "an int64 value of 2^32 + 2^31 was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("captured tensor 'doc' (int64[300] on cuda:0) holds 6442450944 at [257]"),
              std::string::npos) << e.what();
  }
}
