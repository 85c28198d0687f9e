// The decode family on a GPU against the float64 reference (skipped without a GPU): Q_LEN 1 / 3 / 16, GQA
// groups 1 / 4 / 5 / 8 (packed into one CTA's rows), KV_LEN 1 / 1000 / 32768 (one split to many), masks
// with an offset as a decode step has them, a score_mod that reads h (each packed row its own head), a mask
// with lists per head (no packing), a sink with max scores, and NaN / fully masked rows next to healthy
// rows of the same CTA. FLEXJIT_FWD_CONFIG=decode=1 makes any fallback to the prefill families an error.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "AttentionTestUtil.h"
#include "runtime/AttentionBackward.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

const Device kGpu = Device::cuda(0);

class DecodeGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
    setenv("FLEXJIT_FWD_CONFIG", "decode=1", 1);
  }
  void TearDown() override { unsetenv("FLEXJIT_FWD_CONFIG"); }
};

struct Shape {
  int64_t B, Hkv, group, Lq, Lkv, D;
  DType dtype;
};

/// The mods of one decode case, built over captures on one device (the kernel's on the GPU, the
/// reference's on the CPU): the queries sit at the end of the cache (q_idx + Lkv - Lq), a 700-key window,
/// ALiBi slopes per query head, or a window per head.
struct DecodeMods {
  Tensor slopesHost;
  CapturedTensor slopes;
  ScoreMod alibi;
  MaskMod window;
  MaskMod windowPerHead;
  DecodeMods(int64_t Hq, int64_t offset, Device device)
      : slopesHost(randomTensor(DType::F32, {Hq}, Device::cpu(), 77, 0.05f).to(device)),
        slopes("slopes", slopesHost.view()),
        alibi("alibi_end", [this, offset](Expr s, Expr, Expr h, Expr q, Expr kv) {
          return s - slopes[h] * toFloat(q + Expr(static_cast<int>(offset)) - kv);
        }),
        window("window_end", [offset](Expr, Expr, Expr q, Expr kv) {
          Expr pos = q + Expr(static_cast<int>(offset));
          return (kv <= pos) & (pos - kv < 700);
        }),
        windowPerHead("window_per_head", [offset](Expr, Expr h, Expr q, Expr kv) {
          Expr pos = q + Expr(static_cast<int>(offset));
          return (kv <= pos) & (pos - kv < (h + 1) * 50);
        }) {}
};

std::string describe(const Shape& s) {
  return fmt::format("B{} Hkv{} group{} Lq{} Lkv{} D{} {}", s.B, s.Hkv, s.group, s.Lq, s.Lkv, s.D, dtypeName(s.dtype));
}

}  // namespace

TEST_F(DecodeGpu, DecodeMatchesTheReference) {
  std::vector<Shape> shapes;
  uint32_t n = 0;
  for (int64_t group : {1, 4, 5, 8})
    for (int64_t Lq : {1, 3, 16})
      for (int64_t Lkv : {1, 1000}) {
        const bool wide = ++n % 2 == 0;
        shapes.push_back({2, 2, group, Lq, Lkv, wide ? 128 : 64, wide ? DType::BF16 : DType::F16});
      }
  shapes.push_back({1, 2, 4, 1, 32768, 128, DType::BF16});  // the layout, at one batch
  shapes.push_back({1, 1, 5, 3, 32768, 64, DType::F16});
  uint32_t seed = 300;
  for (const Shape& s : shapes) {
    const int64_t Hq = s.Hkv * s.group, offset = s.Lkv - s.Lq;
    DecodeMods gpu(Hq, offset, kGpu), cpu(Hq, offset, Device::cpu());
    Tensor q = randomTensor(s.dtype, {s.B, Hq, s.Lq, s.D}, kGpu, seed += 3);
    Tensor k = randomTensor(s.dtype, {s.B, s.Hkv, s.Lkv, s.D}, kGpu, seed + 1);
    Tensor v = randomTensor(s.dtype, {s.B, s.Hkv, s.Lkv, s.D}, kGpu, seed + 2);
    struct Mods {
      const char* name;
      const ScoreMod* gpuScore;
      const ScoreMod* cpuScore;
      const MaskMod* gpuMask;
      const MaskMod* cpuMask;
    };
    const ScoreMod noop = ScoreMod::noop();
    for (const Mods& m : {Mods{"no mods", &noop, &noop, nullptr, nullptr},
                          Mods{"alibi + window", &gpu.alibi, &cpu.alibi, &gpu.window, &cpu.window},
                          Mods{"window per head", &noop, &noop, &gpu.windowPerHead, &cpu.windowPerHead}}) {
      std::optional<BlockMask> gm, cm;
      if (m.gpuMask) {
        gm = createBlockMask(*m.gpuMask, s.B, Hq, s.Lq, s.Lkv, kGpu);
        cm = createBlockMask(*m.cpuMask, s.B, Hq, s.Lq, s.Lkv, Device::cpu());
      }
      ForwardCheck r = checkForward(q, k, v, *m.gpuScore, gm ? &*gm : nullptr, cm ? &*cm : nullptr, {}, m.cpuScore);
      EXPECT_TRUE(r.pass()) << fmt::format("{} {}: out error {:.3g} (low-precision reference {:.3g}), lse error {:.3g}",
                                           m.name, describe(s), r.outError, r.outLowPrecisionError, r.lseError);
    }
  }
}

TEST_F(DecodeGpu, SinksMaxScoresNaNAndEmptyRowsInOneCta) {
  // 5 query heads of one KV head and 3 queries: 15 packed rows in one CTA. Query 0 of every head keeps no
  // key (O = 0, LSE = the sink); head 2's query 1 holds a NaN (its row, and only its row, comes out NaN).
  const int64_t B = 2, Hq = 5, Hkv = 1, Lq = 3, Lkv = 3000, D = 128;
  MaskMod late("late_first", [](Expr, Expr, Expr q, Expr kv) { return (q >= 1) & (kv <= q + Expr(2997)); });
  Tensor sinksCpu = randomTensor(DType::F32, {Hq}, Device::cpu(), 41, 2.0f), sinksGpu = sinksCpu.to(kGpu);
  CapturedTensor sinks("sinks", sinksGpu.view());
  SinkMod sink("per_head", [&](Expr, Expr h, Expr) { return sinks[h]; });
  Tensor qc = randomTensor(DType::BF16, {B, Hq, Lq, D}, Device::cpu(), 42);
  writeFloat(qc.data(), DType::BF16, ((0 * Hq + 2) * Lq + 1) * D + 5, std::numeric_limits<double>::quiet_NaN());
  Tensor q = qc.to(kGpu), k = randomTensor(DType::BF16, {B, Hkv, Lkv, D}, kGpu, 43),
         v = randomTensor(DType::BF16, {B, Hkv, Lkv, D}, kGpu, 44);
  BlockMask gpuMask = createBlockMask(late, B, Hq, Lq, Lkv, kGpu), cpuMask = createBlockMask(late, B, Hq, Lq, Lkv, Device::cpu());
  AttentionOptions options;
  options.sink = sink;
  options.returnMaxScores = true;
  AttentionResult gpu = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &gpuMask, options);
  Tensor kc = k.to(Device::cpu()), vc = v.to(Device::cpu());
  sinks.bind(sinksCpu.view());
  AttentionResult ref = flex_attention(qc.view(), kc.view(), vc.view(), ScoreMod::noop(), &cpuMask, options);
  std::vector<double> go = asDoubles(gpu.out), ro = asDoubles(ref.out), gl = asDoubles(gpu.lse), rl = asDoubles(ref.lse),
                      gm = asDoubles(gpu.maxScores), rm = asDoubles(ref.maxScores), sv = asDoubles(sinksCpu);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h)
      for (int64_t i = 0; i < Lq; ++i) {
        const int64_t row = (b * Hq + h) * Lq + i;
        const std::string at = fmt::format("b{} h{} q{}", b, h, i);
        const bool nanRow = b == 0 && h == 2 && i == 1;
        EXPECT_EQ(std::isnan(gl[row]), nanRow) << at << " lse " << gl[row];
        if (i == 0) {
          EXPECT_NEAR(gl[row], sv[h], 1e-3) << at << ": no key, LSE = the sink";
        }
        if (!nanRow) {
          EXPECT_NEAR(gl[row], rl[row], 2e-3 * std::max(1.0, std::fabs(rl[row]))) << at;
          if (i > 0) {
            EXPECT_NEAR(gm[row], rm[row], 2e-3 * std::max(1.0, std::fabs(rm[row]))) << at << " max score";
          }
        }
        for (int64_t d = 0; d < D; ++d) {
          const double o = go[row * D + d];
          EXPECT_EQ(std::isnan(o), nanRow) << at << " col " << d;
          if (i == 0) {
            EXPECT_EQ(o, 0.0) << at << " col " << d;
          }
          if (!nanRow) {
            EXPECT_NEAR(o, ro[row * D + d], 2e-2) << at << " col " << d;
          }
        }
      }
}

TEST_F(DecodeGpu, TheDecodeForwardFeedsTheBackward) {
  // A few query rows in training (a short-query cross attention): the decode forward's LSE drives the
  // prefill backward, whose gradients must match the reference's.
  const int64_t B = 1, Hq = 4, Hkv = 2, Lq = 7, Lkv = 500, D = 64;
  Tensor q = randomTensor(DType::BF16, {B, Hq, Lq, D}, kGpu, 51), k = randomTensor(DType::BF16, {B, Hkv, Lkv, D}, kGpu, 52),
         v = randomTensor(DType::BF16, {B, Hkv, Lkv, D}, kGpu, 53), dout = randomTensor(DType::BF16, {B, Hq, Lq, D}, kGpu, 54);
  AttentionResult gpu = flex_attention(q.view(), k.view(), v.view());
  AttentionGradients gg = flex_attention_backward(q.view(), k.view(), v.view(), gpu.out.view(), gpu.lse.view(), dout.view());
  Tensor qc = q.to(Device::cpu()), kc = k.to(Device::cpu()), vc = v.to(Device::cpu()), dc = dout.to(Device::cpu());
  AttentionResult ref = flex_attention(qc.view(), kc.view(), vc.view());
  AttentionGradients rg = flex_attention_backward(qc.view(), kc.view(), vc.view(), ref.out.view(), ref.lse.view(), dc.view());
  EXPECT_LT(maxError(asDoubles(gpu.out), asDoubles(ref.out)), 2e-2);
  EXPECT_LT(maxError(asDoubles(gg.dq), asDoubles(rg.dq)), 5e-2);
  EXPECT_LT(maxError(asDoubles(gg.dk), asDoubles(rg.dk)), 5e-2);
  EXPECT_LT(maxError(asDoubles(gg.dv), asDoubles(rg.dv)), 5e-2);
}
