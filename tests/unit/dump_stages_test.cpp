// FLEXJIT_DUMP_DIR: generating a variant writes its MLIR stages and hooks; compiling writes .cu and .ptx.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "examples/SeedVariants.h"
#include "runtime/Captures.h"
#include "runtime/KernelCache.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;

TEST(DumpStages, WritesMlirHooksCudaAndPtx) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("flexjit-dump-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  setenv("FLEXJIT_DUMP_DIR", dir.c_str(), 1);
  // A mod no other test uses, so the variant cache misses and generation happens here.
  MaskMod odd("dump_test_mask", [](Expr, Expr, Expr q, Expr kv) { return (q - kv) % 7 != 3; });
  ScoreMod sm("dump_test_score", [](Expr s, Expr, Expr, Expr q, Expr) { return s * 0.5f + toFloat(q) * 1e-3f; });
  std::shared_ptr<const Variant> v = cachedVariant(sm, odd, true);
  KernelCache cache(KernelCacheConfig{});
  cache.getOrCompile(KernelRequest{hookTestSource(*v), "dump_test_hooks", CompileOptions{"sm_80", {}, false}});
  unsetenv("FLEXJIT_DUMP_DIR");
  std::string tag = variantTag(sm, odd);
  for (const std::string& f : {tag + ".imported.mlir", tag + ".differentiated.mlir", tag + ".simplified.mlir", tag + ".hooks.cu",
                               std::string("dump_test_hooks.cu"), std::string("dump_test_hooks.ptx")})
    EXPECT_TRUE(fs::exists(dir / f)) << "missing " << (dir / f);
  fs::remove_all(dir);
}
