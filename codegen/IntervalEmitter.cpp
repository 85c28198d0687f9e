// The interval form of a mod: the same function over fj::IvBool / IvInt / IvFloat, calling the sound
// interval semantics of dsl/Interval.h. The block-mask kernel evaluates it once per block pair; an op
// without an interval rule yields its type's whole range, which is always sound.
#include <fmt/format.h>

#include "codegen/FunctionEmitter.h"
#include "compiler/Dialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace flexjit {

std::string IntervalEmitter::typeName(Type t) const {
  if (t.isF32()) return "fj::IvFloat";
  if (t.isInteger(1)) return "fj::IvBool";
  return "fj::IvInt";
}

std::string IntervalEmitter::unknown(Type t) const {
  if (t.isF32()) return "fj::ivFloatFull()";
  if (t.isInteger(1)) return "fj::ivBoolUnknown()";
  return "fj::ivIntFull()";
}

std::string IntervalEmitter::argExpr(func::FuncOp fn, unsigned index) const {
  std::string scalar = FunctionEmitter::argExpr(fn, index);
  if (fn.getArgAttr(index, fjir::kScalarSlotAttr))
    return fn.getArgument(index).getType().isF32() ? fmt::format("fj::ivFloatPoint({})", scalar)  // NaN too
                                                   : fmt::format("fj::ivInt({0}, {0})", scalar);
  return scalar;
}

std::string IntervalEmitter::paramList(func::FuncOp fn) const {
  std::string params;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i)
    if (auto p = fn.getArgAttrOfType<StringAttr>(i, fjir::kParamAttr))
      params += fmt::format("{} {}, ", typeName(fn.getArgument(i).getType()), p.getValue().str());
  return params + "const fj::CaptureArgs& cap";
}

bool IntervalEmitter::emitComparison(Operation* op) {
  auto x = [&](int k) { return use(op->getOperand(k)); };
  const char* fn = nullptr;
  if (auto cmp = dyn_cast<arith::CmpFOp>(op)) {
    using P = arith::CmpFPredicate;
    switch (cmp.getPredicate()) {
      case P::OEQ: fn = "fj::ivEq"; break;
      case P::UNE: fn = "fj::ivNe"; break;
      case P::OLT: fn = "fj::ivLt"; break;
      case P::OLE: fn = "fj::ivLe"; break;
      case P::OGT: fn = "fj::ivGt"; break;
      case P::OGE: fn = "fj::ivGe"; break;
      default: break;
    }
  } else if (auto cmp = dyn_cast<arith::CmpIOp>(op)) {
    using P = arith::CmpIPredicate;
    bool isBool = cmp.getLhs().getType().isInteger(1);
    switch (cmp.getPredicate()) {
      case P::eq: fn = "fj::ivEq"; break;
      case P::ne: fn = isBool ? "fj::ivXor" : "fj::ivNe"; break;
      case P::slt: fn = isBool ? nullptr : "fj::ivLt"; break;
      case P::sle: fn = isBool ? nullptr : "fj::ivLe"; break;
      case P::sgt: fn = isBool ? nullptr : "fj::ivGt"; break;
      case P::sge: fn = isBool ? nullptr : "fj::ivGe"; break;
      default: break;
    }
  } else {
    return false;
  }
  define(op, fn ? fmt::format("{}({}, {})", fn, x(0), x(1)) : unknown(op->getResult(0).getType()));
  return true;
}

bool IntervalEmitter::emitOp(Operation* op) {
  if (op->getNumResults() != 1) return false;
  Type t = op->getResult(0).getType();
  auto fn = op->getParentOfType<func::FuncOp>();
  auto x = [&](int k) { return use(op->getOperand(k)); };
  auto call = [&](const char* name) {
    std::string args;
    for (unsigned k = 0; k < op->getNumOperands(); ++k) args += (k ? ", " : "") + x(static_cast<int>(k));
    define(op, fmt::format("{}({})", name, args));
    return true;
  };
  bool fromBool = op->getNumOperands() > 0 && op->getOperand(0).getType().isInteger(1);
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    if (auto f = dyn_cast<FloatAttr>(c.getValue())) {
      float v = static_cast<float>(f.getValueAsDouble());
      define(op, v != v ? "fj::IvFloat{fj::infinity(), -fj::infinity(), true}"
                        : fmt::format("fj::ivFloat({0}, {0})", floatLiteral(v)));
    } else if (t.isInteger(1)) {
      define(op, fmt::format("fj::ivBool({})", cast<IntegerAttr>(c.getValue()).getValue().getBoolValue()));
    } else {
      define(op, fmt::format("fj::ivInt({0}, {0})", intLiteral(cast<IntegerAttr>(c.getValue()).getValue().getSExtValue())));
    }
    return true;
  }
  if (emitComparison(op)) return true;
  if (auto load = dyn_cast<fjir::LoadOp>(op)) {
    int slot = slotOf(fn, load.getTensor(), fjir::kTensorSlotAttr);
    std::string idx = fresh(), list;
    for (Value v : load.getIndices()) list += (list.empty() ? "" : ", ") + use(v);
    statement(fmt::format("const fj::IvInt {}[] = {{{}}};", idx, list));
    std::string elem = elemName(cast<MemRefType>(load.getTensor().getType()).getElementType());
    std::string t0 = fmt::format("cap.tensor[{}]", slot);
    size_t rank = load.getIndices().size();
    if (t.isF32()) define(op, fmt::format("fj::ivLoadFloat({}, {}, {}, {})", t0, elem, rank, idx));
    else if (t.isInteger(1)) define(op, fmt::format("fj::ivLoadBool({}, {}, {})", t0, rank, idx));
    else define(op, fmt::format("fj::ivLoadInt({}, {}, {}, {})", t0, elem, rank, idx));
    return true;
  }
  bool isF = t.isF32();
  if (isa<arith::SelectOp>(op)) return call("fj::ivWhere");
  if (isa<arith::AddFOp, arith::AddIOp>(op)) return call("fj::ivAdd");
  if (isa<arith::SubFOp, arith::SubIOp>(op)) return call("fj::ivSub");
  if (isa<arith::MulFOp, arith::MulIOp>(op)) return call("fj::ivMul");
  if (isa<arith::DivFOp>(op)) return call("fj::ivDiv");
  if (isa<arith::NegFOp>(op)) return call("fj::ivNeg");
  if (isa<arith::MinimumFOp, arith::MinSIOp>(op)) return call("fj::ivMin");
  if (isa<arith::MaximumFOp, arith::MaxSIOp>(op)) return call("fj::ivMax");
  if (isa<arith::AndIOp>(op)) return call(fromBool ? "fj::ivAnd" : "fj::ivBitAnd");
  if (isa<arith::OrIOp>(op)) return call(fromBool ? "fj::ivOr" : "fj::ivBitOr");
  if (isa<arith::XOrIOp>(op)) return call(fromBool ? "fj::ivXor" : "fj::ivBitXor");
  if (isa<fjir::FloorDivOp>(op)) return call(isF ? "fj::ivFloorDivF" : "fj::ivFloorDiv");
  if (isa<fjir::ModOp>(op)) return call(isF ? "fj::ivModF" : "fj::ivMod");
  if (isa<fjir::FModOp>(op)) return call(isF ? "fj::ivFModF" : "fj::ivFMod");
  if (isa<fjir::ShlOp>(op)) return call("fj::ivShl");
  if (isa<fjir::ShrOp>(op)) return call("fj::ivShr");
  if (isa<math::PowFOp>(op)) return call("fj::ivPow");
  if (isa<fjir::SigmoidOp>(op)) return call("fj::ivSigmoid");
  if (isa<fjir::ToIntOp>(op)) return call("fj::ivFloatToInt");
  if (isa<arith::SIToFPOp>(op)) return call("fj::ivIntToFloat");
  if (isa<arith::UIToFPOp>(op) && fromBool) return call("fj::ivBoolToFloat");
  if (isa<arith::ExtUIOp>(op) && fromBool) return call("fj::ivBoolToInt");
  if (isa<math::AbsFOp, math::AbsIOp>(op)) return call("fj::ivAbs");
  if (isa<math::ExpOp>(op)) return call("fj::ivExp");
  if (isa<math::Exp2Op>(op)) return call("fj::ivExp2");
  if (isa<math::LogOp>(op)) return call("fj::ivLog");
  if (isa<math::Log2Op>(op)) return call("fj::ivLog2");
  if (isa<math::SqrtOp>(op)) return call("fj::ivSqrt");
  if (isa<math::RsqrtOp>(op)) return call("fj::ivRsqrt");
  if (isa<math::TanhOp>(op)) return call("fj::ivTanh");
  if (isa<math::FloorOp>(op)) return call("fj::ivFloor");
  if (isa<math::CeilOp>(op)) return call("fj::ivCeil");
  if (isa<math::RoundEvenOp>(op)) return call("fj::ivRound");
  if (isa<math::TruncOp>(op)) return call("fj::ivTrunc");
  if (isa<math::SinOp>(op)) return call("fj::ivSin");
  if (isa<math::CosOp>(op)) return call("fj::ivCos");
  if (isa<math::TanOp>(op)) return call("fj::ivTan");
  if (isa<math::AtanOp>(op)) return call("fj::ivAtan");
  if (isa<math::ErfOp>(op)) return call("fj::ivErf");
  if (isa<math::Log1pOp>(op)) return call("fj::ivLog1p");
  if (isa<math::ExpM1Op>(op)) return call("fj::ivExpm1");
  define(op, unknown(t));  // sound for anything not modelled
  return true;
}

}  // namespace flexjit
