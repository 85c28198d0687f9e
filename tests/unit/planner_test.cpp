// The forward planner: which family and tiles a problem gets, how the mask's cost and FLEXJIT_FWD_CONFIG
// change them, and that what it plans compiles (NVRTC, no GPU).
#include <gtest/gtest.h>

#include <cstdlib>

#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "dsl/Error.h"
#include "examples/SeedVariants.h"
#include "runtime/KernelBuild.h"
#include "runtime/Nvrtc.h"
#include "runtime/Planner.h"

#include "runtime_test_support.h"

using namespace flexjit;

namespace {

using flexjit::testing::ScopedEnv;

ForwardProblem problem(int major, int minor, int d = 128) {
  ForwardProblem p;
  p.archMajor = major;
  p.archMinor = minor;
  p.headDim = p.headDimV = d;
  return p;
}

ModFacts factsOf(const char* seed) {
  examples::SeedVariant v = examples::makeSeedVariant(seed);
  return generateVariant(v.score, v.mask, {false}).facts;
}

}  // namespace

TEST(Planner, HopperGetsTheSm90FamilyWhereItApplies) {
  for (int d : {64, 128, 256}) {
    const ForwardPlan plan = planForward(problem(9, 0, d));
    EXPECT_EQ(plan.config.family, KernelFamily::Sm90) << d << ": " << plan.reason;
    EXPECT_EQ(plan.config.blockM, 128);
    EXPECT_EQ(plan.config.numWarps, 12);
    EXPECT_EQ(plan.config.blockN, d == 256 ? 64 : 128);
  }
  // Head dims the sm90 tiles do not take, BlockMask blocks its 128 x 128 tiles do not divide, layouts TMA
  // cannot describe and drivers without tensor maps all fall back to sm80, saying why.
  ForwardProblem odd = problem(9, 0, 96);
  ForwardProblem smallBlocks = problem(9, 0);
  smallBlocks.maskBlockQ = smallBlocks.maskBlockKV = 64;
  ForwardProblem broadcast = problem(9, 0);
  broadcast.tmaDescribable = false;
  ForwardProblem oldDriver = problem(9, 0);
  oldDriver.driverHasTensorMaps = false;
  for (const ForwardProblem& p : {odd, smallBlocks, broadcast, oldDriver}) {
    const ForwardPlan plan = planForward(p);
    EXPECT_EQ(plan.config.family, KernelFamily::Sm80) << plan.reason;
    EXPECT_FALSE(sm90ForwardUnsupported(p).empty());
    EXPECT_NE(plan.reason.find("sm80 family: "), std::string::npos) << plan.reason;
  }
  for (auto [major, minor] : {std::pair{8, 0}, {8, 6}, {8, 9}, {12, 0}})
    EXPECT_EQ(planForward(problem(major, minor)).config.family, KernelFamily::Sm80) << major << minor;
}

TEST(Planner, CostlyMasksGetNarrowSm80Slices) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  ForwardProblem natten = problem(8, 0);
  natten.facts = factsOf("natten");
  EXPECT_GT(natten.facts.maskOps, kCostlyMaskOps);
  EXPECT_EQ(planForward(natten).config.subN, kCostlyMaskSubN);
  ForwardProblem causal = problem(8, 0);
  causal.facts = factsOf("causal");
  EXPECT_LE(causal.facts.maskOps, kCostlyMaskOps);
  EXPECT_EQ(planForward(causal).config.subN, 64);
}

TEST(Planner, OverridesPickTheFamilyAndItsTunables) {
  {
    ScopedEnv env("FLEXJIT_FWD_CONFIG", "family=80,subN=32,decideSubTiles=1");
    const FwdKernelConfig c = planForward(problem(9, 0)).config;
    EXPECT_EQ(c.family, KernelFamily::Sm80);
    EXPECT_EQ(c.subN, 32);
    EXPECT_TRUE(c.decideSubTiles);
  }
  {
    ScopedEnv env("FLEXJIT_FWD_CONFIG", "stages=3");
    const FwdKernelConfig c = planForward(problem(9, 0)).config;
    EXPECT_EQ(c.family, KernelFamily::Sm90);
    EXPECT_EQ(c.stages, 3);
  }
  // Each failure names the variable and what to do: a key of the other family, a value out of range, a
  // family that cannot run the problem, a family that does not exist.
  struct Bad {
    const char* env;
    int major;
    const char* says;
  };
  for (const Bad& bad : {Bad{"subN=32", 9, "among decode, family, stages"}, Bad{"stages=3", 8, "among decideSubTiles"},
                         Bad{"subN=24", 8, "invalid tiles"}, Bad{"stages=9", 9, "stages 2-4"},
                         // 4294967328 would have been subN=32 after truncation to int.
                         Bad{"subN=4294967328", 8, "must fit in"},
                         Bad{"family=90", 8, "family=90 cannot run"}, Bad{"family=70", 9, "not a kernel family"}}) {
    ScopedEnv env("FLEXJIT_FWD_CONFIG", bad.env);
    try {
      planForward(problem(bad.major, 0));
      ADD_FAILURE() << bad.env << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("FLEXJIT_FWD_CONFIG"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(bad.says), std::string::npos) << bad.env << ": " << e.what();
    }
  }
}

TEST(Planner, TheConfigurationIsOneFieldList) {
  FwdKernelConfig a = defaultSm90FwdConfig(DType::BF16, 128, 128, 9, 0), b = a;
  EXPECT_EQ(a, b);
  b.stages = 3;
  EXPECT_FALSE(a == b);
  EXPECT_NE(a.describe(), b.describe());
  EXPECT_NE(a.describe().find("family=sm90"), std::string::npos) << a.describe();
  EXPECT_NE(a.describe().find("stages=2"), std::string::npos) << a.describe();
  EXPECT_NE(fwdInstantiationSource(a), fwdInstantiationSource(b));
}

TEST(Planner, ThePlannedSm90KernelCompilesWithoutSpills) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant causal = examples::makeSeedVariant("causal");
  Variant variant = generateVariant(causal.score, causal.mask, {false});
  ForwardProblem p = problem(9, 0);
  p.facts = variant.facts;
  ForwardBuild build = forwardKernel(variant, planForward(p).config, "planner_test_causal");
  EXPECT_EQ(build.config.family, KernelFamily::Sm90);
  EXPECT_EQ(build.spillBytes, 0);
  EXPECT_NE(build.kernel->ptx.find("wgmma.mma_async"), std::string::npos);
  EXPECT_NE(build.kernel->ptx.find("cp.async.bulk.tensor"), std::string::npos);
}

// The backward's family rules: the sm90 dK/dV kernel where everything it needs holds, and each reason it
// does not, in words; FLEXJIT_BWD_CONFIG=family= picks or refuses.
TEST(Planner, TheSm90BackwardSaysWhyItCannotRun) {
  BackwardProblem p;
  EXPECT_EQ(sm90BackwardUnsupported(p), "");
  auto why = [&](auto change) {
    BackwardProblem q = p;
    change(q);
    return sm90BackwardUnsupported(q);
  };
  EXPECT_NE(why([](BackwardProblem& q) { q.archMajor = 8; }).find("not sm_90"), std::string::npos);
  // Runs (and is the planner's choice for): deterministic mode (dK/dV here, then the dQ kernel),
  // captured-tensor gradients indexed by q or kv alone (global atomics); a prob_mod too (nothing in the
  // problem tells it apart).
  EXPECT_EQ(why([](BackwardProblem& q) { q.deterministic = true; }), "");
  EXPECT_EQ(why([](BackwardProblem& q) { q.gradSites = 2; }), "");
  {
    BackwardProblem q = p;
    q.deterministic = true;
    q.gradSites = 2;
    EXPECT_TRUE(planSm90Backward(q));
  }
  EXPECT_NE(why([](BackwardProblem& q) { q.gradSites = 1; q.gradSitesMixQAndKv = true; }).find("windows"),
            std::string::npos);
  EXPECT_NE(why([](BackwardProblem& q) { q.tmaDescribable = false; }).find("TMA"), std::string::npos);
  EXPECT_NE(why([](BackwardProblem& q) { q.headDim = q.headDimV = 96; }).find("head dims 64 and 128"),
            std::string::npos);
  EXPECT_NE(why([](BackwardProblem& q) { q.maskBlockKV = 64; }).find("multiple of the kernel tiles"),
            std::string::npos);
  EXPECT_NE(why([](BackwardProblem& q) { q.accumRows = 1ll << 31; }).find("int32"), std::string::npos);
  EXPECT_EQ(why([](BackwardProblem& q) { q.headDim = q.headDimV = 64; q.maskBlockQ = 64; }), "");
  {
    ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string("family=90,stages=1"));
    EXPECT_EQ(requestedBackwardFamily(), 90);
  }
  {
    ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string("family=70"));
    EXPECT_THROW(requestedBackwardFamily(), Error);
  }
  ScopedEnv env("FLEXJIT_BWD_CONFIG", std::nullopt);
  EXPECT_EQ(requestedBackwardFamily(), 0);
}

// A score_mod that loads a tensor per element (relative_bias's bias[h][q - kv]; gated_decay's G[q] - G[kv]
// are row and column loads, hoisted by the split) starts the sm90 forward at kv tiles of 64: at 128 it
// spilled and the spill search compiled twice.
TEST(Planner, PerElementLoadsStartTheSm90ForwardAtNarrowTiles) {
  examples::SeedVariant rel = examples::makeSeedVariant("relative_bias");
  examples::SeedVariant gated = examples::makeSeedVariant("gated_decay");
  const Variant relV = generateVariant(rel.score, rel.mask, {false});
  const Variant gatedV = generateVariant(gated.score, gated.mask, {false});
  EXPECT_GT(relV.scoreElementLoads, 0);
  EXPECT_EQ(gatedV.scoreElementLoads, 0);
  const ForwardPlan relPlan = planContiguousForward(DType::BF16, 128, 128, 9, 0, relV);
  const ForwardPlan gatedPlan = planContiguousForward(DType::BF16, 128, 128, 9, 0, gatedV);
  EXPECT_EQ(relPlan.config.family, KernelFamily::Sm90);
  EXPECT_EQ(relPlan.config.blockN, 64) << relPlan.reason;
  EXPECT_EQ(gatedPlan.config.blockN, 128) << gatedPlan.reason;
  EXPECT_NE(relPlan.reason.find("kv tiles of 64"), std::string::npos);
}
