// Per-kernel resource usage (registers, shared memory, spills, stack) as ptxas reports it.
//
// On a machine without a GPU the only source is ptxas's verbose output, which NVRTC returns in its log
// when given --ptxas-options=-v; this file parses it. With a GPU, Module.h reads the same numbers from
// the loaded function through the driver (cuFuncGetAttribute) instead.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace flexjit {

/// What ptxas allocated for one entry function. Sizes are in bytes.
struct ResourceUsage {
  int64_t registers = 0;         ///< registers per thread
  int64_t barriers = 0;          ///< named barriers used
  int64_t staticSharedBytes = 0; ///< static __shared__ memory per block (dynamic shared memory excluded)
  int64_t constantBytes = 0;     ///< constant bank 0 (kernel parameters and constants)
  int64_t stackFrameBytes = 0;   ///< per-thread stack frame (local memory arrays, spills)
  int64_t spillStoreBytes = 0;   ///< bytes of register spill stores; non-zero usually means slow code
  int64_t spillLoadBytes = 0;    ///< bytes of register spill loads

  bool operator==(const ResourceUsage& o) const;
  bool operator!=(const ResourceUsage& o) const { return !(*this == o); }
};

/// Resource usage by entry-function name (the name as the PTX spells it: unmangled for extern "C").
using ResourceUsageMap = std::map<std::string, ResourceUsage>;

/// Parses the "ptxas info" lines of an NVRTC log compiled with --ptxas-options=-v: "Compiling entry
/// function 'k'", "N bytes stack frame, N bytes spill stores, N bytes spill loads", "Used N registers,
/// used N barriers, N bytes smem, N bytes cmem[0]". Lines it does not recognise are skipped, so an
/// empty map means the log held no ptxas report (a PTX-only compile).
ResourceUsageMap parsePtxasInfo(const std::string& log);

/// The usage of entry function `function`; throws flexjit::Error listing the functions that do exist
/// when it is absent (also the case for a PTX-only compile, which has no ptxas report).
const ResourceUsage& resourceUsageOf(const ResourceUsageMap& usage, const std::string& function);

/// One line per kernel, for dumps (<name>.resources.txt) and the CLI.
std::string formatResourceUsage(const ResourceUsageMap& usage);

}  // namespace flexjit
