// Implementation of CudaDriver.h: dlopen + cuGetProcAddress bootstrap, and the checked wrappers.
#include "runtime/CudaDriver.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "dsl/Error.h"

namespace flexjit {

namespace {

constexpr const char* kDriverLibrary = "libcuda.so.1";
constexpr int kVersionMajorDivisor = 1000;  // CUDA versions are major * 1000 + minor * 10
constexpr int kVersionMinorDivisor = 10;

/// cuGetProcAddress as exported since CUDA 12.0 (with a symbol-status out parameter) and before.
using GetProcAddressV2 = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
using GetProcAddressV1 = CUresult (*)(const char*, void**, int, cuuint64_t);

/// Finds driver symbols by unversioned name for the CUDA_VERSION of our headers.
class SymbolResolver {
 public:
  explicit SymbolResolver(void* handle)
      : v2_(reinterpret_cast<GetProcAddressV2>(dlsym(handle, "cuGetProcAddress_v2"))),
        v1_(reinterpret_cast<GetProcAddressV1>(dlsym(handle, "cuGetProcAddress"))) {}
  bool usable() const { return v2_ != nullptr || v1_ != nullptr; }

  /// Stores the entry point for `name` in `fn`; returns false when the driver lacks it.
  template <typename Fn>
  bool resolve(const char* name, Fn& fn) const {
    void* p = nullptr;
    CUresult r = CUDA_ERROR_NOT_FOUND;
    const int version = abiVersion(name);
    if (v2_ != nullptr) {
      CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
      r = v2_(name, &p, version, CU_GET_PROC_ADDRESS_DEFAULT, &status);
      if (status != CU_GET_PROC_ADDRESS_SUCCESS) p = nullptr;
    } else {
      r = v1_(name, &p, version, CU_GET_PROC_ADDRESS_DEFAULT);
    }
    fn = r == CUDA_SUCCESS ? reinterpret_cast<Fn>(p) : nullptr;
    return fn != nullptr;
  }

 private:
  /// The CUDA version whose ABI of `name` matches the declaration we call it through. cuGetProcAddress
  /// returns the newest ABI at the requested version; CUDA 13.0 gave cuCtxGetDevice and cuCtxSynchronize
  /// new _v2 signatures (an extra context argument) while cuda.h keeps declaring the old ones under the
  /// plain names, so those two are asked for as of CUDA 12.x.
  static int abiVersion(const char* name) {
    constexpr int kBeforeCuda13 = 12080;
    for (const char* legacy : {"cuCtxGetDevice", "cuCtxSynchronize"})
      if (std::strcmp(name, legacy) == 0) return std::min(CUDA_VERSION, kBeforeCuda13);
    return CUDA_VERSION;
  }

  GetProcAddressV2 v2_;
  GetProcAddressV1 v1_;
};

struct DriverState {
  std::once_flag once;
  std::unique_ptr<CudaDriver> driver;
  std::string error;
};

DriverState& driverState() {
  static DriverState state;
  return state;
}

}  // namespace

std::string cudaVersionText(int version) {
  return fmt::format("{}.{}", version / kVersionMajorDivisor, (version % kVersionMajorDivisor) / kVersionMinorDivisor);
}

void CudaDriver::load(CudaDriver& d) {
  void* handle = dlopen(kDriverLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw Error(fmt::format(
        "no CUDA driver found ({} could not be loaded: {}); flexjit's GPU path needs an NVIDIA driver — use "
        "the CPU path or run on a GPU machine",
        kDriverLibrary, why ? why : "unknown dlopen error"));
  }
  SymbolResolver resolver(handle);
  if (!resolver.usable())
    throw Error(fmt::format("the NVIDIA driver ({}) is too old: it lacks cuGetProcAddress. flexjit needs a "
                            "driver for CUDA 12.0 or newer; update the NVIDIA driver.",
                            kDriverLibrary));
  std::string missing;
#define FLEXJIT_RESOLVE_REQUIRED(name) \
  if (!resolver.resolve(#name, d.api_.name)) missing += std::string(missing.empty() ? "" : ", ") + #name;
  FLEXJIT_CUDA_DRIVER_FUNCTIONS(FLEXJIT_RESOLVE_REQUIRED)
#undef FLEXJIT_RESOLVE_REQUIRED
#define FLEXJIT_RESOLVE_OPTIONAL(name) resolver.resolve(#name, d.api_.name);
  FLEXJIT_CUDA_DRIVER_OPTIONAL_FUNCTIONS(FLEXJIT_RESOLVE_OPTIONAL)
#undef FLEXJIT_RESOLVE_OPTIONAL
  if (!missing.empty())
    throw Error(fmt::format("the NVIDIA driver lacks {} (flexjit was built for CUDA {}); update the driver",
                            missing, cudaVersionText(CUDA_VERSION)));
  // The driver library stays loaded for the life of the process: entry points and contexts point into it.
  d.check(d.api_.cuInit(0), "cuInit");
  d.check(d.api_.cuDriverGetVersion(&d.driverVersion_), "cuDriverGetVersion");
}

CudaDriver& CudaDriver::get() {
  DriverState& s = driverState();
  std::call_once(s.once, [&] {
    std::unique_ptr<CudaDriver> driver(new CudaDriver());
    try {
      load(*driver);
      s.driver = std::move(driver);
    } catch (const Error& e) {
      s.error = e.what();
    }
  });
  if (!s.driver) throw Error(s.error);
  return *s.driver;
}

bool CudaDriver::available() {
  try {
    get();
    return true;
  } catch (const Error&) {
    return false;
  }
}

void CudaDriver::check(CUresult result, const char* what) const {
  if (result == CUDA_SUCCESS) return;
  const char* name = nullptr;
  const char* text = nullptr;
  if (api_.cuGetErrorName == nullptr || api_.cuGetErrorName(result, &name) != CUDA_SUCCESS) name = nullptr;
  if (api_.cuGetErrorString == nullptr || api_.cuGetErrorString(result, &text) != CUDA_SUCCESS) text = nullptr;
  throw Error(fmt::format("CUDA driver call {} failed: {} ({}) [CUresult {}]", what,
                          name ? name : "unknown error", text ? text : "no description", static_cast<int>(result)));
}

}  // namespace flexjit
