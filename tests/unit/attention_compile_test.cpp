// Every seed variant's forward kernel compiles to CUBIN for sm_80 and sm_90a without a GPU, for the head
// dims the benchmarks use, spilling no more than the runtime tolerates (kToleratedSpillBytes).
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
  const std::pair<int, int> arches[] = {{8, 0}, {9, 0}};
  const std::pair<DType, int> shapes[] = {{DType::BF16, 128}, {DType::F16, 64}};
  for (auto [major, minor] : arches)
    for (auto [dtype, d] : shapes) {
      FwdKernelConfig config = defaultFwdConfig(dtype, d, d, major, minor);
      requireFwdSupported(config, 128, 128);
      // The configuration the runtime would launch (it steps away from spilling tiles).
      ForwardBuild build = forwardKernel(variant, config, "compile_test_" + GetParam());
      EXPECT_FALSE(build.kernel->cubin.empty());
      EXPECT_EQ(build.kernel->arch, major >= 9 ? "sm_90a" : "sm_80");
      const ResourceUsage& use = build.kernel->usage(kFwdKernelName);
      std::printf("[ resources ] %-16s %-6s D%-3d S%-3d: %3d registers, %3d B spill stores\n", GetParam().c_str(),
                  build.kernel->arch.c_str(), d, build.config.subN, static_cast<int>(use.registers),
                  static_cast<int>(use.spillStoreBytes));
      EXPECT_LE(use.spillStoreBytes, kToleratedSpillBytes)
          << GetParam() << " " << build.kernel->arch << " D" << d << ": every candidate configuration spills more";
      EXPECT_LE(use.registers, 255);
    }
}

INSTANTIATE_TEST_SUITE_P(Seeds, ForwardCompileTest, ::testing::ValuesIn(examples::seedVariantNames()),
                         [](const auto& info) { return info.param; });
