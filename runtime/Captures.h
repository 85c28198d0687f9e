// Captured tensors and scalars -> the fj::CaptureArgs kernel parameter, with the checks that keep a
// kernel from reading the wrong memory: every tensor bound, on the kernel's device, shapes that fit int32.
#pragma once

#include <memory>
#include <string>

#include "codegen/Variant.h"
#include "dsl/Semantics.h"

namespace flexjit {

/// Packs a variant's captures (its CaptureLayout) for a kernel running on `device`. `what` names the call
/// in errors ("flex_attention"). Raises flexjit::Error for unbound or misplaced tensors.
fj::CaptureArgs packCaptures(const CaptureLayout& layout, Device device, const std::string& what);

/// A generated variant, cached in memory by the hooks' structural keys (plus which tensors require a
/// gradient), so repeated calls skip MLIR entirely. Thread-safe.
std::shared_ptr<const Variant> cachedVariant(const ScoreMod& score, const MaskMod& mask, bool withGradient,
                                             const ExtraHooks& extra = {});

}  // namespace flexjit
