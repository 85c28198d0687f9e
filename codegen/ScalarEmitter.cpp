// The forward and gradient hooks as plain CUDA: one C++ expression per arith / math / fj op, with
// flexjit's semantics (dsl/Semantics.h) and the stated fast math (codegen/templates/fastmath.cuh).
#include <fmt/format.h>

#include "codegen/FunctionEmitter.h"
#include "compiler/Dialect.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace flexjit {

namespace {

std::string cmpfExpr(arith::CmpFPredicate p, const std::string& a, const std::string& b) {
  using P = arith::CmpFPredicate;
  // C's <, <=, >, >=, == are the ordered predicates and != is UNE; unordered ones are negated complements.
  switch (p) {
    case P::AlwaysFalse: return "false";
    case P::OEQ: return fmt::format("({} == {})", a, b);
    case P::OGT: return fmt::format("({} > {})", a, b);
    case P::OGE: return fmt::format("({} >= {})", a, b);
    case P::OLT: return fmt::format("({} < {})", a, b);
    case P::OLE: return fmt::format("({} <= {})", a, b);
    case P::ONE: return fmt::format("({0} < {1} || {0} > {1})", a, b);
    case P::ORD: return fmt::format("({0} == {0} && {1} == {1})", a, b);
    case P::UEQ: return fmt::format("!({0} < {1} || {0} > {1})", a, b);
    case P::UGT: return fmt::format("!({} <= {})", a, b);
    case P::UGE: return fmt::format("!({} < {})", a, b);
    case P::ULT: return fmt::format("!({} >= {})", a, b);
    case P::ULE: return fmt::format("!({} > {})", a, b);
    case P::UNE: return fmt::format("({} != {})", a, b);
    case P::UNO: return fmt::format("({0} != {0} || {1} != {1})", a, b);
    case P::AlwaysTrue: return "true";
  }
  return "false";
}

std::string cmpiExpr(arith::CmpIPredicate p, std::string a, std::string b, bool isBool) {
  using P = arith::CmpIPredicate;
  if (isBool && p != P::eq && p != P::ne) {
    // Signed i1 compares see true as -1.
    a = fmt::format("(-(int){})", a);
    b = fmt::format("(-(int){})", b);
  }
  switch (p) {
    case P::eq: return fmt::format("({} == {})", a, b);
    case P::ne: return fmt::format("({} != {})", a, b);
    case P::slt: return fmt::format("({} < {})", a, b);
    case P::sle: return fmt::format("({} <= {})", a, b);
    case P::sgt: return fmt::format("({} > {})", a, b);
    case P::sge: return fmt::format("({} >= {})", a, b);
    case P::ult: return fmt::format("((unsigned){} < (unsigned){})", a, b);
    case P::ule: return fmt::format("((unsigned){} <= (unsigned){})", a, b);
    case P::ugt: return fmt::format("((unsigned){} > (unsigned){})", a, b);
    case P::uge: return fmt::format("((unsigned){} >= (unsigned){})", a, b);
  }
  return "false";
}

/// Whether a float value can reach an op whose result jumps with its operand (floor, ceil, round, trunc,
/// a cast to int, a comparison, float // and %), through ops that are continuous in it. Such a value must
/// be computed as the semantics say, bit for bit: an approximate division 2 ulp off turns q / 3.0 = 11
/// into 10.999999, whose floor is 10, and a mask or an index goes wrong without a word. Ops not known to
/// be continuous count as discontinuous.
bool reachesDiscontinuity(Value v, llvm::SmallPtrSetImpl<Operation*>& seen) {
  for (Operation* user : v.getUsers()) {
    if (!seen.insert(user).second) continue;
    const bool continuous =
        isa<arith::AddFOp, arith::SubFOp, arith::MulFOp, arith::DivFOp, arith::NegFOp, arith::MinimumFOp,
            arith::MaximumFOp, math::AbsFOp, math::ExpOp, math::Exp2Op, math::LogOp, math::Log2Op, math::SqrtOp,
            math::RsqrtOp, math::TanhOp, math::SinOp, math::CosOp, math::TanOp, math::AtanOp, math::ErfOp,
            math::Log1pOp, math::ExpM1Op, math::PowFOp, fjir::SigmoidOp, func::ReturnOp, fjir::GradAccumulateOp>(user) ||
        (isa<arith::SelectOp>(user) && user->getOperand(0) != v);
    if (!continuous) return true;
    for (Value r : user->getResults())
      if (r.getType().isF32() && reachesDiscontinuity(r, seen)) return true;
  }
  return false;
}

bool reachesDiscontinuity(Value v) {
  llvm::SmallPtrSet<Operation*, 16> seen;
  return reachesDiscontinuity(v, seen);
}

}  // namespace

std::string ScalarEmitter::typeName(Type t) const {
  if (t.isF32()) return "float";
  if (t.isInteger(1)) return "bool";
  return "int";
}

std::string ScalarEmitter::paramList(func::FuncOp fn) const {
  std::string params;
  bool hasGrads = false;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) {
    if (fn.getArgAttr(i, fjir::kGradSlotAttr)) hasGrads = true;
    auto p = fn.getArgAttrOfType<StringAttr>(i, fjir::kParamAttr);
    if (!p) continue;
    params += fmt::format("{} {}, ", typeName(fn.getArgument(i).getType()), p.getValue().str());
  }
  params += "const fj::CaptureArgs& cap";
  // Every gradient function (score_mod_grad, prob_mod_grad, sink_mod_grad) takes the gradient sink, also
  // when it writes no captured-tensor gradient: the adapters and the kernels always pass one (a prob_mod
  // that read no tensor requiring a gradient emitted a prob_mod_grad its adapter could not call).
  auto kind = fn->getAttrOfType<StringAttr>(fjir::kKindAttr);
  if (hasGrads || (kind && kind.getValue().ends_with("_grad")))
    params += gradSiteCount(fn) > 0 ? ", const Grads& grads" : ", const fj::GradArgs& grads";
  return params;
}

std::string ScalarEmitter::templateHeader(func::FuncOp fn) const {
  return gradSiteCount(fn) > 0 ? "template <class Grads>\n" : "";
}

bool ScalarEmitter::emitOp(Operation* op) {
  return emitArith(op) || emitMath(op) || emitFlexjit(op);
}

bool ScalarEmitter::emitArith(Operation* op) {
  auto x = [&](int k) { return use(op->getOperand(k)); };
  auto bin = [&](const char* sym) { define(op, fmt::format("({} {} {})", x(0), sym, x(1))); return true; };
  auto call = [&](const char* fn) { define(op, fmt::format("{}({}, {})", fn, x(0), x(1))); return true; };
  bool isBool = op->getNumOperands() > 0 && op->getOperand(0).getType().isInteger(1);
  if (auto c = dyn_cast<arith::ConstantOp>(op)) {
    if (auto f = dyn_cast<FloatAttr>(c.getValue())) define(op, floatLiteral(static_cast<float>(f.getValueAsDouble())));
    else if (c.getType().isInteger(1)) define(op, cast<IntegerAttr>(c.getValue()).getValue().getBoolValue() ? "true" : "false");
    else define(op, intLiteral(cast<IntegerAttr>(c.getValue()).getValue().getSExtValue()));
    return true;
  }
  if (isa<arith::AddFOp>(op)) return bin("+");
  if (isa<arith::SubFOp>(op)) return bin("-");
  if (isa<arith::MulFOp>(op)) return bin("*");
  // The approximate division wherever its 2 ulp cannot change a discrete result (softcap's score / cap
  // feeds tanh); the IEEE one where the quotient reaches a floor, a cast or a comparison.
  if (isa<arith::DivFOp>(op)) return call(reachesDiscontinuity(op->getResult(0)) ? "fj::exactDiv" : "fj::fastDiv");
  if (isa<arith::NegFOp>(op)) { define(op, fmt::format("(-{})", x(0))); return true; }
  if (isa<arith::AddIOp>(op)) return call("fj::addI");
  if (isa<arith::SubIOp>(op)) return call("fj::subI");
  if (isa<arith::MulIOp>(op)) return call("fj::mulI");
  if (isa<arith::MinSIOp>(op)) return call("fj::minI");
  if (isa<arith::MaxSIOp>(op)) return call("fj::maxI");
  if (isa<arith::MinimumFOp>(op)) return call("fj::minimumF");
  if (isa<arith::MaximumFOp>(op)) return call("fj::maximumF");
  if (isa<arith::AndIOp>(op)) return bin(isBool ? "&&" : "&");
  if (isa<arith::OrIOp>(op)) return bin(isBool ? "||" : "|");
  if (isa<arith::XOrIOp>(op)) return bin(isBool ? "!=" : "^");
  if (isa<arith::ShLIOp>(op)) { define(op, fmt::format("(int)((unsigned){} << ({} & 31))", x(0), x(1))); return true; }
  if (isa<arith::ShRSIOp>(op)) { define(op, fmt::format("({} >> ({} & 31))", x(0), x(1))); return true; }
  if (isa<arith::ShRUIOp>(op)) { define(op, fmt::format("(int)((unsigned){} >> ({} & 31))", x(0), x(1))); return true; }
  if (auto cmp = dyn_cast<arith::CmpFOp>(op)) { define(op, cmpfExpr(cmp.getPredicate(), x(0), x(1))); return true; }
  if (auto cmp = dyn_cast<arith::CmpIOp>(op)) { define(op, cmpiExpr(cmp.getPredicate(), x(0), x(1), isBool)); return true; }
  if (isa<arith::SelectOp>(op)) { define(op, fmt::format("({} ? {} : {})", x(0), x(1), x(2))); return true; }
  if (isa<arith::ExtUIOp>(op)) { define(op, fmt::format("(int){}", x(0))); return true; }
  if (isa<arith::ExtSIOp>(op)) { define(op, isBool ? fmt::format("({} ? -1 : 0)", x(0)) : x(0)); return true; }
  if (isa<arith::TruncIOp>(op)) { define(op, fmt::format("(({} & 1) != 0)", x(0))); return true; }
  if (isa<arith::SIToFPOp>(op)) { define(op, fmt::format("(float){}", x(0))); return true; }
  if (isa<arith::UIToFPOp>(op)) {
    define(op, isBool ? fmt::format("({} ? 1.0f : 0.0f)", x(0)) : fmt::format("(float)(unsigned){}", x(0)));
    return true;
  }
  if (isa<arith::FPToSIOp>(op)) { define(op, fmt::format("fj::toI32({})", x(0))); return true; }
  return false;
}

bool ScalarEmitter::emitMath(Operation* op) {
  auto unary = [&](const char* fn) { define(op, fmt::format("{}({})", fn, use(op->getOperand(0)))); return true; };
  if (isa<math::AbsFOp>(op)) return unary("fabsf");
  if (isa<math::AbsIOp>(op)) return unary("fj::absI");
  if (isa<math::ExpOp>(op)) return unary("fj::fastExp");
  if (isa<math::Exp2Op>(op)) return unary("fj::fastExp2");
  if (isa<math::LogOp>(op)) return unary("fj::fastLog");
  if (isa<math::Log2Op>(op)) return unary("fj::fastLog2");
  if (isa<math::SqrtOp>(op)) return unary("fj::fastSqrt");
  if (isa<math::RsqrtOp>(op)) return unary("fj::fastRsqrt");
  if (isa<math::TanhOp>(op)) return unary("fj::fastTanh");
  if (isa<math::FloorOp>(op)) return unary("floorf");
  if (isa<math::CeilOp>(op)) return unary("ceilf");
  if (isa<math::RoundEvenOp>(op)) return unary("fj::roundR");
  if (isa<math::TruncOp>(op)) return unary("fj::truncR");
  if (isa<math::SinOp>(op)) return unary("fj::sinR");
  if (isa<math::CosOp>(op)) return unary("fj::cosR");
  if (isa<math::TanOp>(op)) return unary("fj::tanR");
  if (isa<math::AtanOp>(op)) return unary("fj::atanR");
  if (isa<math::ErfOp>(op)) return unary("fj::erfR");
  if (isa<math::Log1pOp>(op)) return unary("fj::log1pR");
  if (isa<math::ExpM1Op>(op)) return unary("fj::expm1R");
  if (isa<math::PowFOp>(op)) {
    define(op, fmt::format("fj::powR({}, {})", use(op->getOperand(0)), use(op->getOperand(1))));
    return true;
  }
  return false;
}

bool ScalarEmitter::emitFlexjit(Operation* op) {
  auto fn = op->getParentOfType<func::FuncOp>();
  auto x = [&](int k) { return use(op->getOperand(k)); };
  auto indices = [&](ValueRange idx) {
    std::string s;
    for (Value v : idx) s += ", " + use(v);
    return s;
  };
  bool isFloat = op->getNumOperands() > 0 && op->getOperand(0).getType().isF32();
  if (isa<fjir::FloorDivOp>(op)) { define(op, fmt::format("{}({}, {})", isFloat ? "fj::floorDivF" : "fj::floorDivI", x(0), x(1))); return true; }
  if (isa<fjir::ModOp>(op)) { define(op, fmt::format("{}({}, {})", isFloat ? "fj::modF" : "fj::modI", x(0), x(1))); return true; }
  if (isa<fjir::FModOp>(op)) { define(op, fmt::format("{}({}, {})", isFloat ? "fj::fmodR" : "fj::fmodI", x(0), x(1))); return true; }
  if (isa<fjir::ShlOp>(op)) { define(op, fmt::format("fj::shlI({}, {})", x(0), x(1))); return true; }
  if (isa<fjir::ShrOp>(op)) { define(op, fmt::format("fj::shrI({}, {})", x(0), x(1))); return true; }
  if (isa<fjir::SigmoidOp>(op)) { define(op, fmt::format("fj::fastSigmoid({})", x(0))); return true; }
  if (isa<fjir::ToIntOp>(op)) { define(op, fmt::format("fj::toI32({})", x(0))); return true; }
  if (auto load = dyn_cast<fjir::LoadOp>(op)) {
    int slot = slotOf(fn, load.getTensor(), fjir::kTensorSlotAttr);
    std::string t = fmt::format("cap.tensor[{}]", slot);
    std::string elem = elemName(cast<MemRefType>(load.getTensor().getType()).getElementType());
    std::string off = fmt::format("fj::offsetOf({}{})", t, indices(load.getIndices()));
    Type rt = load.getType();
    if (rt.isF32()) define(op, fmt::format("fj::loadFloat({}, {}, {})", t, elem, off));
    else if (rt.isInteger(1)) define(op, fmt::format("(fj::loadInt({}, {}, {}) != 0)", t, elem, off));
    else define(op, fmt::format("fj::loadInt({}, {}, {})", t, elem, off));
    return true;
  }
  if (auto acc = dyn_cast<fjir::GradAccumulateOp>(op)) {
    int slot = slotOf(fn, acc.getGrad(), fjir::kGradSlotAttr);
    statement(fmt::format("grads.accumulate({0}, {1}, cap.tensor[{1}], {2}{3});", gradSiteOf(op), slot,
                          use(acc.getValue()), indices(acc.getIndices())));
    return true;
  }
  return false;
}

}  // namespace flexjit
