// Shared helpers for the runtime/ unit tests: temp directories, environment overrides, tiny CUDA sources.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace flexjit::testing {

/// A fresh directory under the temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "flexjit-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : std::string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

/// Sets (or, with nullopt, unsets) an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = std::string(old);
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

/// A tiny kernel with a local array (stack frame) and static shared memory, so ptxas has something to
/// report for every field.
inline const char* kTinyKernelSource = R"(
extern "C" __global__ void tiny_scale(float* x, int n) {
  __shared__ float tile[128];
  float local[32];
  int i = threadIdx.x;
  for (int j = 0; j < 32; ++j) local[j] = x[(i * j + 1) % n];
  tile[i % 128] = local[(i * 7) % 32];
  __syncthreads();
  if (i < n) x[i] = tile[(i + 1) % 128] * 2.0f;
}
)";

/// Uses setmaxnreg, an instruction only sm_90a (Hopper, arch-specific) accepts.
inline const char* kHopperOnlySource = R"(
extern "C" __global__ void __launch_bounds__(128) hopper_only(float* x) {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  x[threadIdx.x] *= 2.0f;
}
)";

}  // namespace flexjit::testing
