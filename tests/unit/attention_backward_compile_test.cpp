// Every seed variant's backward kernels (dK/dV, deterministic dQ, preprocess + convert) compile to CUBIN
// for sm_80 and sm_90a with NVRTC, without a GPU. Registers, stack and spills are printed for each build
// (the report docs/kernels-backward.md quotes); the benchmark configuration spills at most a few scalars.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "codegen/BackwardConfig.h"
#include "codegen/Variant.h"
#include "examples/SeedVariants.h"
#include "runtime/AttentionGpu.h"
#include "runtime/BackwardBuild.h"
#include "runtime/Captures.h"
#include "runtime/KernelCache.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;

namespace {

struct Target {
  int major, minor;
  DType dtype;
  int headDim;
};

/// Spill stores tolerated in the dK/dV kernel: a handful of loop scalars, reloaded once per tile.
constexpr long long kScalarSpillBytes = 128;

const char* archName(const Target& t) { return t.major >= 9 ? "sm_90a" : "sm_80"; }

/// Compiles one program and returns the resources of `function`; prints a report line.
ResourceUsage build(const Variant* variant, const BwdKernelConfig& config, BwdKernelKind kind, const Target& t,
                    const char* function, const std::string& what) {
  CompileResult r = compileCuda(backwardSource(variant, config, kind), "bwd_" + what,
                                CompileOptions{archName(t), {}, false});
  EXPECT_FALSE(r.cubin.empty()) << what;
  const ResourceUsage& use = resourceUsage(r, function);
  std::printf("[ resources ] %-16s %-6s %s D%-3d %-5s: %3lld registers, %4lld B stack, %4lld B spill stores, "
              "%4lld B spill loads, smem %d B\n",
              what.c_str(), archName(t), dtypeName(t.dtype), t.headDim, bwdKindName(kind),
              static_cast<long long>(use.registers), static_cast<long long>(use.stackFrameBytes),
              static_cast<long long>(use.spillStoreBytes), static_cast<long long>(use.spillLoadBytes),
              kind == BwdKernelKind::Dq ? bwdDqSharedMemoryBytes(config) : bwdDkDvSharedMemoryBytes(config));
  EXPECT_LE(use.registers, 255) << what;
  return use;
}

class BackwardCompileTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(BackwardCompileTest, CompilesForSm80AndSm90a) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant(GetParam());
  Variant variant = generateVariant(v.score, v.mask, {true});
  const Target targets[] = {{9, 0, DType::BF16, 128}, {8, 0, DType::BF16, 128}, {9, 0, DType::F16, 64}};
  for (const Target& t : targets) {
    BwdKernelConfig config =
        defaultBwdConfig(t.dtype, t.headDim, t.headDim, t.major, t.minor, 128, 128, false, variant.gradSites);
    requireBwdSupported(config, 128, 128);
    ResourceUsage main = build(&variant, config, BwdKernelKind::DkDv, t, kBwdDkDvKernelName, GetParam());
    // The configuration the benchmarks time (bf16, D = 128, Hopper) may spill a few loop scalars (full
    // unrolling, see docs/kernels-backward.md), never more.
    if (t.major == 9 && t.headDim == 128) {
      EXPECT_LE(main.spillStoreBytes, kScalarSpillBytes) << GetParam() << ": the dK/dV kernel spills more than scalars";
    }
  }
  // The deterministic dQ kernel, on the benchmark target.
  const Target hopper = targets[0];
  BwdKernelConfig det =
      defaultBwdConfig(hopper.dtype, hopper.headDim, hopper.headDim, 9, 0, 128, 128, true, variant.gradSites);
  requireBwdSupported(det, 128, 128);
  ResourceUsage dq = build(&variant, det, BwdKernelKind::Dq, hopper, kBwdDqKernelName, GetParam());
  EXPECT_EQ(dq.spillStoreBytes, 0) << GetParam() << ": dQ kernel spills";
}

// The sm90 family's dK/dV kernel (wgmma + TMA) for every seed variant it takes (gradient sites indexed by q
// and kv together go to the sm80 family's windows), bf16 D128 and fp16 D64: its PTX holds the wgmmas, the
// TMA loads and the TMA reductions of dQ, and ptxas spills at most a few scalars (bf16 D128 keeps some of
// the precomputed wgmma descriptors in local memory, reloaded once per q tile).
TEST_P(BackwardCompileTest, Sm90FamilyCompilesWithoutSpills) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant(GetParam());
  Variant variant = generateVariant(v.score, v.mask, {true});
  if (variant.gradSites > 0 && variant.gradSitesMixQAndKv)
    GTEST_SKIP() << "gradients of captured tensors indexed by q and kv together run on the sm80 family";
  // The third build: deterministic mode's dK/dV kernel (no dQ: the sm80 dQ kernel runs after it).
  const Target targets[] = {{9, 0, DType::BF16, 128}, {9, 0, DType::F16, 64}, {9, 0, DType::BF16, 128}};
  const char* kinds[] = {"", "", " (deterministic)"};
  for (int i = 0; i < 3; ++i) {
    const Target& t = targets[i];
    BwdKernelConfig config = defaultSm90BwdConfig(t.dtype, t.headDim, t.headDim, 9, 0, i == 2);
    requireBwdSupported(config, 128, 128);
    const std::string what = GetParam() + "/sm90" + kinds[i];
    CompileResult r = compileCuda(backwardSource(&variant, config, BwdKernelKind::DkDv), "bwd_" + what,
                                  CompileOptions{"sm_90a", {}, false});
    ASSERT_FALSE(r.cubin.empty()) << what;
    for (const char* op : {"wgmma.mma_async", "cp.async.bulk.tensor", "cp.reduce.async.bulk.tensor", "setmaxnreg"}) {
      if (i != 2 || std::string(op) != "cp.reduce.async.bulk.tensor") {
        EXPECT_NE(r.ptx.find(op), std::string::npos) << what << ": no " << op;
      }
    }
    if (i == 2) {
      EXPECT_EQ(r.ptx.find("cp.reduce.async.bulk.tensor"), std::string::npos) << what << ": dQ reductions";
    }
    const ResourceUsage& use = resourceUsage(r, kBwdDkDvKernelName);
    std::printf("[ resources ] %-16s sm_90a %s D%-3d dkdv sm90 family%s: %3lld registers, %4lld B spill stores, smem %d B\n",
                GetParam().c_str(), dtypeName(t.dtype), t.headDim, kinds[i],
                static_cast<long long>(use.registers),
                static_cast<long long>(use.spillStoreBytes), bwdDkDvSharedMemoryBytes(config));
    EXPECT_LE(use.spillStoreBytes, kScalarSpillBytes) << what << ": spills more than scalars";
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, BackwardCompileTest, ::testing::ValuesIn(examples::seedVariantNames()),
                         [](const auto& info) { return info.param; });

TEST(BackwardCompile, AuxKernelsAndOtherHeadDims) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant("causal");
  Variant variant = generateVariant(v.score, v.mask, {true});
  for (int d : {32, 64, 96, 128, 256}) {
    for (const Target& t : {Target{9, 0, DType::BF16, d}, Target{8, 0, DType::F16, d}}) {
      BwdKernelConfig config = defaultBwdConfig(t.dtype, d, d, t.major, t.minor);
      requireBwdSupported(config, 128, 128);
      build(nullptr, config, BwdKernelKind::Aux, t, kBwdPreprocessKernelName, "preprocess");
      build(nullptr, config, BwdKernelKind::Aux, t, kBwdConvertKernelName, "convert");
      if (d != 64 && d != 128) {  // the seed-variant test covers 64 and 128
        build(&variant, config, BwdKernelKind::DkDv, t, kBwdDkDvKernelName, "causal");
        BwdKernelConfig det = defaultBwdConfig(t.dtype, d, d, t.major, t.minor, 128, 128, true);
        requireBwdSupported(det, 128, 128);
        build(&variant, det, BwdKernelKind::Dq, t, kBwdDqKernelName, "causal");
      }
    }
  }
}

TEST(BackwardCompile, EveryForwardHeadDimHasABackward) {
  // Every multiple of 16 up to 256 has a tiling; the dims of an odd number of 16-column units take 4 warps
  // (issue 12: 48, 80, 112 and 144 were refused with a message about BLOCK_SIZE).
  for (int d = 16; d <= 256; d += 16)
    for (auto [major, minor] : {std::pair{9, 0}, {8, 0}}) {
      BwdKernelConfig c = defaultBwdConfig(DType::BF16, d, d, major, minor);
      EXPECT_TRUE(checkBwdConfig(c).ok) << "D" << d << " sm_" << major << minor << ": " << checkBwdConfig(c).message;
      EXPECT_EQ(c.numWarps, (d / 16) % 2 == 1 ? 4 : 8) << "D" << d;
    }
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant("causal");
  Variant variant = generateVariant(v.score, v.mask, {true});
  for (int d : {48, 80, 144}) {
    const Target t{9, 0, DType::BF16, d};
    BwdKernelConfig config = defaultBwdConfig(t.dtype, d, d, t.major, t.minor);
    requireBwdSupported(config, 128, 128);
    build(&variant, config, BwdKernelKind::DkDv, t, kBwdDkDvKernelName, "causal");
    BwdKernelConfig det = defaultBwdConfig(t.dtype, d, d, t.major, t.minor, 128, 128, true);
    requireBwdSupported(det, 128, 128);
    build(&variant, det, BwdKernelKind::Dq, t, kBwdDqKernelName, "causal");
  }
}

TEST(BackwardCompile, ConfigRulesFollowTheMaskBlocks) {
  // A mask block of 64 x 32 shrinks the tiles so that they divide it; a block the tiles cannot divide
  // is an error that names the BlockMask.
  BwdKernelConfig c = defaultBwdConfig(DType::BF16, 128, 128, 9, 0, 64, 32);
  EXPECT_TRUE(checkBwdConfig(c).ok) << checkBwdConfig(c).message;
  EXPECT_TRUE(checkBwdMaskBlocks(c, 64, 32).ok);
  EXPECT_EQ(32 % c.blockN, 0);
  BwdKernelConfig d = defaultBwdConfig(DType::BF16, 128, 128, 9, 0);
  BwdConfigCheck bad = checkBwdMaskBlocks(d, 128, 100);
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.message.find("BlockMask"), std::string::npos) << bad.message;
  // A100's 163 KiB drop the Q / dO ring to one stage; Hopper keeps two.
  EXPECT_EQ(defaultBwdConfig(DType::BF16, 128, 128, 8, 0).stages, 1);
  EXPECT_EQ(d.stages, 2);
  EXPECT_LE(bwdDkDvSharedMemoryBytes(d), 227 * 1024);
  EXPECT_EQ(bwdPaddedLenQ(1), 128);
  EXPECT_EQ(bwdPaddedLenQ(128), 128);
  EXPECT_EQ(bwdPaddedLenQ(129), 256);
}

TEST(BackwardCompile, GradWindowsFitTheSharedMemory) {
  // No accumulation sites: no windows, the shared memory of before. One or two sites: 2048 floats each,
  // three or more: four windows of 1024 (16 KiB in all), within every GPU's limit or none at all.
  BwdKernelConfig plain = defaultBwdConfig(DType::BF16, 128, 128, 9, 0);
  EXPECT_EQ(plain.gradWindows, 0);
  EXPECT_EQ(bwdDkDvSharedMemoryBytes(plain), 175232);
  for (int sites : {1, 2, 3, 7}) {
    BwdKernelConfig c = defaultBwdConfig(DType::BF16, 128, 128, 9, 0, 128, 128, false, sites);
    EXPECT_EQ(c.gradWindows, std::min(sites, 4));
    EXPECT_EQ(c.gradWindowFloats, sites <= 2 ? 2048 : 1024);
    EXPECT_TRUE(checkBwdConfig(c).ok) << checkBwdConfig(c).message;
  }
  for (int major : {8, 9})
    for (int minor : {0, 6, 9})
      for (int d : {64, 128, 256}) {
        // Windows never make a configuration fail: they take what the tiles leave (sm_86's 99 KiB do not
        // fit D = 256 even without them).
        if (!checkBwdConfig(defaultBwdConfig(DType::F16, d, d, major, minor)).ok) continue;
        BwdKernelConfig c = defaultBwdConfig(DType::F16, d, d, major, minor, 128, 128, false, 2);
        EXPECT_TRUE(checkBwdConfig(c).ok) << "sm_" << major << minor << " D" << d << ": " << checkBwdConfig(c).message;
        EXPECT_EQ(c.gradWindows == 0, c.gradWindowFloats == 0);
        std::printf("[ windows ] sm_%d%d D%d: %d windows of %d floats, smem %d B\n", major, minor, d, c.gradWindows,
                    c.gradWindowFloats, bwdDkDvSharedMemoryBytes(c));
      }
}

TEST(BackwardCompile, MoreGradientSitesThanWindows) {
  // Five reads of one tensor (the fifth site has no window) compile for sm_80 and sm_90a.
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  std::vector<float> data(512);
  CapturedTensor g("g", TensorView(data.data(), DType::F32, Device::cpu(), {512}), true);
  ScoreMod score("many_sites", [g](Expr s, Expr, Expr, Expr q, Expr kv) {
    return s + g[q] - g[kv] + 0.5f * g[(q + kv) % 512] + 0.25f * g[abs(q - kv)] + 0.125f * g[floordiv(q, 2)];
  });
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  Variant variant = generateVariant(score, causal, {true});
  EXPECT_EQ(variant.gradSites, 5);
  for (const Target& t : {Target{9, 0, DType::BF16, 128}, Target{8, 0, DType::BF16, 128}}) {
    BwdKernelConfig config =
        defaultBwdConfig(t.dtype, t.headDim, t.headDim, t.major, t.minor, 128, 128, false, variant.gradSites);
    EXPECT_EQ(config.gradWindows, 4);
    build(&variant, config, BwdKernelKind::DkDv, t, kBwdDkDvKernelName, "many_sites");
  }
}

// The backward gives gradient windows only to variants with a site whose index mixes q and kv: the learned
// relative bias (bias[h][clamp(q - kv)]) yes; the gated decay (G[b][h][q], G[b][h][kv]) no.
TEST(BackwardGradWindows, OnlySitesMixingQAndKvQualify) {
  auto mixes = [](const char* name) {
    examples::SeedVariant v = examples::makeSeedVariant(name);
    Variant variant = generateVariant(v.score, v.mask, {true});
    EXPECT_GT(variant.gradSites, 0) << name;
    return variant.gradSitesMixQAndKv;
  };
  EXPECT_TRUE(mixes("relative_bias"));
  EXPECT_FALSE(mixes("gated_decay"));
  std::vector<float> data(64, 0.0f);
  CapturedTensor g("g", TensorView(data.data(), DType::F32, Device::cpu(), {64}), true);
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  // Through an intermediate value and a second operand: still both.
  Variant sum = generateVariant(ScoreMod("sum", [g](Expr s, Expr, Expr, Expr q, Expr kv) {
                                  return s + g[(q * 3 + kv) % 64];
                                }),
                                causal, {true});
  EXPECT_TRUE(sum.gradSitesMixQAndKv);
  Variant head = generateVariant(ScoreMod("head", [g](Expr s, Expr, Expr h, Expr, Expr) { return s * g[h]; }), causal,
                                 {true});
  EXPECT_EQ(head.gradSites, 1);
  EXPECT_FALSE(head.gradSitesMixQAndKv);
}

// waitForBackgroundCompiles returns only when compileBackwardAhead's compiles are done: the same kernels
// are then memory hits (no compile, no disk read, no wait on an in-flight build).
TEST(BackwardCompile, WaitForBackgroundCompilesJoinsThem) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant("softcap");
  AttentionShape shape;
  shape.D = shape.Dv = 64;
  DeviceInfo info;
  info.computeMajor = 8;
  BlockMask blocks = fullBlockMask(128, 128, Device::cpu());
  compileBackwardAhead(v.score, v.mask, DType::F16, shape, info, blocks);
  waitForBackgroundCompiles();
  std::shared_ptr<const Variant> variant = cachedVariant(v.score, v.mask, true);
  BwdKernelConfig config = backwardConfigFor(DType::F16, shape, info, blocks, false, *variant);
  const KernelCache::Stats before = KernelCache::global().stats();
  backwardKernel(nullptr, config, BwdKernelKind::Aux, variantTag(v.score, v.mask));
  backwardKernel(variant.get(), config, BwdKernelKind::DkDv, variantTag(v.score, v.mask));
  const KernelCache::Stats after = KernelCache::global().stats();
  EXPECT_EQ(after.compilations, before.compilations);
  EXPECT_EQ(after.diskHits, before.diskHits);
}

// A prob_mod with a learned tensor (Lazy Attention's offset, here beside ALiBi-free causal attention and a
// learned sink) through the sm90 dK/dV kernel: its gradient sums per thread (SiteCachedGrads) compile with
// the kernel, and the sink-gradient kernel is in the same program.
TEST(BackwardCompile, Sm90FamilyTakesAProbModAndASink) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  std::vector<float> offset(4, 0.5f), norm(4, 0.25f);
  CapturedTensor offsetT("offset", TensorView(offset.data(), DType::F32, Device::cpu(), {4}), true);
  CapturedTensor normT("norm_bias", TensorView(norm.data(), DType::F32, Device::cpu(), {4}), true);
  ExtraHooks extra;
  extra.sink = SinkMod("norm_bias", [normT](Expr, Expr h, Expr) { return normT[h]; });
  extra.prob = ProbMod("lazy_offset", [offsetT](Expr p, Expr, Expr h, Expr, Expr, Expr n) {
    return maximum(p - abs(offsetT[h] + 1.0f) / toFloat(n), 0.0f);
  });
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  Variant variant = generateVariant(ScoreMod::noop(), causal, {true}, extra);
  BwdKernelConfig config = defaultSm90BwdConfig(DType::BF16, 128, 128, 9, 0);
  config.sinkGrads = variant.facts.sinkHasTensorGrads;
  requireBwdSupported(config, 128, 128);
  CompileResult r = compileCuda(backwardSource(&variant, config, BwdKernelKind::DkDv), "bwd_lazy_sm90",
                                CompileOptions{"sm_90a", {}, false});
  ASSERT_FALSE(r.cubin.empty());
  EXPECT_NE(r.ptx.find(kBwdSinkKernelName), std::string::npos) << "no sink-gradient kernel";
  EXPECT_NE(r.ptx.find("atom.global.add.f32"), std::string::npos) << "no gradient reduction";
  const ResourceUsage& use = resourceUsage(r, kBwdDkDvKernelName);
  std::printf("[ resources ] lazy_offset      sm_90a bfloat16 D128 dkdv sm90 family: %3lld registers, %4lld B spill "
              "stores\n", static_cast<long long>(use.registers), static_cast<long long>(use.spillStoreBytes));
  EXPECT_LE(use.spillStoreBytes, kScalarSpillBytes);
}
