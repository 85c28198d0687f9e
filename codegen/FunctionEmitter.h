// Emitting one MLIR mod function as a CUDA C++ function (shared by the scalar and interval emitters).
//
// Output is deterministic: values are named v0, v1, ... in op order, parameters by their fj.param names,
// captures by slot (cap.tensor[k], cap.f[k], cap.i[k]). Functions are FJ_HD (host+device, force-inlined),
// so the same text compiles into GPU kernels and into CPU tests.
#pragma once

#include <set>
#include <string>

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace flexjit {

class FunctionEmitter {
 public:
  virtual ~FunctionEmitter() = default;
  /// Emits `fn` as a function called `name`; raises flexjit::Error for an op it cannot express.
  std::string emit(mlir::func::FuncOp fn, const std::string& name);

  /// The accumulation sites of a gradient function are its fj.grad_accumulate ops, numbered in op order;
  /// the scalar hook and its gradient windows (GradWindowEmitter) agree on the numbers through these.
  static int gradSiteOf(mlir::Operation* op);
  static int gradSiteCount(mlir::func::FuncOp fn);
  /// Whether some accumulation site's index depends on both q_idx and kv_idx (a relative position, say):
  /// such sites spread a tile's contributions over many addresses, where shared-memory windows pay.
  static bool gradSiteMixesQAndKv(mlir::func::FuncOp fn);
  /// Adds to `ops` every op the indices of `site` depend on; returns the fj.param names of the function
  /// arguments they reach ("q_idx", "kv_idx", ...).
  static std::set<std::string> indexDependencies(mlir::Operation* site, llvm::DenseSet<mlir::Operation*>& ops);

 protected:
  /// C++ type of a value of MLIR type `t` in this emitter (float / fj::IvFloat ...).
  virtual std::string typeName(mlir::Type t) const = 0;
  /// The C++ expression for a block argument that is a parameter ("q_idx") or capture.
  virtual std::string argExpr(mlir::func::FuncOp fn, unsigned index) const;
  /// The parameter list, e.g. "float score, int b, ..., const fj::CaptureArgs& cap".
  virtual std::string paramList(mlir::func::FuncOp fn) const = 0;
  /// Emits statements for one op (assigning its result via `define`); returns false if unsupported.
  virtual bool emitOp(mlir::Operation* op) = 0;
  /// Text before the function's signature ("template <...>\n"); empty by default.
  virtual std::string templateHeader(mlir::func::FuncOp) const { return ""; }

  /// Binds the arguments and emits every op of `fn` (see emitOp) into body(); returns the returned value.
  mlir::Value emitBody(mlir::func::FuncOp fn, const std::string& name);
  const std::string& body() const { return body_; }

  /// The name of an SSA value.
  const std::string& use(mlir::Value v) const;
  /// Defines `op`'s result as `expr`: "  const T vN = expr;".
  void define(mlir::Operation* op, const std::string& expr);
  /// Appends a raw statement line.
  void statement(const std::string& line) { body_ += "  " + line + "\n"; }
  /// Names `v` `expr` before emitBody walks the ops (emitBody keeps names bound this way).
  void bind(mlir::Value v, const std::string& expr) { preBound_[v] = expr; }
  /// A fresh name for a helper variable.
  std::string fresh();

  /// Capture slot of a tensor/scalar argument (from fj.tensor / fj.scalar / fj.grad).
  static int slotOf(mlir::func::FuncOp fn, mlir::Value v, const char* attr);
  /// fj::kElem* name for a memref element type.
  static std::string elemName(mlir::Type elementType);
  static std::string floatLiteral(float v);
  static std::string intLiteral(int64_t v);

 private:
  llvm::DenseMap<mlir::Value, std::string> names_;
  llvm::DenseMap<mlir::Value, std::string> preBound_;
  std::string body_;
  int next_ = 0;
};

/// Plain values (float/int/bool): the forward and gradient hooks.
class ScalarEmitter : public FunctionEmitter {
 protected:
  std::string typeName(mlir::Type t) const override;
  std::string paramList(mlir::func::FuncOp fn) const override;
  bool emitOp(mlir::Operation* op) override;
  /// A gradient function with accumulation sites is a template over its gradient sink (fj::GradArgs, or
  /// the dK/dV kernel's shared-memory windows), called as grads.accumulate(site, slot, tensor, value, idx).
  std::string templateHeader(mlir::func::FuncOp fn) const override;

 private:
  bool emitArith(mlir::Operation* op);
  bool emitMath(mlir::Operation* op);
  bool emitFlexjit(mlir::Operation* op);
};

/// Interval values (fj::IvBool / IvInt / IvFloat): the block classifier form of a mod.
class IntervalEmitter : public FunctionEmitter {
 protected:
  std::string typeName(mlir::Type t) const override;
  std::string argExpr(mlir::func::FuncOp fn, unsigned index) const override;
  std::string paramList(mlir::func::FuncOp fn) const override;
  bool emitOp(mlir::Operation* op) override;

 private:
  bool emitComparison(mlir::Operation* op);
  /// The whole range of a type: the sound answer for anything not modelled.
  std::string unknown(mlir::Type t) const;
};

/// The gradient windows of a score_mod_grad: for every accumulation site, the interval of its offset into
/// its gradient buffer over a box of (b, h, q_idx, kv_idx), from the interval forms of the ops its indices
/// depend on (only those are emitted; the score and grad_out count as any float). Emitted as
///   void NAME(IvInt b, IvInt h, IvInt q_idx, IvInt kv_idx, cap, grads, IvOffset* offsets, int* slots)
/// which sets offsets[site] (empty: the site writes nothing in the box) and slots[site] (its capture).
class GradWindowEmitter : public IntervalEmitter {
 public:
  std::string emitWindows(mlir::func::FuncOp fn, const std::string& name);

 protected:
  std::string argExpr(mlir::func::FuncOp fn, unsigned index) const override;
  std::string paramList(mlir::func::FuncOp fn) const override;
  bool emitOp(mlir::Operation* op) override;

 private:
  llvm::DenseSet<mlir::Operation*> slice_;  ///< the ops some site's indices depend on
};

}  // namespace flexjit
