// Range analysis: bounds every value of a mod over a box of parameter values, with the interval
// semantics of dsl/Interval.h, and classifies the mod's result over the box (full / empty / partial).
//
// Used by the pipeline for compile-time facts (a mask that is always true, a score_mod that can never
// return -inf) and by the fj-print-ranges pass for lit tests. Per block pair on the GPU the same
// semantics run as generated code (codegen's interval form).
#pragma once

#include "dsl/Interpreter.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

namespace flexjit {

/// The interval of one SSA value; which member is meaningful follows the value's type.
struct ValueRange {
  fj::IvBool b = fj::ivBoolUnknown();
  fj::IvInt i = fj::ivIntFull();
  fj::IvFloat f = fj::ivFloatFull();
};

/// Parameter ranges; the score ranges over all finite floats unless narrowed.
struct ParamBox {
  Box box{fj::ivInt(0, fj::kI32Max), fj::ivInt(0, fj::kI32Max), fj::ivInt(0, fj::kI32Max), fj::ivInt(0, fj::kI32Max)};
  fj::IvFloat score = fj::ivFloatFinite();
};

class RangeAnalysis {
 public:
  /// Analyses `fn` (a score_mod or mask_mod). Captured tensors have unknown contents here; unknown ops
  /// give the full range of their type, so the analysis is always sound, sometimes imprecise.
  RangeAnalysis(mlir::func::FuncOp fn, const ParamBox& params);

  const ValueRange& range(mlir::Value v) const;
  /// For a mask_mod: Full = keeps every position, Empty = keeps none. For a score_mod: Full = never
  /// -inf, Empty = always -inf.
  BlockClass classify() const;

 private:
  ValueRange transfer(mlir::Operation* op) const;
  ValueRange transferInt(mlir::Operation* op) const;
  ValueRange transferFloat(mlir::Operation* op) const;
  ValueRange transferBool(mlir::Operation* op) const;

  mlir::func::FuncOp fn_;
  llvm::DenseMap<mlir::Value, ValueRange> ranges_;
  mlir::Value result_;
};

}  // namespace flexjit
