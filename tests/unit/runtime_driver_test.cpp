// The run-time-loaded CUDA driver (runtime/CudaDriver.h, Device.h, Module.h). Without a driver these
// check that everything fails with a helpful flexjit::Error; with one, a smoke test compiles, loads and
// launches a kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "dsl/Error.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/KernelCache.h"
#include "runtime/Module.h"
#include "runtime_test_support.h"

namespace flexjit {
namespace {

TEST(RuntimeDriver, MissingDriverGivesHelpfulError) {
  if (CudaDriver::available()) GTEST_SKIP() << "a CUDA driver is present";
  try {
    CudaDriver::get();
    FAIL() << "expected flexjit::Error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_EQ(message.rfind("no CUDA driver found (libcuda.so.1 could not be loaded: ", 0), 0u) << message;
    EXPECT_NE(message.find("flexjit's GPU path needs an NVIDIA driver — use the CPU path or run on a GPU machine"),
              std::string::npos)
        << message;
  }
  // Asking again gives the same answer (the failed load is remembered, not retried into a crash).
  EXPECT_FALSE(CudaDriver::available());
  EXPECT_THROW(CudaDriver::get(), Error);
}

TEST(RuntimeDriver, DeviceHelpersThrowWithoutDriver) {
  if (CudaDriver::available()) GTEST_SKIP() << "a CUDA driver is present";
  EXPECT_THROW(deviceInfo(0), Error);
  EXPECT_THROW(ScopedContext(0), Error);
  EXPECT_THROW(DeviceBuffer(16), Error);
  CompiledKernel kernel;
  kernel.name = "k";
  EXPECT_THROW(ModuleCache::global().load(kernel), Error);
  DeviceBuffer empty;  // default-constructed buffers need no driver, even to destroy
  EXPECT_EQ(empty.get(), 0u);
}

TEST(RuntimeDriver, DeviceInfoDescribesDeviceZero) {
  if (!CudaDriver::available()) GTEST_SKIP() << "no CUDA driver";
  DeviceInfo info = deviceInfo(0);
  EXPECT_FALSE(info.name.empty());
  EXPECT_GE(info.computeMajor, 1);
  EXPECT_GT(info.smCount, 0);
  EXPECT_GT(info.maxSharedMemoryPerBlockOptin, 0);
  EXPECT_GT(info.l2CacheBytes, 0);
  std::printf("device 0: %s, cc %d.%d, %d SMs, %d B smem opt-in, %d B L2, arch %s, driver CUDA %s\n",
              info.name.c_str(), info.computeMajor, info.computeMinor, info.smCount,
              info.maxSharedMemoryPerBlockOptin, info.l2CacheBytes, info.arch.c_str(),
              cudaVersionText(CudaDriver::get().driverVersion()).c_str());
  EXPECT_THROW(deviceInfo(CudaDriver::get().deviceCount()), Error);
}

TEST(RuntimeDriver, CompilesLoadsAndLaunchesOnGpu) {
  if (!CudaDriver::available()) GTEST_SKIP() << "no CUDA driver";
  DeviceInfo info = deviceInfo(0);
  if (info.arch.empty()) GTEST_SKIP() << "GPU older than compute capability 8.0";
  testing::TempDir dir;
  KernelCache cache(KernelCacheConfig{dir.path(), {}, {}});
  const CompiledKernel& kernel = cache.getOrCompile({testing::kTinyKernelSource, "tiny_scale", {info.arch, {}, false}});
  ScopedContext context(0);
  ModuleCache modules;
  constexpr int kDynamicShared = 64 * 1024;  // above the 48 KiB default, so the attribute must be raised
  LoadedKernel loaded = modules.load(kernel, kDynamicShared);
  EXPECT_GE(loaded.maxDynamicSharedBytes, kDynamicShared);
  EXPECT_EQ(loaded.staticSharedBytes, kernel.usage().staticSharedBytes);

  constexpr int kN = 127;  // odd, below one block
  std::vector<float> host(kN);
  for (int i = 0; i < kN; ++i) host[i] = static_cast<float>(i);
  DeviceBuffer buffer(kN * sizeof(float));
  buffer.upload(host.data(), kN * sizeof(float));
  PointerInfo where = CudaDriver::get().pointerInfo(buffer.get());
  EXPECT_TRUE(where.isDevice);
  EXPECT_EQ(where.deviceOrdinal, 0);
  EXPECT_FALSE(CudaDriver::get().pointerInfo(reinterpret_cast<CUdeviceptr>(host.data())).isDevice);

  CUdeviceptr pointer = buffer.get();
  int n = kN;
  void* params[] = {&pointer, &n};
  CudaDriver::get().launchKernel(loaded.function, Dim3{1, 1, 1}, Dim3{128, 1, 1}, 0, nullptr, params);
  CudaDriver::get().contextSynchronize();
  std::vector<float> out(kN);
  buffer.download(out.data(), kN * sizeof(float));
  // tiny_scale reads through a scrambled local array; just check every element was written finite.
  for (float v : out) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace flexjit
