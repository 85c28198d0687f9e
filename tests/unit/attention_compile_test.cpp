// Every seed variant's forward kernel compiles to CUBIN without a GPU, for the head dims the benchmarks use,
// in every family: the sm80 family for sm_80 and sm_90a (where it stays selectable) spilling no more than the
// runtime tolerates (kToleratedSpillBytes), and the sm90 family for sm_90a with no spills at all, its PTX
// holding wgmma and TMA copies.
#include <gtest/gtest.h>

#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "examples/SeedVariants.h"
#include "runtime/KernelBuild.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;

namespace {
class ForwardCompileTest : public ::testing::TestWithParam<std::string> {};
}  // namespace

TEST_P(ForwardCompileTest, CompilesForSm80AndSm90a) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant(GetParam());
  Variant variant = generateVariant(v.score, v.mask, {false});
  struct Target {
    KernelFamily family;
    int major, minor;
  };
  const Target targets[] = {{KernelFamily::Sm80, 8, 0}, {KernelFamily::Sm80, 9, 0}, {KernelFamily::Sm90, 9, 0}};
  const std::pair<DType, int> shapes[] = {{DType::BF16, 128}, {DType::F16, 64}};
  for (const Target& t : targets)
    for (auto [dtype, d] : shapes) {
      FwdKernelConfig config = t.family == KernelFamily::Sm90 ? defaultSm90FwdConfig(dtype, d, d, t.major, t.minor)
                                                              : defaultFwdConfig(dtype, d, d, t.major, t.minor);
      requireFwdSupported(config, 128, 128);
      // The configuration the runtime would launch (the sm80 family steps away from spilling tiles).
      ForwardBuild build = forwardKernel(variant, config, "compile_test_" + GetParam());
      EXPECT_FALSE(build.kernel->cubin.empty());
      EXPECT_EQ(build.kernel->arch, t.major >= 9 ? "sm_90a" : "sm_80");
      const ResourceUsage& use = build.kernel->usage(kFwdKernelName);
      std::printf("[ resources ] %-16s %-4s %-6s D%-3d S%-3d: %3d registers, %3d B spill stores\n", GetParam().c_str(),
                  familyName(t.family), build.kernel->arch.c_str(), d, build.config.subN,
                  static_cast<int>(use.registers), static_cast<int>(use.spillStoreBytes));
      const std::string what = GetParam() + " " + familyName(t.family) + " " + build.kernel->arch + " D" + std::to_string(d);
      if (t.family == KernelFamily::Sm90) {
        EXPECT_EQ(use.spillStoreBytes, 0) << what << " (blockN " << build.config.blockN << ")";
        EXPECT_NE(build.kernel->ptx.find("wgmma.mma_async"), std::string::npos) << what;
        EXPECT_NE(build.kernel->ptx.find("cp.async.bulk.tensor"), std::string::npos) << what;
      } else {
        EXPECT_LE(use.spillStoreBytes, kToleratedSpillBytes) << what << ": every candidate configuration spills more";
      }
      EXPECT_LE(use.registers, 255);
    }
}

INSTANTIATE_TEST_SUITE_P(Seeds, ForwardCompileTest, ::testing::ValuesIn(examples::seedVariantNames()),
                         [](const auto& info) { return info.param; });
