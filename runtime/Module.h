// Loading compiled kernels into CUDA contexts: CompiledKernel (cubin bytes) -> CUmodule -> CUfunction,
// cached per (cache key, context) so each context loads each kernel once.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "runtime/CompiledKernel.h"

namespace flexjit {

/// A kernel function loaded in one context, with the driver's view of its resources.
struct LoadedKernel {
  CUfunction function = nullptr;
  CUmodule module = nullptr;
  CUcontext context = nullptr;
  int registers = 0;              ///< CU_FUNC_ATTRIBUTE_NUM_REGS
  int staticSharedBytes = 0;      ///< CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES
  int localBytes = 0;             ///< CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES (stack, spills)
  int constantBytes = 0;          ///< CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES
  int maxThreadsPerBlock = 0;     ///< CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
  int maxDynamicSharedBytes = 0;  ///< current CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
};

/// The driver's report of a loaded function's resources, in ResourceUsage terms (fields the driver does
/// not report, spills and barriers, stay 0; localBytes is reported as the stack frame).
ResourceUsage driverResourceUsage(const LoadedKernel& kernel);

/// Modules loaded per (cache key, context). Thread-safe.
class ModuleCache {
 public:
  ModuleCache() = default;
  /// Unloads every module this cache loaded (the global instance is never destroyed).
  ~ModuleCache();
  /// The process-wide instance.
  static ModuleCache& global();

  /// Entry function `function` (default: kernel.name) of `kernel`, loaded into the current context (make
  /// one current with ScopedContext). When `dynamicSharedBytes` exceeds the function's current limit the
  /// limit is raised to it; more than the device allows is a flexjit::Error. Loading uses the cubin, or
  /// the PTX (JIT-compiled by the driver) for PTX-only kernels.
  LoadedKernel load(const CompiledKernel& kernel, size_t dynamicSharedBytes = 0, const std::string& function = {});

  ModuleCache(const ModuleCache&) = delete;
  ModuleCache& operator=(const ModuleCache&) = delete;

 private:
  struct Module {
    CUmodule module = nullptr;
    std::map<std::string, LoadedKernel> functions;
  };

  Module& moduleFor(const CompiledKernel& kernel, CUcontext context);
  LoadedKernel& functionFor(Module& module, const std::string& name, CUcontext context);
  void raiseDynamicShared(LoadedKernel& loaded, size_t bytes, const std::string& name);

  std::mutex mutex_;
  std::map<std::pair<std::string, CUcontext>, Module> modules_;
};

}  // namespace flexjit
