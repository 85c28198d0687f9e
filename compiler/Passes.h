// flexjit's MLIR passes (declared in Passes.td) and the standard simplification pipeline.
#pragma once

#include <memory>

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace mlir::func {
class FuncDialect;
}
namespace mlir::arith {
class ArithDialect;
}
namespace mlir::math {
class MathDialect;
}

namespace flexjit {

#define GEN_PASS_DECL
#include "Passes.h.inc"

/// canonicalize (arith/math/fj folders and patterns) + CSE: the "simplify" stage.
void addSimplifyPasses(mlir::OpPassManager& pm);

/// Registers fj-autodiff, fj-print-ranges and the fj-simplify pipeline with the global registry.
void registerPasses();

}  // namespace flexjit
