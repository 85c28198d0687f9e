// A kernel served from the disk cache carries the same ptxas resource report as the compiled one (the
// runtime picks tile configurations by it).
#include <gtest/gtest.h>

#include <filesystem>

#include "codegen/Variant.h"
#include "examples/SeedVariants.h"
#include "runtime/KernelCache.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;

TEST(KernelCacheResources, DiskHitKeepsTheResourceReport) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("flexjit-resources-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  examples::SeedVariant v = examples::makeSeedVariant("alibi");
  KernelRequest request{hookTestSource(generateVariant(v.score, v.mask)), "resources_probe", CompileOptions{"sm_80", {}, false}};
  KernelCacheConfig config;
  config.diskDir = dir.string();
  ResourceUsageMap compiled;
  {
    KernelCache first(config);
    CacheSource from;
    compiled = first.getOrCompile(request, &from).resources;
    EXPECT_EQ(from, CacheSource::Compiled);
  }
  KernelCache second(config);
  CacheSource from;
  const CompiledKernel& k = second.getOrCompile(request, &from);
  EXPECT_EQ(from, CacheSource::Disk);
  ASSERT_FALSE(compiled.empty());
  EXPECT_EQ(k.resources, compiled);
  EXPECT_NO_THROW(k.usage("flexjit_hook_test"));
  fs::remove_all(dir);
}
