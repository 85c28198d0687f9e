// NVRTC, loaded at run time: CUDA C++ source -> CUBIN (+ PTX) for one GPU architecture.
//
// libnvrtc is dlopen'ed rather than linked so that libflexjit loads on machines without a CUDA toolkit
// (the CPU interpreter path needs none) and picks up whichever NVRTC the user has: a toolkit, or the
// pip wheel torch ships. Search order (the first that loads wins):
//   1. FLEXJIT_NVRTC_LIBRARY, a path or file name; when set, nothing else is tried.
//   2. $CUDA_HOME/lib64, $CUDA_PATH/lib64, the toolkit flexjit was built against (FLEXJIT_CUDA_LIB_DIR),
//      /usr/local/cuda/lib64.
//   3. pip wheels: site-packages/nvidia/cuda_nvrtc/lib and site-packages/nvidia/cu<major>/lib, where
//      site-packages is the one libflexjit was loaded from, or $VIRTUAL_ENV's / $CONDA_PREFIX's.
//   4. libnvrtc.so.<major>, then libnvrtc.so, through the system loader (LD_LIBRARY_PATH, ldconfig).
#pragma once

#include <string>
#include <vector>

#include "runtime/ResourceUsage.h"

namespace flexjit {

/// How to compile one source.
struct CompileOptions {
  /// "sm_90a", "sm_80" (CUBIN and PTX) or "compute_90a" (PTX only, for the driver to JIT).
  std::string arch;
  /// Further NVRTC options, appended after flexjit's own.
  std::vector<std::string> extra;
  /// Pass -lineinfo (source lines in the profiler).
  bool lineInfo = false;
};

/// What NVRTC produced.
struct CompileResult {
  std::string ptx;             ///< always present
  std::vector<char> cubin;     ///< empty for a compute_XX (PTX-only) target
  std::string log;             ///< NVRTC's log: warnings and the ptxas -v report
  ResourceUsageMap resources;  ///< parsed from the ptxas report; empty for PTX-only targets
};

/// Compiles `source` (file name `<name>.cu` in diagnostics). Throws flexjit::Error when NVRTC cannot be
/// loaded, the arch is malformed, or compilation fails; a failure's message holds the kernel name, the
/// full NVRTC log and the path where the source was saved (see dumpFailedSource in Dump.h).
CompileResult compileCuda(const std::string& source, const std::string& name, const CompileOptions& options);

/// The full NVRTC option list compileCuda passes for `options` (part of the kernel cache key).
std::vector<std::string> nvrtcOptions(const CompileOptions& options);

/// The loaded NVRTC's version, "major.minor" (e.g. "13.0"). Throws flexjit::Error if none loads.
std::string nvrtcVersion();

/// Whether an NVRTC library can be loaded (never throws).
bool nvrtcAvailable();

/// The file NVRTC was loaded from, as given to dlopen. Throws flexjit::Error if none loads.
std::string nvrtcLibraryPath();

/// Resource usage of entry function `function` in `result`; throws flexjit::Error naming the functions
/// that do exist when it is absent (or when the target was PTX-only, which has no ptxas report).
const ResourceUsage& resourceUsage(const CompileResult& result, const std::string& function);

}  // namespace flexjit
