// Building the attention kernels of a variant: source assembly, compilation through the kernel cache,
// and a per-process index so a repeated call costs one map lookup.
#pragma once

#include <string>

#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "runtime/CompiledKernel.h"
#include "runtime/Device.h"

namespace flexjit {

/// Compute capability and limits of a device, queried once per process.
const DeviceInfo& cachedDeviceInfo(int ordinal);

/// A compiled forward kernel and the configuration it was built with.
struct ForwardBuild {
  const CompiledKernel* kernel = nullptr;
  FwdKernelConfig config;
  int spillBytes = 0;  ///< of the chosen configuration (0 unless every candidate spilled)
};

/// The compiled forward kernel of `variant`, starting from `config` (the planner's, runtime/Planner.h;
/// NVRTC on first use, then memory / disk cache). A heavy score_mod can push the sm80 family's default
/// tiles over the register budget; when the kernel spills, narrower S slices (and Q in shared memory) are
/// tried and the first configuration that does not spill is used (else the one that spills least).
ForwardBuild forwardKernel(const Variant& variant, const FwdKernelConfig& config, const std::string& tag);

/// The NVRTC target for a configuration's compute capability ("sm_90a" on Hopper, "sm_80", ...).
std::string archOf(const FwdKernelConfig& config);

/// The full NVRTC source of the forward kernel (also what `flexjit show` prints).
std::string forwardSource(const Variant& variant, const FwdKernelConfig& config);

}  // namespace flexjit
