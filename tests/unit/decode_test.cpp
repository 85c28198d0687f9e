// The decode family on the host: when the planner takes it, its launch geometry (splits, packed heads,
// grid limits), the split merge (common/split_merge.h) against a float64 formula, and that its kernels
// compile (NVRTC, no GPU) for the seed variants and a sink. Its results on a GPU are checked by
// attention_gpu_test.cpp (DecodeMatchesTheReference).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "codegen/templates/common/split_merge.h"
#include "codegen/templates/decode/decode_params.h"
#include "dsl/Error.h"
#include "examples/SeedVariants.h"
#include "runtime/KernelBuild.h"
#include "runtime/Nvrtc.h"
#include "runtime/Planner.h"

#include "runtime_test_support.h"

using namespace flexjit;

namespace {

using flexjit::testing::ScopedEnv;

/// The decode shape: B4, 32 query heads over 8 KV heads, one query, 32768 keys, on an H200.
ForwardProblem decodeProblem(int lenQ = 1, int major = 9, int minor = 0) {
  ForwardProblem p;
  p.archMajor = major;
  p.archMinor = minor;
  p.batch = 4;
  p.headsQ = 32;
  p.headsKV = 8;
  p.lenQ = lenQ;
  p.lenKV = 32768;
  p.smCount = 132;
  return p;
}

}  // namespace

TEST(DecodePlanner, FewQueryRowsGetTheDecodeFamily) {
  ScopedEnv env("FLEXJIT_FWD_CONFIG", "decode=1");  // required, also where the default would not take it
  for (int lenQ : {1, 3, 16}) {
    for (auto [major, minor] : {std::pair{9, 0}, {8, 0}, {8, 9}}) {
      const ForwardPlan plan = planForward(decodeProblem(lenQ, major, minor));
      EXPECT_EQ(plan.config.family, KernelFamily::Decode) << lenQ << " sm_" << major << minor << ": " << plan.reason;
      EXPECT_EQ(plan.decodePackHeads, 4) << plan.reason;  // the GQA group: the mask is the same for every head
    }
  }
  // A mask with lists per head keeps one head per CTA.
  ForwardProblem perHead = decodeProblem();
  perHead.maskSameForEveryHead = false;
  EXPECT_EQ(planForward(perHead).decodePackHeads, 1);
  // Where it does not apply the prefill families run, and decodeForwardUnsupported says why.
  ForwardProblem longQ = decodeProblem(kDecodeMaxQueries + 1);
  ForwardProblem prob = decodeProblem();
  prob.facts.hasProb = true;
  ForwardProblem smallBlocks = decodeProblem(16);
  smallBlocks.maskBlockQ = 8;  // 16 rows span two row blocks of the mask
  ForwardProblem oddBlocks = decodeProblem();
  oddBlocks.maskBlockKV = 48;  // not a multiple of the 32-key tiles
  struct Case {
    const ForwardProblem* problem;
    const char* says;
  };
  for (const Case& c : {Case{&longQ, "Q_LEN = 17"}, Case{&prob, "prob_mod"}, Case{&smallBlocks, "more than one BlockMask"},
                        Case{&oddBlocks, "BlockMask block size"}}) {
    EXPECT_NE(decodeForwardUnsupported(*c.problem).find(c.says), std::string::npos) << decodeForwardUnsupported(*c.problem);
  }
  // Asked for, a problem it cannot run is an error naming the reason.
  try {
    planForward(longQ);
    ADD_FAILURE() << "decode=1 with Q_LEN = 17 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Q_LEN = 17"), std::string::npos) << e.what();
  }
}

TEST(DecodePlanner, ByDefaultItRunsWhenThePackedRowsFitOneCta) {
  // Q_LEN x GQA group <= 64 packed rows: the decode family, with the fewest row tiles that hold them (one
  // CTA's rows stream the cache once); wider stays on the prefill families.
  for (auto [major, minor] : {std::pair{9, 0}, {8, 0}}) {
    for (auto [lenQ, blockM] : {std::pair{1, 16}, {4, 16}, {5, 32}, {16, 64}}) {
      const FwdKernelConfig c = planForward(decodeProblem(lenQ, major, minor)).config;
      EXPECT_EQ(c.family, KernelFamily::Decode) << lenQ;
      EXPECT_EQ(c.blockM, blockM) << lenQ;
    }
    ForwardProblem wideGroup = decodeProblem(16, major, minor);
    wideGroup.headsKV = 4;  // a group of 8: 128 packed rows
    EXPECT_EQ(planForward(wideGroup).config.family, major == 9 ? KernelFamily::Sm90 : KernelFamily::Sm80);
    wideGroup.lenQ = 8;     // 64 rows again
    EXPECT_EQ(planForward(wideGroup).config.family, KernelFamily::Decode);
  }
  ForwardProblem perHead = decodeProblem(16);
  perHead.maskSameForEveryHead = false;  // one head per CTA: 16 rows
  EXPECT_EQ(planForward(perHead).config.family, KernelFamily::Decode);
  EXPECT_EQ(planForward(perHead).config.blockM, 16);
}

TEST(DecodePlanner, DecodeZeroKeepsThePrefillFamilies) {
  ScopedEnv e("FLEXJIT_FWD_CONFIG", "decode=0");
  EXPECT_EQ(planForward(decodeProblem()).config.family, KernelFamily::Sm90);
  EXPECT_EQ(planForward(decodeProblem(1, 8, 0)).config.family, KernelFamily::Sm80);
}

TEST(DecodePlanner, OverridesTurnItOffRequireItAndTuneIt) {
  {
    // A prefill family asked for by name keeps the decode family out.
    ScopedEnv env("FLEXJIT_FWD_CONFIG", "family=80");
    EXPECT_EQ(planForward(decodeProblem()).config.family, KernelFamily::Sm80);
  }
  {
    ScopedEnv env("FLEXJIT_FWD_CONFIG", "decode=1,blockN=64,warps=2");
    const FwdKernelConfig c = planForward(decodeProblem()).config;
    EXPECT_EQ(c.family, KernelFamily::Decode);
    EXPECT_EQ(c.blockN, 64);
    EXPECT_EQ(c.numWarps, 2);
  }
  {
    // Four 16-row CTAs instead of one of 64 rows (what ran before the wide CTA, for comparisons).
    ScopedEnv env("FLEXJIT_FWD_CONFIG", "decode=1,blockM=16,warps=2,stages=4");
    const FwdKernelConfig c = planForward(decodeProblem(16)).config;
    EXPECT_EQ(c.blockM, 16);
    EXPECT_EQ(c.stages, 4);
    EXPECT_TRUE(checkFwdConfig(c).ok()) << checkFwdConfig(c).message;
    EXPECT_EQ(decodeLaunch(c, 4, 32, 4, 16, 32768, 132).rowGroups, 4);
  }
  struct Bad {
    const char* env;
    int lenQ;
    const char* says;
  };
  for (const Bad& bad : {Bad{"decode=1", 128, "decode=1 cannot run this problem: Q_LEN = 128"},
                         Bad{"decode=2", 1, "must be 0"}, Bad{"decode=1,family=90", 1, "two families"},
                         Bad{"decode=1,blockN=48", 1, "invalid decode tiles"},
                         Bad{"decode=1,subN=32", 1, "among blockM, blockN, decode, stages, warps"},
                         Bad{"decode=1,stages=5", 1, "2 to 4 stages"},
                         Bad{"decode=1,blockM=64,warps=2", 1, "a multiple of blockM / 16"},
                         Bad{"blockN=64", 128, "among decode, family, stages"}}) {
    ScopedEnv env("FLEXJIT_FWD_CONFIG", bad.env);
    try {
      planForward(decodeProblem(bad.lenQ));
      ADD_FAILURE() << bad.env << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad.says), std::string::npos) << bad.env << ": " << e.what();
    }
  }
}

TEST(DecodeLaunch, SplitsFillOneWaveAndKeepEveryWarpBusy) {
  const FwdKernelConfig c = defaultDecodeConfig(DType::BF16, 128, 128, 9, 0, 16);
  EXPECT_EQ(c.numWarps, 4);
  EXPECT_EQ(c.blockM, 16);
  const int perSm = decodeCtasPerSm(c);
  EXPECT_GE(perSm, 1);
  // The case: 32 CTAs (8 head groups x 4 batches, 4 heads packed per CTA) over 1024 tiles of 32 keys.
  const DecodeLaunch l = decodeLaunch(c, 4, 32, 4, 1, 32768, 132);
  EXPECT_EQ(l.rowGroups, 1);
  EXPECT_EQ(l.grid[1], 8u);
  EXPECT_EQ(l.grid[2], 4u);
  EXPECT_GT(l.splits, 1);
  EXPECT_LE(static_cast<long long>(l.grid[0]) * l.grid[1] * l.grid[2], 132LL * perSm);  // one wave at most
  EXPECT_GT(static_cast<long long>(l.grid[0]) * l.grid[1] * l.grid[2] * 2, 132LL * perSm);  // more than half
  EXPECT_EQ(l.block[0], 128u);
  EXPECT_EQ(l.combineGrid, (4u * 32u + 3u) / 4u);
  // 16 packed rows per CTA: 8 heads x 3 queries take two row groups.
  EXPECT_EQ(decodeLaunch(c, 1, 8, 8, 3, 4096, 132).rowGroups, 2);
  // Short KV: no split leaves a warp with fewer than two tiles; none at all for a handful of keys.
  EXPECT_EQ(decodeLaunch(c, 1, 8, 8, 1, 100, 132).splits, 1);
  EXPECT_EQ(decodeSplits(1, 64, 132, 1, 4), 8);
  EXPECT_EQ(decodeSplits(1, 1 << 20, 132, 1, 4), fjk::kDecodeMaxSplits);
  EXPECT_EQ(decodeSplits(1000, 1 << 20, 132, 1, 4), 1);
  EXPECT_EQ(decodeLaunch(c, 1, 8, 8, 1, 0, 132).splits, 1);  // no keys: one split with nothing to do
  // Q_LEN 16 x a group of 4: one 64-row CTA per (batch, head group), so the cache is streamed once; one kv
  // slot (4 warps, one per row tile) with a ring of three tiles, at least two per split.
  const FwdKernelConfig wide = defaultDecodeConfig(DType::BF16, 128, 128, 9, 0, 64);
  EXPECT_EQ(wide.blockM, 64);
  EXPECT_EQ(wide.numWarps, 4);
  EXPECT_EQ(wide.stages, 3);
  EXPECT_EQ(decodeRowTiles(wide), 4);
  EXPECT_TRUE(checkFwdConfig(wide).ok()) << checkFwdConfig(wide).message;
  const DecodeLaunch w = decodeLaunch(wide, 4, 32, 4, 16, 32768, 132);
  EXPECT_EQ(w.rowGroups, 1);
  EXPECT_EQ(w.block[0], 128u);
  EXPECT_GT(w.splits, 1);
  EXPECT_LE(static_cast<long long>(w.grid[0]) * w.grid[1] * w.grid[2], 132LL * decodeCtasPerSm(wide));
  EXPECT_EQ(decodeLaunch(wide, 1, 8, 8, 16, 32768, 132).rowGroups, 2);  // 128 rows: two 64-row CTAs
  EXPECT_EQ(decodeLaunch(wide, 1, 8, 8, 1, 60, 132).splits, 1);        // 2 tiles: one split's worth
  // 17-32 rows take two row tiles, 33-64 four (three round up: one kernel fewer).
  EXPECT_EQ(defaultDecodeConfig(DType::BF16, 128, 128, 9, 0, 24).blockM, 32);
  EXPECT_EQ(defaultDecodeConfig(DType::BF16, 128, 128, 9, 0, 40).blockM, 64);
  try {
    decodeLaunch(c, 70000, 8, 8, 1, 4096, 132);
    ADD_FAILURE() << "a batch beyond the grid's limit was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("split the batch"), std::string::npos) << e.what();
  }
}

TEST(DecodeLaunch, WideHeadsTakeFewerWarpsToFitSharedMemory) {
  for (auto [major, minor] : {std::pair{9, 0}, {8, 0}}) {
    const FwdKernelConfig c = defaultDecodeConfig(DType::BF16, 256, 256, major, minor, 1);
    EXPECT_TRUE(checkFwdConfig(c).ok()) << checkFwdConfig(c).message;
    EXPECT_LE(fwdSharedMemoryBytes(c) + kFwdStaticSmemBytes, maxSharedMemoryPerBlock(major, minor));
    EXPECT_LT(c.numWarps, 4);
    // 64 rows keep their four row tiles (one warp each) and give up kv slots instead.
    const FwdKernelConfig wide = defaultDecodeConfig(DType::BF16, 256, 256, major, minor, 64);
    EXPECT_TRUE(checkFwdConfig(wide).ok()) << checkFwdConfig(wide).message;
    EXPECT_LE(fwdSharedMemoryBytes(wide) + kFwdStaticSmemBytes, maxSharedMemoryPerBlock(major, minor));
    EXPECT_EQ(wide.numWarps % decodeRowTiles(wide), 0);
  }
  // sm_86's 99 KB: 64 rows at D = 192 keep one slot and shorten the ring to fit (at D = 256 not even two
  // stages fit: the planner then runs the prefill families, decodeForwardUnsupported says why).
  const FwdKernelConfig small = defaultDecodeConfig(DType::BF16, 192, 192, 8, 6, 64);
  EXPECT_TRUE(checkFwdConfig(small).ok()) << checkFwdConfig(small).message;
  EXPECT_EQ(small.stages, 2);
}

TEST(SplitMerge, MatchesTheFloat64Formula) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-30.0f, 30.0f);
  const float inf = std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 500; ++trial) {
    const int n = 1 + trial % 9;
    std::vector<float> lse(n);
    for (float& x : lse) x = trial % 5 == 0 && (&x - lse.data()) % 2 == 0 ? -inf : u(rng);  // some empty splits
    const bool hasSink = trial % 3 == 0;
    const float sink = u(rng);
    double top = hasSink ? sink : -INFINITY;
    for (float x : lse) top = std::max<double>(top, x);
    double total = hasSink ? std::exp(sink - top) : 0.0;
    for (float x : lse) total += std::exp(x - top);
    const double wantLse = top + std::log(total);
    const fjk::SplitMerge m = fjk::merge_splits(lse.data(), 1, n, hasSink, sink);
    EXPECT_NEAR(m.lse, wantLse, 1e-5 * std::max(1.0, std::abs(wantLse))) << trial;
    double weights = 0.0;
    for (int s = 0; s < n; ++s) {
      const double want = std::exp(static_cast<double>(lse[s]) - wantLse);
      EXPECT_NEAR(fjk::split_weight(m, lse[s]), want, 1e-6) << trial << " split " << s;
      weights += fjk::split_weight(m, lse[s]);
    }
    // Without a sink the weights are a partition of 1; a sink takes its share.
    if (!hasSink) {
      EXPECT_NEAR(weights, 1.0, 1e-5) << trial;
    }
    if (hasSink) {
      EXPECT_NEAR(weights + std::exp(sink - wantLse), 1.0, 1e-5) << trial;
    }
  }
}

TEST(SplitMerge, EmptyRowsNaNAndStrides) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // Every split empty: LSE = -inf and weight 0 (the fully masked row's O = 0), never NaN.
  const float empty[3] = {-inf, -inf, -inf};
  fjk::SplitMerge m = fjk::merge_splits(empty, 1, 3, false, 0.0f);
  EXPECT_EQ(m.lse, -inf);
  EXPECT_EQ(fjk::split_weight(m, -inf), 0.0f);
  // With a finite sink the row's LSE is the sink and O stays 0.
  m = fjk::merge_splits(empty, 1, 3, true, 1.5f);
  EXPECT_FLOAT_EQ(m.lse, 1.5f);
  EXPECT_EQ(fjk::split_weight(m, -inf), 0.0f);
  // A NaN split (a NaN score somewhere in the row) or a NaN sink makes the row NaN.
  const float withNaN[3] = {0.5f, nan, 2.0f};
  m = fjk::merge_splits(withNaN, 1, 3, false, 0.0f);
  EXPECT_TRUE(std::isnan(m.lse));
  EXPECT_TRUE(std::isnan(fjk::split_weight(m, 0.5f)));
  const float fine[2] = {0.5f, 2.0f};
  EXPECT_TRUE(std::isnan(fjk::merge_splits(fine, 1, 2, true, nan).lse));
  // The stride walks one row's splits in a [splits, rows] layout too.
  const float strided[6] = {1.0f, 9.0f, 2.0f, 9.0f, 3.0f, 9.0f};
  EXPECT_NEAR(fjk::merge_splits(strided, 2, 3, false, 0.0f).lse,
              std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), 1e-5);
}

TEST(DecodeCompile, SeedVariantsAndASinkCompileForSm80AndSm90a) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  for (const char* seed : {"causal", "alibi", "softcap", "document", "gated_decay"}) {
    examples::SeedVariant v = examples::makeSeedVariant(seed);
    Variant variant = generateVariant(v.score, v.mask, {false});
    for (auto [major, minor] : {std::pair{9, 0}, {8, 0}}) {
      // 16 packed rows, and 64 (four row tiles sharing each K/V tile of two kv slots).
      const long long rows = std::string(seed) == "alibi" || std::string(seed) == "document" ? 64 : 16;
      ForwardBuild build = forwardKernel(variant, defaultDecodeConfig(DType::BF16, 128, 128, major, minor, rows),
                                         std::string("decode_test_") + seed);
      const std::string what = std::string(seed) + " sm_" + std::to_string(major) + std::to_string(minor) +
                               " blockM " + std::to_string(build.config.blockM);
      EXPECT_EQ(build.config.family, KernelFamily::Decode) << what;
      EXPECT_FALSE(build.kernel->cubin.empty()) << what;
      EXPECT_EQ(build.spillBytes, 0) << what;
      EXPECT_NE(build.kernel->ptx.find(kDecodeCombineKernelName), std::string::npos) << what;
      std::printf("[ resources ] decode %-12s sm_%d%d blockM %2d: %3d registers (split), %3d (combine)\n", seed, major,
                  minor, build.config.blockM,
                  static_cast<int>(build.kernel->usage(kFwdKernelName).registers),
                  static_cast<int>(build.kernel->usage(kDecodeCombineKernelName).registers));
    }
  }
  // Deeper rings (FLEXJIT_FWD_CONFIG stages=3 / 4) compile without spills too.
  {
    examples::SeedVariant v = examples::makeSeedVariant("alibi");
    Variant variant = generateVariant(v.score, v.mask, {false});
    FwdKernelConfig c = defaultDecodeConfig(DType::BF16, 128, 128, 9, 0, 64);
    c.stages = 4;
    ASSERT_TRUE(checkFwdConfig(c).ok()) << checkFwdConfig(c).message;
    ForwardBuild build = forwardKernel(variant, c, "decode_test_stages");
    EXPECT_FALSE(build.kernel->cubin.empty());
    EXPECT_EQ(build.spillBytes, 0);
  }
  // A sink joins the combine kernel's denominator.
  std::vector<float> values{0.7f, -1.3f, 2.1f, -0.2f};
  CapturedTensor sinks("sinks", TensorView(values.data(), DType::F32, Device::cpu(), {4}), false);
  SinkMod sink("per_head", [&](Expr, Expr h, Expr) { return sinks[h]; });
  Variant variant = generateVariant(ScoreMod::noop(), MaskMod::noop(), {false}, ExtraHooks{sink, std::nullopt});
  ForwardBuild build = forwardKernel(variant, defaultDecodeConfig(DType::F16, 64, 64, 9, 0, 32), "decode_test_sink");
  EXPECT_FALSE(build.kernel->cubin.empty());
  EXPECT_EQ(build.spillBytes, 0);
}
