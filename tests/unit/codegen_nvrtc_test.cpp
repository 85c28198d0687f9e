// Every seed variant's emitted hooks, wrapped in the hook-test kernel, compile with NVRTC to CUBIN for
// sm_80 and sm_90a on a machine without a GPU.
#include <gtest/gtest.h>

#include "codegen/Variant.h"
#include "examples/SeedVariants.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;

namespace {

class HookNvrtcTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(HookNvrtcTest, CompilesForSm80AndSm90a) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  examples::SeedVariant v = examples::makeSeedVariant(GetParam());
  std::string source = hookTestSource(generateVariant(v.score, v.mask));
  EXPECT_EQ(source.find("#include \""), std::string::npos) << "the assembled source must be self-contained";
  for (const char* arch : {"sm_80", "sm_90a"}) {
    CompileResult r = compileCuda(source, "hook_test_" + GetParam(), CompileOptions{arch, {}, false});
    EXPECT_FALSE(r.cubin.empty()) << arch;
    EXPECT_NE(r.ptx.find("flexjit_hook_test"), std::string::npos) << arch;
    const ResourceUsage& use = resourceUsage(r, "flexjit_hook_test");
    EXPECT_EQ(use.spillStoreBytes, 0) << arch << ": hooks should not spill";
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, HookNvrtcTest, ::testing::ValuesIn(examples::seedVariantNames()),
                         [](const auto& info) { return info.param; });

TEST(HookNvrtc, TorchMathOpsCompile) {
  // The CUDA math functions the newer ops emit (sinf, erff, powf, rintf ...) and their interval forms (double
  // sin / pow in the block-mask code) are NVRTC builtins: the hooks need no header.
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  CapturedTensor w("w", DType::F32, 1, /*requiresGrad=*/true);
  ScoreMod score("math", [&](Expr s, Expr, Expr h, Expr q, Expr kv) {
    Expr x = s * w[h];
    return sin(x) + cos(s) + tan(s * 0.1f) + atan(x) + erf(s) + log1p(abs(s)) + expm1(s * 0.1f) + round(s) +
           trunc(x) + pow(abs(s) + 1.0f, x) + fmod(s, 1.5f) + toFloat(fmod(q, kv + 1));
  });
  MaskMod mask("blocks", [](Expr, Expr, Expr q, Expr kv) { return ((q >> 6) == (kv >> 6)) | ((kv << 1) < q); });
  std::string source = hookTestSource(generateVariant(score, mask));
  for (const char* used : {"fj::sinR(", "fj::powR(", "fj::ivSin(", "fj::ivPow(", "fj::shrI(", "fj::ivShr("})
    EXPECT_NE(source.find(used), std::string::npos) << used;
  CompileResult r = compileCuda(source, "hook_test_math", CompileOptions{"sm_80", {}, false});
  EXPECT_FALSE(r.cubin.empty());
}
