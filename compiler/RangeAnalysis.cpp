// Transfer functions of the range analysis: one per arith / math / fj op, all delegating to the
// host+device interval semantics in dsl/Interval.h.
#include "compiler/RangeAnalysis.h"

#include "compiler/Dialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace flexjit {

namespace {

ValueRange ofBool(fj::IvBool b) { ValueRange r; r.b = b; return r; }
ValueRange ofInt(fj::IvInt i) { ValueRange r; r.i = i; return r; }
ValueRange ofFloat(fj::IvFloat f) { ValueRange r; r.f = f; return r; }

fj::IvBool compareInt(arith::CmpIPredicate p, fj::IvInt x, fj::IvInt y) {
  using P = arith::CmpIPredicate;
  switch (p) {
    case P::eq: return fj::ivEq(x, y);
    case P::ne: return fj::ivNe(x, y);
    case P::slt: return fj::ivLt(x, y);
    case P::sle: return fj::ivLe(x, y);
    case P::sgt: return fj::ivGt(x, y);
    case P::sge: return fj::ivGe(x, y);
    default: return fj::ivBoolUnknown();  // unsigned predicates: not produced by the DSL
  }
}

fj::IvBool compareFloat(arith::CmpFPredicate p, fj::IvFloat x, fj::IvFloat y) {
  using P = arith::CmpFPredicate;
  switch (p) {
    case P::OEQ: return fj::ivEq(x, y);
    case P::UNE: return fj::ivNe(x, y);
    case P::OLT: return fj::ivLt(x, y);
    case P::OLE: return fj::ivLe(x, y);
    case P::OGT: return fj::ivGt(x, y);
    case P::OGE: return fj::ivGe(x, y);
    case P::AlwaysFalse: return fj::ivBool(false);
    case P::AlwaysTrue: return fj::ivBool(true);
    default: return fj::ivBoolUnknown();
  }
}

fj::IvBool compareBool(arith::CmpIPredicate p, fj::IvBool x, fj::IvBool y) {
  if (p == arith::CmpIPredicate::eq) return fj::ivEq(x, y);
  if (p == arith::CmpIPredicate::ne) return fj::ivXor(x, y);
  return fj::ivBoolUnknown();
}

}  // namespace

RangeAnalysis::RangeAnalysis(func::FuncOp fn, const ParamBox& params) : fn_(fn) {
  for (BlockArgument arg : fn.getArguments()) {
    ValueRange r;
    if (auto p = fn.getArgAttrOfType<StringAttr>(arg.getArgNumber(), fjir::kParamAttr)) {
      StringRef name = p.getValue();
      if (name == "score") r.f = params.score;
      else if (name == "b") r.i = params.box.b;
      else if (name == "h") r.i = params.box.h;
      else if (name == "q_idx") r.i = params.box.q;
      else if (name == "kv_idx") r.i = params.box.kv;
    }
    ranges_[arg] = r;  // captured scalars and anything else: unknown
  }
  for (Operation& op : fn.front()) {
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      result_ = ret.getOperand(0);
      continue;
    }
    if (op.getNumResults() == 1) ranges_[op.getResult(0)] = transfer(&op);
  }
}

const ValueRange& RangeAnalysis::range(Value v) const {
  static const ValueRange kUnknown;
  auto it = ranges_.find(v);
  return it == ranges_.end() ? kUnknown : it->second;
}

BlockClass RangeAnalysis::classify() const {
  const ValueRange& r = range(result_);
  if (result_.getType().isInteger(1)) {
    if (!r.b.canTrue) return BlockClass::Empty;
    return r.b.canFalse ? BlockClass::Partial : BlockClass::Full;
  }
  bool canBeNegInf = fj::hasNegInf(r.f);
  bool canBeOther = r.f.nan || (!fj::ivEmpty(r.f) && r.f.hi > -fj::infinity());
  if (!canBeOther) return BlockClass::Empty;
  return canBeNegInf ? BlockClass::Partial : BlockClass::Full;
}

ValueRange RangeAnalysis::transfer(Operation* op) const {
  Type t = op->getResult(0).getType();
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    if (auto i = dyn_cast<IntegerAttr>(c.getValue())) {
      int64_t v = t.isInteger(1) ? (i.getValue().getBoolValue() ? 1 : 0) : i.getValue().getSExtValue();
      ValueRange r = ofInt(fj::ivInt(v, v));
      r.b = fj::ivBool(v != 0);
      return r;
    }
    if (auto f = dyn_cast<FloatAttr>(c.getValue())) {
      float v = static_cast<float>(f.getValueAsDouble());
      return ofFloat(fj::ivFloatPoint(v));
    }
    return {};
  }
  if (auto sel = dyn_cast<arith::SelectOp>(op)) {
    const ValueRange &c = range(sel.getCondition()), &x = range(sel.getTrueValue()), &y = range(sel.getFalseValue());
    ValueRange r;
    r.b = fj::ivWhere(c.b, x.b, y.b);
    r.i = fj::ivWhere(c.b, x.i, y.i);
    r.f = fj::ivWhere(c.b, x.f, y.f);
    return r;
  }
  if (t.isInteger(1)) return transferBool(op);
  if (t.isInteger(32)) return transferInt(op);
  if (t.isF32()) return transferFloat(op);
  return {};
}

ValueRange RangeAnalysis::transferBool(Operation* op) const {
  auto x = [&](int k) -> const ValueRange& { return range(op->getOperand(k)); };
  if (auto cmp = dyn_cast<arith::CmpIOp>(op)) {
    if (cmp.getLhs().getType().isInteger(1)) return ofBool(compareBool(cmp.getPredicate(), x(0).b, x(1).b));
    return ofBool(compareInt(cmp.getPredicate(), x(0).i, x(1).i));
  }
  if (auto cmp = dyn_cast<arith::CmpFOp>(op)) return ofBool(compareFloat(cmp.getPredicate(), x(0).f, x(1).f));
  if (isa<arith::AndIOp>(op)) return ofBool(fj::ivAnd(x(0).b, x(1).b));
  if (isa<arith::OrIOp>(op)) return ofBool(fj::ivOr(x(0).b, x(1).b));
  if (isa<arith::XOrIOp>(op)) return ofBool(fj::ivXor(x(0).b, x(1).b));
  return {};  // fj.load of a bool tensor and anything unmodelled: unknown
}

ValueRange RangeAnalysis::transferInt(Operation* op) const {
  auto x = [&](int k) -> const fj::IvInt& { return range(op->getOperand(k)).i; };
  if (isa<arith::AddIOp>(op)) return ofInt(fj::ivAdd(x(0), x(1)));
  if (isa<arith::SubIOp>(op)) return ofInt(fj::ivSub(x(0), x(1)));
  if (isa<arith::MulIOp>(op)) return ofInt(fj::ivMul(x(0), x(1)));
  if (isa<arith::MinSIOp>(op)) return ofInt(fj::ivMin(x(0), x(1)));
  if (isa<arith::MaxSIOp>(op)) return ofInt(fj::ivMax(x(0), x(1)));
  if (isa<fjir::FloorDivOp>(op)) return ofInt(fj::ivFloorDiv(x(0), x(1)));
  if (isa<fjir::ModOp>(op)) return ofInt(fj::ivMod(x(0), x(1)));
  if (isa<fjir::FModOp>(op)) return ofInt(fj::ivFMod(x(0), x(1)));
  if (isa<fjir::ShlOp>(op)) return ofInt(fj::ivShl(x(0), x(1)));
  if (isa<fjir::ShrOp>(op)) return ofInt(fj::ivShr(x(0), x(1)));
  if (isa<math::AbsIOp>(op)) return ofInt(fj::ivAbs(x(0)));
  if (isa<arith::AndIOp>(op)) return ofInt(fj::ivBitAnd(x(0), x(1)));
  if (isa<arith::OrIOp>(op)) return ofInt(fj::ivBitOr(x(0), x(1)));
  if (isa<arith::XOrIOp>(op)) return ofInt(fj::ivBitXor(x(0), x(1)));
  if (isa<arith::ExtUIOp>(op) && op->getOperand(0).getType().isInteger(1))
    return ofInt(fj::ivBoolToInt(range(op->getOperand(0)).b));
  if (isa<fjir::ToIntOp>(op)) return ofInt(fj::ivFloatToInt(range(op->getOperand(0)).f));
  return ofInt(fj::ivIntFull());  // fj.load of an int tensor and anything unmodelled
}

ValueRange RangeAnalysis::transferFloat(Operation* op) const {
  auto x = [&](int k) -> const fj::IvFloat& { return range(op->getOperand(k)).f; };
  if (isa<arith::AddFOp>(op)) return ofFloat(fj::ivAdd(x(0), x(1)));
  if (isa<arith::SubFOp>(op)) return ofFloat(fj::ivSub(x(0), x(1)));
  if (isa<arith::MulFOp>(op)) return ofFloat(fj::ivMul(x(0), x(1)));
  if (isa<arith::DivFOp>(op)) return ofFloat(fj::ivDiv(x(0), x(1)));
  if (isa<arith::MinimumFOp>(op)) return ofFloat(fj::ivMin(x(0), x(1)));
  if (isa<arith::MaximumFOp>(op)) return ofFloat(fj::ivMax(x(0), x(1)));
  if (isa<fjir::FloorDivOp>(op)) return ofFloat(fj::ivFloorDivF(x(0), x(1)));
  if (isa<fjir::ModOp>(op)) return ofFloat(fj::ivModF(x(0), x(1)));
  if (isa<fjir::FModOp>(op)) return ofFloat(fj::ivFModF(x(0), x(1)));
  if (isa<math::PowFOp>(op)) return ofFloat(fj::ivPow(x(0), x(1)));
  if (isa<arith::NegFOp>(op)) return ofFloat(fj::ivNeg(x(0)));
  if (isa<math::AbsFOp>(op)) return ofFloat(fj::ivAbs(x(0)));
  if (isa<math::ExpOp>(op)) return ofFloat(fj::ivExp(x(0)));
  if (isa<math::Exp2Op>(op)) return ofFloat(fj::ivExp2(x(0)));
  if (isa<math::LogOp>(op)) return ofFloat(fj::ivLog(x(0)));
  if (isa<math::Log2Op>(op)) return ofFloat(fj::ivLog2(x(0)));
  if (isa<math::SqrtOp>(op)) return ofFloat(fj::ivSqrt(x(0)));
  if (isa<math::RsqrtOp>(op)) return ofFloat(fj::ivRsqrt(x(0)));
  if (isa<math::TanhOp>(op)) return ofFloat(fj::ivTanh(x(0)));
  if (isa<fjir::SigmoidOp>(op)) return ofFloat(fj::ivSigmoid(x(0)));
  if (isa<math::FloorOp>(op)) return ofFloat(fj::ivFloor(x(0)));
  if (isa<math::CeilOp>(op)) return ofFloat(fj::ivCeil(x(0)));
  if (isa<math::RoundEvenOp>(op)) return ofFloat(fj::ivRound(x(0)));
  if (isa<math::TruncOp>(op)) return ofFloat(fj::ivTrunc(x(0)));
  if (isa<math::SinOp>(op)) return ofFloat(fj::ivSin(x(0)));
  if (isa<math::CosOp>(op)) return ofFloat(fj::ivCos(x(0)));
  if (isa<math::TanOp>(op)) return ofFloat(fj::ivTan(x(0)));
  if (isa<math::AtanOp>(op)) return ofFloat(fj::ivAtan(x(0)));
  if (isa<math::ErfOp>(op)) return ofFloat(fj::ivErf(x(0)));
  if (isa<math::Log1pOp>(op)) return ofFloat(fj::ivLog1p(x(0)));
  if (isa<math::ExpM1Op>(op)) return ofFloat(fj::ivExpm1(x(0)));
  if (isa<arith::SIToFPOp>(op)) return ofFloat(fj::ivIntToFloat(range(op->getOperand(0)).i));
  if (isa<arith::UIToFPOp>(op) && op->getOperand(0).getType().isInteger(1))
    return ofFloat(fj::ivBoolToFloat(range(op->getOperand(0)).b));
  return ofFloat(fj::ivFloatFull());  // fj.load of a float tensor and anything unmodelled
}

}  // namespace flexjit
