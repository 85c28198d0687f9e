// FLEXJIT_FWD_CONFIG / FLEXJIT_BWD_CONFIG parsing and range checks, and backward overrides that cannot run
// (the forward planner's use of the overrides: planner_test.cpp).
#include <gtest/gtest.h>

#include <cstdlib>

#include "codegen/Variant.h"
#include "dsl/Error.h"
#include "examples/SeedVariants.h"
#include "runtime/AttentionGpu.h"
#include "runtime/ConfigOverrides.h"

#include "runtime_test_support.h"

using namespace flexjit;

namespace {
using flexjit::testing::ScopedEnv;

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

TEST(ConfigOverrides, IntegersAreRangeCheckedNotTruncated) {
  EXPECT_EQ(parseInteger("128", 16, 256), 128);
  EXPECT_EQ(parseInteger("-3", -5, 5), -3);
  EXPECT_EQ(parseInteger("9223372036854775807", 0, INT64_MAX), INT64_MAX);
  for (const char* bad : {"4294967424", "257", "15", "", " 128", "128 ", "1e3", "0x80", "99999999999999999999"})
    EXPECT_EQ(parseInteger(bad, 16, 256), std::nullopt) << bad;
  int a = 1;
  // 4294967328 would have been 32 after truncation to int.
  for (const char* bad : {"a=4294967328", "a=2147483648", "a=-2147483649"}) {
    ScopedEnv env("FLEXJIT_TEST_CONFIG", bad);
    try {
      applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}});
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("must fit in [-2147483648, 2147483647]"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(a, 1);
  ScopedEnv env("FLEXJIT_TEST_CONFIG", "a=2147483647");
  applyConfigOverrides("FLEXJIT_TEST_CONFIG", {{"a", &a}});
  EXPECT_EQ(a, INT32_MAX);
}

// Backward overrides that make the configuration impossible (zero or huge tiles, odd warp counts) are
// reported as the override's fault, never as a crash (blockM=0 divided by zero) or a BLOCK_SIZE problem.
TEST(BackwardConfig, ImpossibleOverridesNameTheOverride) {
  examples::SeedVariant rel = examples::makeSeedVariant("relative_bias");  // has gradient sites (windows)
  Variant variant = generateVariant(rel.score, rel.mask, {true});
  ASSERT_GT(variant.gradSites, 0);
  AttentionShape shape;
  shape.D = shape.Dv = 128;
  DeviceInfo info;
  info.computeMajor = 9;
  BlockMask blocks = fullBlockMask(256, 256, Device::cpu());
  EXPECT_NO_THROW(backwardConfigFor(DType::BF16, shape, info, blocks, false, variant));
  for (const char* bad : {"blockM=0", "dqBlockM=0", "blockN=0", "warps=0", "warps=3", "dqWarps=0", "sdpWarpsM=0",
                          "blockN=1073741824", "gradWindows=1,gradWindowFloats=536870912", "warps=1073741824"}) {
    ScopedEnv env("FLEXJIT_BWD_CONFIG", bad);
    try {
      backwardConfigFor(DType::BF16, shape, info, blocks, false, variant);
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_NE(message.find(std::string("FLEXJIT_BWD_CONFIG=") + bad + ": the overridden configuration cannot run"),
                std::string::npos) << message;
      EXPECT_EQ(message.find("BLOCK_SIZE"), std::string::npos) << message;
    }
  }
}

// The sm90 dK/dV kernel is the default where it can run; FLEXJIT_BWD_CONFIG=family=90 insists on it, takes only its own tunable
// (stages) and names why it cannot run a problem (captured-tensor gradients).
TEST(BackwardConfig, TheSm90FamilyOnRequest) {
  examples::SeedVariant causal = examples::makeSeedVariant("causal");
  Variant plain = generateVariant(causal.score, causal.mask, {true});
  examples::SeedVariant rel = examples::makeSeedVariant("relative_bias");
  Variant withGrads = generateVariant(rel.score, rel.mask, {true});
  AttentionShape shape;
  shape.D = shape.Dv = 128;
  DeviceInfo info;
  info.computeMajor = 9;
  BlockMask blocks = fullBlockMask(256, 256, Device::cpu());
  // The default on sm_90 where it applies; family=80 asks for the mma.sync kernels.
  EXPECT_EQ(backwardConfigFor(DType::BF16, shape, info, blocks, false, plain).family, KernelFamily::Sm90);
  EXPECT_EQ(backwardConfigFor(DType::BF16, shape, info, blocks, false, withGrads).family, KernelFamily::Sm80);
  {
    ScopedEnv sm80("FLEXJIT_BWD_CONFIG", std::string("family=80"));
    EXPECT_EQ(backwardConfigFor(DType::BF16, shape, info, blocks, false, plain).family, KernelFamily::Sm80);
  }
  ScopedEnv env("FLEXJIT_BWD_CONFIG", std::string("family=90"));
  const BwdKernelConfig c = backwardConfigFor(DType::BF16, shape, info, blocks, false, plain);
  EXPECT_EQ(c.family, KernelFamily::Sm90);
  EXPECT_EQ(c.blockM, 64);
  EXPECT_EQ(c.blockN, 128);
  EXPECT_NE(describeBwdConfig(c).find("family=sm90"), std::string::npos);
  auto message = [&](const Variant& v, bool deterministic) {
    try {
      backwardConfigFor(DType::BF16, shape, info, blocks, deterministic, v);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(withGrads, false).find("family=90 cannot run this backward: captured tensors"), std::string::npos)
      << "relative_bias's bias[h][q - kv] mixes q and kv";
  // Deterministic mode: the sm90 dK/dV kernel without dQ, then the sm80 family's dQ kernel (by default too,
  // since its GPU test passed on the H200).
  {
    ScopedEnv unset("FLEXJIT_BWD_CONFIG", std::nullopt);
    EXPECT_EQ(backwardConfigFor(DType::BF16, shape, info, blocks, true, plain).family, KernelFamily::Sm90);
  }
  const BwdKernelConfig det = backwardConfigFor(DType::BF16, shape, info, blocks, true, plain);
  EXPECT_EQ(det.family, KernelFamily::Sm90);
  EXPECT_FALSE(det.atomicDq);
  EXPECT_GT(bwdDqSharedMemoryBytes(det), 0);
  {
    ScopedEnv stages("FLEXJIT_BWD_CONFIG", std::string("family=90,stages=3"));
    const int bytes = bwdDkDvSharedMemoryBytes(backwardConfigFor(DType::BF16, {1, 1, 1, 128, 128, 64, 64}, info,
                                                                 blocks, false, plain));
    EXPECT_GT(bytes, 0);
    EXPECT_NE(message(plain, false).find("shared memory"), std::string::npos) << "D128 with 3 stages fits no GPU";
  }
  // The schedules measured slower on the H200 (2026-12-02) are gone, and their keys say so.
  for (const char* removed : {"family=90,pingpong=1", "family=90,dqSplitN=1"}) {
    ScopedEnv gone("FLEXJIT_BWD_CONFIG", std::string(removed));
    EXPECT_NE(message(plain, false).find("bad entry '" + std::string(removed).substr(10) + "'"), std::string::npos)
        << message(plain, false);
  }
  ScopedEnv sm80Key("FLEXJIT_BWD_CONFIG", std::string("family=90,blockM=32"));
  EXPECT_NE(message(plain, false).find("blockM"), std::string::npos);
}
