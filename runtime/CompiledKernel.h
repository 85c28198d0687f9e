// The data the kernel cache deals in: what to compile (KernelRequest) and what came out (CompiledKernel).
// Kept apart from KernelCache.h so the disk format (CacheEntry.h) and module loading (Module.h) can use
// them without the cache itself.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/Nvrtc.h"
#include "runtime/ResourceUsage.h"

namespace flexjit {

/// Where a kernel handed out by the cache came from.
enum class CacheSource {
  Memory,   ///< this process had it already
  Disk,     ///< read from the on-disk cache
  Compiled, ///< compiled by NVRTC just now
};

/// "memory", "disk" or "compiled", for logs and the CLI.
const char* cacheSourceName(CacheSource source);

/// A kernel to compile: the emitted source, the name of its entry function and how to compile it.
struct KernelRequest {
  std::string source;
  std::string name;  ///< the extern "C" __global__ function; also names dumps and diagnostics
  CompileOptions options;
};

/// Field-by-field equality: the kernel cache's in-memory index compares whole requests, so a memory hit
/// never pays for a SHA-256 of the source.
bool operator==(const KernelRequest& a, const KernelRequest& b);
inline bool operator!=(const KernelRequest& a, const KernelRequest& b) { return !(a == b); }

/// A fast non-cryptographic hash of every request field (std::hash), for unordered containers; equality
/// decides, so collisions cost a comparison, never a wrong kernel.
struct KernelRequestHash {
  size_t operator()(const KernelRequest& request) const;
};

/// A compiled kernel, as held by the cache. Immutable once handed out.
struct CompiledKernel {
  std::string key;             ///< SHA-256 cache key (hex)
  std::string name;            ///< entry function name
  std::string arch;            ///< target it was compiled for ("sm_90a")
  std::string toolkitVersion;  ///< NVRTC version that compiled it ("13.0")
  std::vector<char> cubin;     ///< empty for PTX-only targets
  std::string ptx;
  std::string log;             ///< NVRTC log (warnings, ptxas report)
  ResourceUsageMap resources;  ///< per entry function
  CacheSource origin = CacheSource::Compiled;  ///< how it entered this process: Disk or Compiled

  /// Resource usage of entry function `function` (default: `name`); throws flexjit::Error if absent.
  const ResourceUsage& usage(const std::string& function = {}) const;
};

}  // namespace flexjit
