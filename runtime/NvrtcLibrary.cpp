// Implementation of NvrtcLibrary.h: finding and dlopen'ing libnvrtc (order documented in Nvrtc.h).
#include "runtime/NvrtcLibrary.h"

#include <cuda.h>  // CUDA_VERSION: the toolkit these headers (and so the NVRTC ABI) come from
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "dsl/Error.h"

namespace flexjit::detail {

namespace {

constexpr const char* kLibraryEnv = "FLEXJIT_NVRTC_LIBRARY";
constexpr int kVersionDivisor = 1000;  // CUDA_VERSION = major * 1000 + minor * 10
const std::string kSoname = fmt::format("libnvrtc.so.{}", CUDA_VERSION / kVersionDivisor);
const std::string kWheelDirs[] = {"nvidia/cuda_nvrtc/lib",
                                  fmt::format("nvidia/cu{}/lib", CUDA_VERSION / kVersionDivisor)};

std::string envOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

/// Site-packages directories to search for the pip wheels: the one holding libflexjit itself (the
/// flexjit Python package sits next to nvidia/), then those of an active virtualenv or conda env.
std::vector<std::filesystem::path> sitePackagesDirs() {
  namespace fs = std::filesystem;
  std::vector<fs::path> dirs;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&sitePackagesDirs), &info) != 0 && info.dli_fname != nullptr)
    dirs.push_back(fs::path(info.dli_fname).parent_path().parent_path());
  for (const char* env : {"VIRTUAL_ENV", "CONDA_PREFIX"}) {
    std::string prefix = envOr(env);
    std::error_code ec;
    if (prefix.empty() || !fs::is_directory(fs::path(prefix) / "lib", ec)) continue;
    for (const auto& entry : fs::directory_iterator(fs::path(prefix) / "lib", ec))
      if (entry.path().filename().string().rfind("python3", 0) == 0)
        dirs.push_back(entry.path() / "site-packages");
  }
  return dirs;
}

/// Every library to try, in order. Absolute candidates that do not exist are dropped.
std::vector<std::string> candidates() {
  namespace fs = std::filesystem;
  std::string explicitLibrary = envOr(kLibraryEnv);
  if (!explicitLibrary.empty()) return {explicitLibrary};
  std::vector<std::string> out;
  std::vector<fs::path> dirs;
  for (const char* env : {"CUDA_HOME", "CUDA_PATH"})
    if (std::string home = envOr(env); !home.empty()) dirs.push_back(fs::path(home) / "lib64");
#ifdef FLEXJIT_CUDA_LIB_DIR
  dirs.push_back(FLEXJIT_CUDA_LIB_DIR);
#endif
  dirs.push_back("/usr/local/cuda/lib64");
  for (const fs::path& site : sitePackagesDirs())
    for (const std::string& wheel : kWheelDirs) dirs.push_back(site / wheel);
  std::error_code ec;
  for (const fs::path& dir : dirs)
    if (fs::exists(dir / kSoname, ec)) out.push_back((dir / kSoname).string());
  out.push_back(kSoname);
  out.push_back("libnvrtc.so");
  return out;
}

template <typename Fn>
bool resolve(void* handle, const char* symbol, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(handle, symbol));
  return fn != nullptr;
}

/// Resolves every entry point of `handle` into `api`; returns the first missing symbol, or nullptr.
const char* resolveAll(void* handle, NvrtcApi& api) {
#define FLEXJIT_RESOLVE(field, symbol) \
  if (!resolve(handle, #symbol, api.field)) return #symbol;
  FLEXJIT_RESOLVE(version, nvrtcVersion)
  FLEXJIT_RESOLVE(getErrorString, nvrtcGetErrorString)
  FLEXJIT_RESOLVE(createProgram, nvrtcCreateProgram)
  FLEXJIT_RESOLVE(destroyProgram, nvrtcDestroyProgram)
  FLEXJIT_RESOLVE(compileProgram, nvrtcCompileProgram)
  FLEXJIT_RESOLVE(getProgramLogSize, nvrtcGetProgramLogSize)
  FLEXJIT_RESOLVE(getProgramLog, nvrtcGetProgramLog)
  FLEXJIT_RESOLVE(getPTXSize, nvrtcGetPTXSize)
  FLEXJIT_RESOLVE(getPTX, nvrtcGetPTX)
  FLEXJIT_RESOLVE(getCUBINSize, nvrtcGetCUBINSize)
  FLEXJIT_RESOLVE(getCUBIN, nvrtcGetCUBIN)
#undef FLEXJIT_RESOLVE
  return nullptr;
}

/// Loaded once; `error` holds the reason when `api` is null.
struct LoadState {
  std::once_flag once;
  std::unique_ptr<NvrtcApi> api;
  std::string error;
};

LoadState& state() {
  static LoadState s;
  return s;
}

void load(LoadState& s) {
  std::string tried;
  for (const std::string& candidate : candidates()) {
    // RTLD_LOCAL keeps NVRTC's symbols out of the global namespace, so it cannot clash with another
    // NVRTC that torch or the user loaded into the same process.
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      tried += fmt::format("\n  {}: {}", candidate, why ? why : "unknown dlopen error");
      continue;
    }
    auto api = std::make_unique<NvrtcApi>();
    if (const char* missing = resolveAll(handle, *api)) {
      tried += fmt::format("\n  {}: has no symbol {}", candidate, missing);
      dlclose(handle);
      continue;
    }
    int major = 0, minor = 0;
    api->version(&major, &minor);
    api->versionText = fmt::format("{}.{}", major, minor);
    api->libraryPath = candidate;
    s.api = std::move(api);  // the handle stays open for the life of the process
    return;
  }
  if (std::string explicitLibrary = envOr(kLibraryEnv); !explicitLibrary.empty()) {
    s.error = fmt::format(
        "NVRTC could not be loaded from {}={} (when it is set, nothing else is tried):{}\nPoint it at {}, or "
        "unset it to search CUDA_HOME, the toolkit and the pip wheels.",
        kLibraryEnv, explicitLibrary, tried, kSoname);
    return;
  }
  s.error = fmt::format(
      "NVRTC could not be loaded, so flexjit cannot compile GPU kernels. Tried:{}\nInstall the CUDA "
      "toolkit (or `pip install nvidia-cuda-nvrtc`), then set CUDA_HOME to the toolkit or {} to the path "
      "of {}.",
      tried, kLibraryEnv, kSoname);
}

}  // namespace

const NvrtcApi& nvrtcApi() {
  LoadState& s = state();
  std::call_once(s.once, [&] { load(s); });
  if (!s.api) throw Error(s.error);
  return *s.api;
}

bool nvrtcLoads() {
  LoadState& s = state();
  std::call_once(s.once, [&] { load(s); });
  return s.api != nullptr;
}

void checkNvrtc(const NvrtcApi& api, nvrtcResult result, const char* what) {
  if (result == NVRTC_SUCCESS) return;
  throw Error(fmt::format("{} failed: {} (NVRTC {} from {})", what, api.getErrorString(result),
                          api.versionText, api.libraryPath));
}

}  // namespace flexjit::detail
