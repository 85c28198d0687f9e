// NVRTC loading and compilation (runtime/Nvrtc.h), ptxas report parsing (runtime/ResourceUsage.h) and
// arch naming (runtime/Arch.h). Runs on machines without a GPU: NVRTC needs none.
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "dsl/Error.h"
#include "runtime/Arch.h"
#include "runtime/Nvrtc.h"
#include "runtime/ResourceUsage.h"
#include "runtime_test_support.h"

namespace flexjit {
namespace {

using testing::kHopperOnlySource;
using testing::kTinyKernelSource;

#define SKIP_WITHOUT_NVRTC() \
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC not found"

/// One sm_80 compile shared by the tests of this file (NVRTC takes ~0.1-0.5 s per compile).
const CompileResult& tinySm80() {
  static const CompileResult result = compileCuda(kTinyKernelSource, "tiny_scale", CompileOptions{"sm_80", {}, false});
  return result;
}

TEST(RuntimeArch, MapsComputeCapabilityToTarget) {
  EXPECT_EQ(archForDevice(8, 0), "sm_80");
  EXPECT_EQ(archForDevice(8, 6), "sm_86");
  EXPECT_EQ(archForDevice(8, 9), "sm_89");
  EXPECT_EQ(archForDevice(9, 0), "sm_90a");
  EXPECT_EQ(archForDevice(10, 0), "sm_100a");
  EXPECT_EQ(archForDevice(12, 0), "sm_120");
}

TEST(RuntimeArch, RejectsPreAmpere) {
  try {
    archForDevice(7, 5);
    FAIL() << "expected flexjit::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "flexjit needs compute capability 8.0 or newer (Ampere); this GPU is 7.5");
  }
}

TEST(RuntimeArch, ParsesTargetNames) {
  ArchName a = parseArch("sm_90a");
  EXPECT_EQ(a.number, 90);
  EXPECT_TRUE(a.real);
  EXPECT_TRUE(a.archSpecific);
  ArchName c = parseArch("compute_80");
  EXPECT_EQ(c.number, 80);
  EXPECT_FALSE(c.real);
  EXPECT_FALSE(c.archSpecific);
  for (const char* bad : {"", "sm_", "sm90", "sm_9x", "compute_", "gfx90a", "sm_90ab"})
    EXPECT_THROW(parseArch(bad), Error) << bad;
}

TEST(RuntimeNvrtc, ReportsVersion) {
  SKIP_WITHOUT_NVRTC();
  std::string version = nvrtcVersion();
  EXPECT_NE(version.find('.'), std::string::npos) << version;
  EXPECT_FALSE(nvrtcLibraryPath().empty());
  std::printf("NVRTC %s from %s\n", version.c_str(), nvrtcLibraryPath().c_str());
}

TEST(RuntimeNvrtc, CompilesCubinForSm80WithResourceUsage) {
  SKIP_WITHOUT_NVRTC();
  const CompileResult& r = tinySm80();
  EXPECT_FALSE(r.cubin.empty());
  ASSERT_GE(r.cubin.size(), 4u);
  EXPECT_EQ(std::string(r.cubin.data() + 1, 3), "ELF");
  EXPECT_NE(r.ptx.find(".entry tiny_scale"), std::string::npos);
  const ResourceUsage& u = resourceUsage(r, "tiny_scale");
  EXPECT_GT(u.registers, 0);
  EXPECT_EQ(u.staticSharedBytes, 128 * 4);
  EXPECT_GT(u.stackFrameBytes, 0);  // the local array lives on the stack
  EXPECT_EQ(u.spillStoreBytes, 0);
  EXPECT_GT(u.constantBytes, 0);
  std::printf("%s", formatResourceUsage(r.resources).c_str());
}

TEST(RuntimeNvrtc, CompilesArchSpecificCodeForSm90aOnly) {
  SKIP_WITHOUT_NVRTC();
  CompileResult r = compileCuda(kHopperOnlySource, "hopper_only", CompileOptions{"sm_90a", {}, false});
  EXPECT_FALSE(r.cubin.empty());
  EXPECT_NE(r.ptx.find("setmaxnreg"), std::string::npos);
  EXPECT_GT(resourceUsage(r, "hopper_only").registers, 0);
  // The same source is illegal on sm_80: proves the sm_90a target really was used.
  testing::TempDir dump;
  testing::ScopedEnv env("FLEXJIT_DUMP_DIR", dump.path());
  EXPECT_THROW(compileCuda(kHopperOnlySource, "hopper_only", CompileOptions{"sm_80", {}, false}), Error);
}

TEST(RuntimeNvrtc, CompilesPtxOnlyForComputeTarget) {
  SKIP_WITHOUT_NVRTC();
  CompileResult r = compileCuda(kTinyKernelSource, "tiny_scale", CompileOptions{"compute_90a", {}, true});
  EXPECT_TRUE(r.cubin.empty());
  EXPECT_NE(r.ptx.find(".target sm_90a"), std::string::npos);
  EXPECT_TRUE(r.resources.empty());
  EXPECT_THROW(resourceUsage(r, "tiny_scale"), Error);
}

TEST(RuntimeNvrtc, SyntaxErrorCarriesLogAndDumpedSource) {
  SKIP_WITHOUT_NVRTC();
  testing::TempDir dump;
  testing::ScopedEnv env("FLEXJIT_DUMP_DIR", dump.path());
  const std::string source = "extern \"C\" __global__ void broken(float* x) { x[0] = undeclared_thing; }\n";
  try {
    compileCuda(source, "broken", CompileOptions{"sm_80", {}, false});
    FAIL() << "expected flexjit::Error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("'broken'"), std::string::npos) << message;
    EXPECT_NE(message.find("undeclared_thing"), std::string::npos) << message;  // the NVRTC log
    size_t at = message.find(dump.path() + "/failed/broken-");
    ASSERT_NE(at, std::string::npos) << message;
    std::string path = message.substr(at, message.find('\n', at) - at);
    ASSERT_TRUE(std::filesystem::exists(path)) << path;
    std::ifstream in(path);
    std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(saved, source);
  }
}

TEST(RuntimeNvrtc, FailedSourceGoesToTempDirWithoutDumpDir) {
  SKIP_WITHOUT_NVRTC();
  testing::ScopedEnv env("FLEXJIT_DUMP_DIR", std::nullopt);
  try {
    compileCuda("this is not C++", "not_cpp", CompileOptions{"sm_80", {}, false});
    FAIL() << "expected flexjit::Error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("/failed/not_cpp-"), std::string::npos) << message;
    EXPECT_NE(message.find("flexjit-"), std::string::npos) << message;
  }
}

/// Set in the child process that ExplicitLibraryIsTheOnlyCandidate starts (NVRTC loads once per process, so
/// a different FLEXJIT_NVRTC_LIBRARY needs a fresh process).
constexpr const char* kChildEnv = "FLEXJIT_TEST_NVRTC_CHILD";
constexpr const char* kBogusLibrary = "/nonexistent/flexjit-test/libnvrtc.so.13";

TEST(RuntimeNvrtc, ExplicitLibraryIsTheOnlyCandidate) {
  if (std::getenv(kChildEnv) != nullptr) {
    // The child: the bogus explicit library must not fall back to the toolkit one.
    EXPECT_FALSE(nvrtcAvailable());
    try {
      nvrtcVersion();
      FAIL() << "expected flexjit::Error";
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_NE(message.find(kBogusLibrary), std::string::npos) << message;
      EXPECT_NE(message.find("FLEXJIT_NVRTC_LIBRARY"), std::string::npos) << message;
      EXPECT_EQ(message.find("/usr/local/cuda/lib64"), std::string::npos) << message;
    }
    return;
  }
  std::string filter = "--gtest_filter=RuntimeNvrtc.ExplicitLibraryIsTheOnlyCandidate";
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  char* argv[] = {self.data(), filter.data(), nullptr};
  testing::ScopedEnv child(kChildEnv, "1");
  testing::ScopedEnv library("FLEXJIT_NVRTC_LIBRARY", kBogusLibrary);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, environ), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child process's checks failed";
}

TEST(RuntimeNvrtc, RejectsMalformedArch) {
  try {
    compileCuda(kTinyKernelSource, "tiny_scale", CompileOptions{"hopper", {}, false});
    FAIL() << "expected flexjit::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid GPU architecture 'hopper'"), std::string::npos) << e.what();
  }
}

TEST(RuntimeNvrtc, OptionsHoldArchAndFixedFlags) {
  std::vector<std::string> o = nvrtcOptions(CompileOptions{"sm_90a", {"-DFOO=1"}, true});
  auto has = [&](const std::string& s) { return std::find(o.begin(), o.end(), s) != o.end(); };
  EXPECT_TRUE(has("-arch=sm_90a"));
  EXPECT_TRUE(has("-std=c++17"));
  EXPECT_TRUE(has("-default-device"));
  EXPECT_TRUE(has("--ptxas-options=-v"));
  EXPECT_TRUE(has("-lineinfo"));
  EXPECT_EQ(o.back(), "-DFOO=1");
  EXPECT_FALSE(has("--use_fast_math"));
}

TEST(RuntimeResourceUsage, ParsesPtxasReportPerEntry) {
  const std::string log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Function properties for helper\n"
      "ptxas         .     64 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n"
      "ptxas info    : Compiling entry function 'a' for 'sm_80'\n"
      "ptxas info    : Function properties for a\n"
      "ptxas         .     16 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
      "ptxas info    : Used 255 registers, used 1 barriers, 16 bytes cumulative stack size, 1024 bytes smem, "
      "380 bytes cmem[0]\n"
      "ptxas info    : Compiling entry function 'b' for 'sm_90a'\n"
      "ptxas info    : Function properties for b\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 8 registers, used 0 barriers\n";
  ResourceUsageMap usage = parsePtxasInfo(log);
  ASSERT_EQ(usage.size(), 2u);
  const ResourceUsage& a = usage.at("a");
  EXPECT_EQ(a.registers, 255);
  EXPECT_EQ(a.barriers, 1);
  EXPECT_EQ(a.staticSharedBytes, 1024);
  EXPECT_EQ(a.constantBytes, 380);
  EXPECT_EQ(a.stackFrameBytes, 16);
  EXPECT_EQ(a.spillStoreBytes, 4);
  EXPECT_EQ(a.spillLoadBytes, 12);
  const ResourceUsage& b = usage.at("b");
  EXPECT_EQ(b.registers, 8);
  EXPECT_EQ(b.staticSharedBytes, 0);
  EXPECT_TRUE(parsePtxasInfo("").empty());
}

}  // namespace
}  // namespace flexjit
