// FLEXJIT_FWD_CONFIG / FLEXJIT_BWD_CONFIG parsing, and how the forward's configuration follows the mask's
// cost and the overrides (NVRTC, no GPU).
#include <gtest/gtest.h>

#include <cstdlib>

#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "dsl/Error.h"
#include "examples/SeedVariants.h"
#include "runtime/ConfigOverrides.h"
#include "runtime/KernelBuild.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;

namespace {
struct ScopedEnv {
  const char* name;
  ScopedEnv(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
  ~ScopedEnv() { unsetenv(name); }
};
}  // namespace

TEST(ConfigOverrides, SetsNamedFieldsAndLeavesOthers) {
  int a = 1, b = 2;
  ScopedEnv env("FLEXJIT_TEST_CONFIG", "a=7,b=-3");
  applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}, {"b", &b}});
  EXPECT_EQ(a, 7);
  EXPECT_EQ(b, -3);
}

TEST(ConfigOverrides, UnsetOrEmptyChangesNothing) {
  int a = 1;
  applyConfigOverrides("FLEXJIT_TEST_CONFIG_UNSET", {{"a", &a}});
  ScopedEnv env("FLEXJIT_TEST_CONFIG", "");
  applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}});
  EXPECT_EQ(a, 1);
}

TEST(ConfigOverrides, BadEntriesNameTheVariableAndTheKeys) {
  int a = 1;
  for (const char* bad : {"c=1", "a", "a=x", "a=1x", "a="}) {
    ScopedEnv env("FLEXJIT_TEST_CONFIG", bad);
    try {
      applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}});
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("FLEXJIT_TEST_CONFIG: bad entry"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("among a"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(a, 1);
}

TEST(ForwardConfig, CostlyMasksGetNarrowSlicesAndOverridesApply) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  const FwdKernelConfig base = defaultFwdConfig(DType::BF16, 128, 128, 9, 0);
  ASSERT_EQ(base.subN, 64);
  examples::SeedVariant natten = examples::makeSeedVariant("natten");
  Variant nattenVariant = generateVariant(natten.score, natten.mask, {false});
  EXPECT_GT(nattenVariant.facts.maskOps, kCostlyMaskOps);
  EXPECT_EQ(forwardKernel(nattenVariant, base, "override_test_natten").config.subN, kCostlyMaskSubN);

  examples::SeedVariant causal = examples::makeSeedVariant("causal");
  Variant causalVariant = generateVariant(causal.score, causal.mask, {false});
  EXPECT_LE(causalVariant.facts.maskOps, kCostlyMaskOps);
  EXPECT_EQ(forwardKernel(causalVariant, base, "override_test_causal").config.subN, 64);
  {
    ScopedEnv env("FLEXJIT_FWD_CONFIG", "subN=32,decideSubTiles=1");
    ForwardBuild build = forwardKernel(causalVariant, base, "override_test_causal");
    EXPECT_EQ(build.config.subN, 32);
    EXPECT_TRUE(build.config.decideSubTiles);
  }
  ScopedEnv bad("FLEXJIT_FWD_CONFIG", "subN=24");
  EXPECT_THROW(forwardKernel(causalVariant, base, "override_test_causal"), Error);
}
