// fj-autodiff: reverse-mode differentiation of score_mods (see Passes.td for the contract).
//
// Mods are single-block, straight-line functions, so reverse mode is one backward walk: the forward ops
// are cloned into the gradient function (recomputation is cheaper than storing on a GPU), then each op's
// adjoint is pushed to its operands in reverse order. Only f32 values carry adjoints; ints and bools
// (indices, masks) have none. Dead forward ops disappear in the canonicalize that follows.
#include <cmath>

#include "compiler/Dialect.h"
#include "compiler/Passes.h"
#include "dsl/Mods.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace flexjit {
#define GEN_PASS_DEF_FJAUTODIFF
#include "Passes.h.inc"
}  // namespace flexjit

using namespace mlir;

namespace flexjit {

namespace {

/// Accumulates adjoints for one gradient function.
class AdjointBuilder {
 public:
  AdjointBuilder(OpBuilder& b, Location loc) : b_(b), loc_(loc) {}

  Value get(Value v) const { return adj_.lookup(v); }
  void set(Value v, Value g) { adj_[v] = g; }

  /// adj(v) += contribution; non-float values have no adjoint.
  void add(Value v, Value contribution) {
    if (!v.getType().isF32()) return;
    Value& slot = adj_[v];
    slot = slot ? b_.create<arith::AddFOp>(loc_, slot, contribution).getResult() : contribution;
  }

  Value c(float x) { return b_.create<arith::ConstantOp>(loc_, b_.getF32FloatAttr(x)); }
  Value mul(Value x, Value y) { return b_.create<arith::MulFOp>(loc_, x, y); }
  Value div(Value x, Value y) { return b_.create<arith::DivFOp>(loc_, x, y); }
  Value sub(Value x, Value y) { return b_.create<arith::SubFOp>(loc_, x, y); }
  Value neg(Value x) { return b_.create<arith::NegFOp>(loc_, x); }
  Value add1(Value x) { return b_.create<arith::AddFOp>(loc_, c(1.0f), x); }
  Value cmp(arith::CmpFPredicate p, Value x, Value y) { return b_.create<arith::CmpFOp>(loc_, p, x, y); }
  Value select(Value c, Value x, Value y) { return b_.create<arith::SelectOp>(loc_, c, x, y); }
  OpBuilder& builder() { return b_; }
  Location loc() const { return loc_; }

 private:
  OpBuilder& b_;
  Location loc_;
  DenseMap<Value, Value> adj_;
};

/// min/max: the gradient goes to the selected operand; ties split it evenly (torch.minimum/maximum).
void minMaxRule(AdjointBuilder& a, Value x, Value y, Value g, bool isMin) {
  using P = arith::CmpFPredicate;
  Value first = a.cmp(isMin ? P::OLT : P::OGT, x, y);
  Value tie = a.cmp(P::OEQ, x, y);
  Value half = a.mul(g, a.c(0.5f)), zero = a.c(0.0f);
  a.add(x, a.select(tie, half, a.select(first, g, zero)));
  a.add(y, a.select(tie, half, a.select(first, zero, g)));
}

/// x ** y with torch's rules: no gradient to the base where y == 0 (y * x^(y-1) would be 0 * inf at x = 0),
/// none to the exponent where x == 0 and y >= 0 (r * log x would be 0 * -inf).
void powRule(AdjointBuilder& a, Value x, Value y, Value r, Value g) {
  using P = arith::CmpFPredicate;
  Value zero = a.c(0.0f);
  Value xPowYm1 = a.builder().create<math::PowFOp>(a.loc(), x, a.sub(y, a.c(1.0f)));
  a.add(x, a.select(a.cmp(P::OEQ, y, zero), zero, a.mul(a.mul(g, y), xPowYm1)));
  Value baseZero = a.builder().create<arith::AndIOp>(a.loc(), a.cmp(P::OEQ, x, zero), a.cmp(P::OGE, y, zero));
  Value logX = a.builder().create<math::LogOp>(a.loc(), x);
  a.add(y, a.select(baseZero, zero, a.mul(a.mul(g, r), logX)));
}

/// Unary elementwise rules: d(result)/d(x) * g.
LogicalResult unaryRule(AdjointBuilder& a, Operation* op, Value x, Value r, Value g) {
  using P = arith::CmpFPredicate;
  if (isa<arith::NegFOp>(op)) a.add(x, a.neg(g));
  else if (isa<math::AbsFOp>(op)) {
    // sign(x) with sign(0) = 0, like torch.
    Value zero = a.c(0.0f);
    a.add(x, a.select(a.cmp(P::OGT, x, zero), g, a.select(a.cmp(P::OLT, x, zero), a.neg(g), zero)));
  } else if (isa<math::ExpOp>(op)) a.add(x, a.mul(g, r));
  else if (isa<math::Exp2Op>(op)) a.add(x, a.mul(a.mul(g, r), a.c(static_cast<float>(M_LN2))));
  else if (isa<math::LogOp>(op)) a.add(x, a.div(g, x));
  else if (isa<math::Log2Op>(op)) a.add(x, a.div(g, a.mul(x, a.c(static_cast<float>(M_LN2)))));
  else if (isa<math::SqrtOp>(op)) a.add(x, a.div(a.mul(g, a.c(0.5f)), r));
  else if (isa<math::RsqrtOp>(op)) a.add(x, a.mul(a.mul(g, a.c(-0.5f)), a.div(r, x)));
  else if (isa<math::TanhOp>(op)) a.add(x, a.mul(g, a.sub(a.c(1.0f), a.mul(r, r))));
  else if (isa<fjir::SigmoidOp>(op)) a.add(x, a.mul(g, a.mul(r, a.sub(a.c(1.0f), r))));
  else if (isa<math::SinOp>(op)) a.add(x, a.mul(g, a.builder().create<math::CosOp>(a.loc(), x)));
  else if (isa<math::CosOp>(op)) a.add(x, a.neg(a.mul(g, a.builder().create<math::SinOp>(a.loc(), x))));
  else if (isa<math::TanOp>(op)) a.add(x, a.mul(g, a.add1(a.mul(r, r))));
  else if (isa<math::AtanOp>(op)) a.add(x, a.div(g, a.add1(a.mul(x, x))));
  else if (isa<math::ErfOp>(op)) {
    Value gauss = a.builder().create<math::ExpOp>(a.loc(), a.neg(a.mul(x, x)));
    a.add(x, a.mul(a.mul(g, a.c(static_cast<float>(M_2_SQRTPI))), gauss));
  } else if (isa<math::Log1pOp>(op)) a.add(x, a.div(g, a.add1(x)));
  else if (isa<math::ExpM1Op>(op)) a.add(x, a.mul(g, a.add1(r)));
  else if (isa<math::FloorOp, math::CeilOp, math::RoundEvenOp, math::TruncOp>(op)) return success();  // piecewise constant
  else return failure();
  return success();
}

/// Binary elementwise rules.
LogicalResult binaryRule(AdjointBuilder& a, Operation* op, Value x, Value y, Value r, Value g) {
  if (isa<arith::AddFOp>(op)) { a.add(x, g); a.add(y, g); }
  else if (isa<arith::SubFOp>(op)) { a.add(x, g); a.add(y, a.neg(g)); }
  else if (isa<arith::MulFOp>(op)) { a.add(x, a.mul(g, y)); a.add(y, a.mul(g, x)); }
  else if (isa<arith::DivFOp>(op)) { a.add(x, a.div(g, y)); a.add(y, a.neg(a.div(a.mul(g, r), y))); }
  else if (isa<arith::MinimumFOp>(op)) minMaxRule(a, x, y, g, true);
  else if (isa<arith::MaximumFOp>(op)) minMaxRule(a, x, y, g, false);
  else if (isa<fjir::FloorDivOp>(op)) return success();  // piecewise constant
  else if (isa<fjir::ModOp>(op)) {
    // torch.remainder: d/dx = 1, d/dy = -floor_divide(x, y).
    a.add(x, g);
    a.add(y, a.neg(a.mul(g, a.builder().create<fjir::FloorDivOp>(a.loc(), x, y))));
  } else if (isa<fjir::FModOp>(op)) {
    // torch.fmod: d/dx = 1, d/dy = -div(x, y, rounding_mode="trunc").
    a.add(x, g);
    a.add(y, a.neg(a.mul(g, a.builder().create<math::TruncOp>(a.loc(), a.div(x, y)))));
  } else if (isa<math::PowFOp>(op)) powRule(a, x, y, r, g);
  else return failure();
  return success();
}

/// Pushes the adjoint of one op's result to its operands.
LogicalResult propagate(AdjointBuilder& a, Operation* op, const DenseMap<Value, Value>& gradBuffers) {
  if (op->getNumResults() != 1) return success();
  Value r = op->getResult(0);
  Value g = a.get(r);
  if (!g || !r.getType().isF32()) return success();
  if (isa<arith::ConstantOp, arith::SIToFPOp, arith::UIToFPOp>(op)) return success();  // no float inputs
  if (auto sel = dyn_cast<arith::SelectOp>(op)) {
    Value zero = a.c(0.0f);
    a.add(sel.getTrueValue(), a.select(sel.getCondition(), g, zero));
    a.add(sel.getFalseValue(), a.select(sel.getCondition(), zero, g));
    return success();
  }
  if (auto load = dyn_cast<fjir::LoadOp>(op)) {
    if (Value buffer = gradBuffers.lookup(load.getTensor()))
      a.builder().create<fjir::GradAccumulateOp>(a.loc(), g, buffer, load.getIndices());
    return success();
  }
  if (op->getNumOperands() == 1) return unaryRule(a, op, op->getOperand(0), r, g);
  if (op->getNumOperands() == 2) return binaryRule(a, op, op->getOperand(0), op->getOperand(1), r, g);
  return failure();
}

/// Creates the gradient function's signature: forward args, grad_out, then one f32 buffer per tensor
/// that requires a gradient.
func::FuncOp declareGradient(func::FuncOp fn, SmallVectorImpl<unsigned>& gradTensorArgs) {
  OpBuilder b(fn);
  b.setInsertionPointAfter(fn);
  SmallVector<Type> types(fn.getArgumentTypes());
  types.push_back(b.getF32Type());
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    if (!fn.getArgAttr(i, fjir::kRequiresGradAttr)) continue;
    auto t = cast<MemRefType>(fn.getArgument(i).getType());
    types.push_back(MemRefType::get(t.getShape(), b.getF32Type(), t.getLayout()));
    gradTensorArgs.push_back(i);
  }
  auto grad = b.create<func::FuncOp>(fn.getLoc(), (fn.getName() + "_grad").str(),
                                     b.getFunctionType(types, {b.getF32Type()}));
  grad->setAttr(fjir::kKindAttr, b.getStringAttr((fn.getName() + "_grad").str()));
  if (auto name = fn->getAttr(fjir::kModNameAttr)) grad->setAttr(fjir::kModNameAttr, name);
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) grad.setArgAttrs(i, fn.getArgAttrDict(i));
  unsigned gradOut = fn.getNumArguments();
  grad.setArgAttr(gradOut, fjir::kParamAttr, b.getStringAttr("grad_out"));
  for (unsigned k = 0; k < gradTensorArgs.size(); ++k)
    grad.setArgAttr(gradOut + 1 + k, fjir::kGradSlotAttr, fn.getArgAttr(gradTensorArgs[k], fjir::kTensorSlotAttr));
  return grad;
}

/// The hook kind of a function imported from the DSL (its fj.kind), or null.
const HookKindInfo* kindOf(func::FuncOp fn) {
  auto kind = fn->getAttrOfType<StringAttr>(fjir::kKindAttr);
  if (!kind) return nullptr;
  for (ModKind k : {ModKind::Score, ModKind::Mask, ModKind::Sink, ModKind::Prob})
    if (kind.getValue() == hookKind(k).name) return &hookKind(k);
  return nullptr;
}

bool readsTensorsThatRequireGrad(func::FuncOp fn) {
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    if (fn.getArgAttr(i, fjir::kRequiresGradAttr)) return true;
  return false;
}

/// Which functions get a gradient: every hook with an input (score_mod, prob_mod: the input's derivative is
/// always needed) and any other differentiable hook that reads a captured tensor requiring a gradient.
bool wantsGradient(func::FuncOp fn) {
  const HookKindInfo* kind = kindOf(fn);
  if (!kind || !kind->differentiable) return false;
  return kind->hasInput || readsTensorsThatRequireGrad(fn);
}

LogicalResult buildGradient(func::FuncOp fn) {
  SmallVector<unsigned> gradTensorArgs;
  func::FuncOp grad = declareGradient(fn, gradTensorArgs);
  Block* entry = grad.addEntryBlock();
  OpBuilder b = OpBuilder::atBlockEnd(entry);
  IRMapping map;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) map.map(fn.getArgument(i), grad.getArgument(i));
  Value forwardResult;
  SmallVector<Operation*> cloned;
  for (Operation& op : fn.front()) {
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      forwardResult = map.lookup(ret.getOperand(0));
      continue;
    }
    cloned.push_back(b.clone(op, map));
  }
  DenseMap<Value, Value> gradBuffers;
  unsigned gradOut = fn.getNumArguments();
  for (unsigned k = 0; k < gradTensorArgs.size(); ++k)
    gradBuffers[grad.getArgument(gradTensorArgs[k])] = grad.getArgument(gradOut + 1 + k);

  AdjointBuilder adj(b, fn.getLoc());
  adj.set(forwardResult, grad.getArgument(gradOut));
  for (Operation* op : llvm::reverse(cloned))
    if (failed(propagate(adj, op, gradBuffers)))
      return op->emitError() << "fj-autodiff: no derivative rule for '" << op->getName()
                             << "'; this op cannot appear in a differentiable " << kindOf(fn)->name << " yet";
  // The differentiated input (the score, argument 0 of a score_mod) has zero gradient when the hook ignores
  // it; a hook without an input (a sink_mod) returns 0 and only adds its captured tensors' gradients.
  Value dinput = kindOf(fn)->hasInput ? adj.get(grad.getArgument(0)) : Value();
  b.create<func::ReturnOp>(fn.getLoc(), dinput ? dinput : adj.c(0.0f));
  return success();
}

struct AutodiffPass : impl::FJAutodiffBase<AutodiffPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> mods;
    for (auto fn : module.getOps<func::FuncOp>()) {
      if (wantsGradient(fn) && !module.lookupSymbol((fn.getName() + "_grad").str())) mods.push_back(fn);
    }
    for (func::FuncOp fn : mods)
      if (failed(buildGradient(fn))) return signalPassFailure();
  }
};

}  // namespace

}  // namespace flexjit
