// Building the attention backward kernels of a variant: NVRTC source assembly, compilation through the
// kernel cache, and a per-process index so that a repeated call costs one map lookup. The backward
// counterpart of runtime/KernelBuild.h.
#pragma once

#include <string>

#include "codegen/BackwardConfig.h"
#include "codegen/Variant.h"
#include "runtime/CompiledKernel.h"

namespace flexjit {

/// The full NVRTC source of one backward program. `variant` (made with its gradient) is required for
/// DkDv and Dq and ignored for Aux, which does not depend on the mods.
std::string backwardSource(const Variant* variant, const BwdKernelConfig& config, BwdKernelKind kind);

/// The compiled backward program `kind` (NVRTC on first use, then memory / disk cache). `tag` names the
/// variant in cache entries and dumps.
const CompiledKernel& backwardKernel(const Variant* variant, const BwdKernelConfig& config, BwdKernelKind kind,
                                     const std::string& tag);

}  // namespace flexjit
