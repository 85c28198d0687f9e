// The compiler's entry point: a variant's score_mod and mask_mod -> verified, simplified MLIR with the
// score_mod's gradient, plus the facts the kernel generator needs.
#pragma once

#include <memory>
#include <string>

#include "compiler/ModFacts.h"
#include "dsl/Mods.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

namespace flexjit {

/// The MLIR of one variant: functions @score_mod, @mask_mod, @sink_mod (with a sink), @prob_mod (with a
/// prob_mod) and, if asked, the gradients @score_mod_grad, @prob_mod_grad and @sink_mod_grad (when the sink
/// reads tensors that require a gradient).
struct LoweredMods {
  std::unique_ptr<mlir::MLIRContext> context;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  std::string importedIR;        ///< straight from the DSL
  std::string differentiatedIR;  ///< with the gradient functions (when asked), before simplification
  std::string simplifiedIR;      ///< after canonicalize + CSE: what codegen emits
  ModFacts facts;

  mlir::func::FuncOp lookup(const std::string& name) const;
};

struct LowerOptions {
  bool withGradient = true;
  /// false: no canonicalize / CSE at all, the IR exactly as imported (plus autodiff if asked). The
  /// differential fuzzer emits both and compares them, which tests the folders and rewrite patterns.
  bool simplify = true;
};

/// Imports, verifies, differentiates (the mods as written) and simplifies. Score-mod captures take slots
/// first, then the mask-mod's, then the extra hooks' (fj::CaptureArgs numbering). Raises flexjit::Error
/// naming the mod on any failure.
LoweredMods lowerMods(const ScoreMod& score, const MaskMod& mask, const LowerOptions& options = {},
                      const ExtraHooks& extra = {});

/// Prints an op (a module or function) as MLIR text.
std::string toText(mlir::Operation* op);

}  // namespace flexjit
