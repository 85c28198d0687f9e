// The fj dialect (ops declared in FlexjitOps.td) and the attribute names mods carry in MLIR.
#pragma once

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "FlexjitDialect.h.inc"

#define GET_OP_CLASSES
#include "FlexjitOps.h.inc"

namespace mlir {
class DialectRegistry;
}

namespace flexjit::fjir {

// Function attributes.
/// "score_mod", "mask_mod" or "score_mod_grad".
inline constexpr const char* kKindAttr = "fj.kind";
/// The user's name for the mod (for messages and dumps).
inline constexpr const char* kModNameAttr = "fj.mod_name";

// Argument attributes.
/// Which parameter an argument is: "score", "b", "h", "q_idx", "kv_idx", "grad_out".
inline constexpr const char* kParamAttr = "fj.param";
/// The capture slot (index into fj::CaptureArgs::tensor / ::f / ::i) of a captured tensor or scalar.
inline constexpr const char* kTensorSlotAttr = "fj.tensor";
inline constexpr const char* kScalarSlotAttr = "fj.scalar";
/// On a gradient-buffer argument of a _grad function: the slot of the tensor it belongs to.
inline constexpr const char* kGradSlotAttr = "fj.grad";
/// The user's name of a capture.
inline constexpr const char* kCaptureNameAttr = "fj.name";
/// Unit attribute on a captured float tensor whose gradient is wanted.
inline constexpr const char* kRequiresGradAttr = "fj.requires_grad";

/// Registers the dialects mods use (fj, func, arith, math, memref).
void registerDialects(mlir::DialectRegistry& registry);

}  // namespace flexjit::fjir
