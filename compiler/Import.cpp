// DSL -> MLIR import. The interpreter's flattened Program fixes the op order, so the same mod always
// gives the same IR (codegen is byte-deterministic downstream).
#include "compiler/Import.h"

#include <fmt/format.h>

#include "compiler/Dialect.h"
#include "dsl/Error.h"
#include "dsl/Interpreter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"

using namespace mlir;

namespace flexjit {

namespace {

Type scalarType(MLIRContext* ctx, ScalarType t) {
  switch (t) {
    case ScalarType::Bool: return IntegerType::get(ctx, 1);
    case ScalarType::I32: return IntegerType::get(ctx, 32);
    case ScalarType::F32: return Float32Type::get(ctx);
  }
  return {};
}

Type storageType(MLIRContext* ctx, DType d) {
  switch (d) {
    case DType::Bool: return IntegerType::get(ctx, 8);
    case DType::I32: return IntegerType::get(ctx, 32);
    case DType::I64: return IntegerType::get(ctx, 64);
    case DType::F32: return Float32Type::get(ctx);
    case DType::F16: return Float16Type::get(ctx);
    case DType::BF16: return BFloat16Type::get(ctx);
  }
  return {};
}

/// Emits one flattened instruction; `values` holds the results of earlier ones.
class InstrEmitter {
 public:
  InstrEmitter(OpBuilder& b, Location loc, func::FuncOp fn, const std::vector<Param>& params)
      : b_(b), loc_(loc), fn_(fn), params_(params), numParams_(static_cast<int>(params.size())) {}

  Value emit(const Instr& in, const std::vector<Value>& values) {
    auto arg = [&](int k) { return values[in.args[k]]; };
    switch (in.op) {
      case Op::Param: return fn_.getArgument(paramArgIndex(in.param));
      case Op::Const: return constant(in);
      case Op::Scalar: return fn_.getArgument(numParams_ + numTensors_ + in.capture);
      case Op::Load: {
        SmallVector<Value> idx;
        for (size_t k = 0; k < in.args.size(); ++k) idx.push_back(arg(static_cast<int>(k)));
        Value tensor = fn_.getArgument(numParams_ + in.capture);
        return b_.create<fjir::LoadOp>(loc_, resultType(in), tensor, idx);
      }
      case Op::Where: return b_.create<arith::SelectOp>(loc_, arg(0), arg(1), arg(2));
      default: break;
    }
    if (in.args.size() == 1) return unary(in, arg(0));
    return binary(in, arg(0), arg(1));
  }

  void setNumTensors(int n) { numTensors_ = n; }

 private:
  Type resultType(const Instr& in) { return scalarType(b_.getContext(), in.type); }

  /// The argument a parameter is: the hook kind's parameter list says (a mask_mod has no score, a sink_mod
  /// neither score nor kv_idx; checkedBody rejected reads of parameters a kind does not have).
  int paramArgIndex(Param p) {
    for (int k = 0; k < numParams_; ++k)
      if (params_[k] == p) return k;
    return 0;
  }

  Value constant(const Instr& in) {
    switch (in.type) {
      case ScalarType::F32:
        return b_.create<arith::ConstantOp>(loc_, b_.getF32FloatAttr(static_cast<float>(in.fconst)));
      case ScalarType::I32:
        return b_.create<arith::ConstantOp>(loc_, b_.getI32IntegerAttr(static_cast<int32_t>(in.iconst)));
      case ScalarType::Bool: return b_.create<arith::ConstantOp>(loc_, b_.getBoolAttr(in.iconst != 0));
    }
    return {};
  }

  Value unary(const Instr& in, Value x) {
    Type from = x.getType();
    bool isF = from.isF32(), isBool = from.isInteger(1);
    switch (in.op) {
      case Op::ToF32:
        return isBool ? b_.create<arith::UIToFPOp>(loc_, b_.getF32Type(), x).getResult()
                      : b_.create<arith::SIToFPOp>(loc_, b_.getF32Type(), x).getResult();
      case Op::ToI32:
        return isF ? b_.create<fjir::ToIntOp>(loc_, b_.getI32Type(), x).getResult()
                   : b_.create<arith::ExtUIOp>(loc_, b_.getI32Type(), x).getResult();
      case Op::ToBool:
        if (isF) return b_.create<arith::CmpFOp>(loc_, arith::CmpFPredicate::UNE, x, floatConst(0.0f));
        return b_.create<arith::CmpIOp>(loc_, arith::CmpIPredicate::ne, x, intConst(0, from));
      case Op::Neg:
        return isF ? b_.create<arith::NegFOp>(loc_, x).getResult()
                   : b_.create<arith::SubIOp>(loc_, intConst(0, from), x).getResult();
      case Op::Abs:
        return isF ? b_.create<math::AbsFOp>(loc_, x).getResult() : b_.create<math::AbsIOp>(loc_, x).getResult();
      case Op::Not: return b_.create<arith::XOrIOp>(loc_, x, intConst(-1, from));  // all ones: true / ~0
      case Op::Exp: return b_.create<math::ExpOp>(loc_, x);
      case Op::Exp2: return b_.create<math::Exp2Op>(loc_, x);
      case Op::Log: return b_.create<math::LogOp>(loc_, x);
      case Op::Log2: return b_.create<math::Log2Op>(loc_, x);
      case Op::Sqrt: return b_.create<math::SqrtOp>(loc_, x);
      case Op::Rsqrt: return b_.create<math::RsqrtOp>(loc_, x);
      case Op::Tanh: return b_.create<math::TanhOp>(loc_, x);
      case Op::Sigmoid: return b_.create<fjir::SigmoidOp>(loc_, x);
      case Op::Floor: return b_.create<math::FloorOp>(loc_, x);
      case Op::Ceil: return b_.create<math::CeilOp>(loc_, x);
      case Op::Round: return b_.create<math::RoundEvenOp>(loc_, x);
      case Op::Trunc: return b_.create<math::TruncOp>(loc_, x);
      case Op::Sin: return b_.create<math::SinOp>(loc_, x);
      case Op::Cos: return b_.create<math::CosOp>(loc_, x);
      case Op::Tan: return b_.create<math::TanOp>(loc_, x);
      case Op::Atan: return b_.create<math::AtanOp>(loc_, x);
      case Op::Erf: return b_.create<math::ErfOp>(loc_, x);
      case Op::Log1p: return b_.create<math::Log1pOp>(loc_, x);
      case Op::Expm1: return b_.create<math::ExpM1Op>(loc_, x);
      default: break;
    }
    throw Error(fmt::format("internal: no MLIR lowering for unary op '{}'", opName(in.op)));
  }

  Value binary(const Instr& in, Value x, Value y) {
    bool isF = x.getType().isF32();
    if (auto cmp = comparison(in.op, isF, x, y)) return cmp;
    switch (in.op) {
      case Op::Add: return isF ? b_.create<arith::AddFOp>(loc_, x, y).getResult() : b_.create<arith::AddIOp>(loc_, x, y).getResult();
      case Op::Sub: return isF ? b_.create<arith::SubFOp>(loc_, x, y).getResult() : b_.create<arith::SubIOp>(loc_, x, y).getResult();
      case Op::Mul: return isF ? b_.create<arith::MulFOp>(loc_, x, y).getResult() : b_.create<arith::MulIOp>(loc_, x, y).getResult();
      case Op::Div: return b_.create<arith::DivFOp>(loc_, x, y);
      case Op::FloorDiv: return b_.create<fjir::FloorDivOp>(loc_, x, y);
      case Op::Mod: return b_.create<fjir::ModOp>(loc_, x, y);
      case Op::FMod: return b_.create<fjir::FModOp>(loc_, x, y);
      case Op::Pow: return b_.create<math::PowFOp>(loc_, x, y);
      case Op::Shl: return b_.create<fjir::ShlOp>(loc_, x, y);
      case Op::Shr: return b_.create<fjir::ShrOp>(loc_, x, y);
      case Op::Min: return isF ? b_.create<arith::MinimumFOp>(loc_, x, y).getResult() : b_.create<arith::MinSIOp>(loc_, x, y).getResult();
      case Op::Max: return isF ? b_.create<arith::MaximumFOp>(loc_, x, y).getResult() : b_.create<arith::MaxSIOp>(loc_, x, y).getResult();
      case Op::And: return b_.create<arith::AndIOp>(loc_, x, y);
      case Op::Or: return b_.create<arith::OrIOp>(loc_, x, y);
      case Op::Xor: return b_.create<arith::XOrIOp>(loc_, x, y);
      default: break;
    }
    throw Error(fmt::format("internal: no MLIR lowering for binary op '{}'", opName(in.op)));
  }

  /// torch comparison semantics: ordered predicates (false on NaN) except `!=`, which is true on NaN.
  Value comparison(Op op, bool isF, Value x, Value y) {
    using FP = arith::CmpFPredicate;
    using IP = arith::CmpIPredicate;
    std::optional<std::pair<FP, IP>> preds;
    switch (op) {
      case Op::Eq: preds = {FP::OEQ, IP::eq}; break;
      case Op::Ne: preds = {FP::UNE, IP::ne}; break;
      case Op::Lt: preds = {FP::OLT, IP::slt}; break;
      case Op::Le: preds = {FP::OLE, IP::sle}; break;
      case Op::Gt: preds = {FP::OGT, IP::sgt}; break;
      case Op::Ge: preds = {FP::OGE, IP::sge}; break;
      default: return {};
    }
    if (isF) return b_.create<arith::CmpFOp>(loc_, preds->first, x, y);
    return b_.create<arith::CmpIOp>(loc_, preds->second, x, y);
  }

  Value floatConst(float v) { return b_.create<arith::ConstantOp>(loc_, b_.getF32FloatAttr(v)); }
  Value intConst(int64_t v, Type t) { return b_.create<arith::ConstantOp>(loc_, b_.getIntegerAttr(t, v)); }

  OpBuilder& b_;
  Location loc_;
  func::FuncOp fn_;
  std::vector<Param> params_;
  int numParams_;
  int numTensors_ = 0;
};

}  // namespace

MemRefType capturedTensorType(MLIRContext* ctx, DType dtype, int rank) {
  SmallVector<int64_t> shape(rank, ShapedType::kDynamic);
  auto layout = StridedLayoutAttr::get(ctx, ShapedType::kDynamic, SmallVector<int64_t>(rank, ShapedType::kDynamic));
  return MemRefType::get(shape, storageType(ctx, dtype), layout);
}

func::FuncOp importMod(ModuleOp module, const Mod& mod, const std::string& funcName, SlotBase base) {
  MLIRContext* ctx = module.getContext();
  int numTensors = static_cast<int>(mod.tensors().size()), numScalars = static_cast<int>(mod.scalars().size());
  if (base.tensor + numTensors > fj::kMaxCapturedTensors || base.scalar + numScalars > fj::kMaxCapturedScalars)
    throw Error(fmt::format("{} captures {} tensors and {} scalars; a variant may capture at most {} tensors and {} "
                            "scalars in all its hooks together (concatenate small tensors into one)",
                            mod.describe(), numTensors, numScalars, fj::kMaxCapturedTensors, fj::kMaxCapturedScalars));
  const HookKindInfo& kind = hookKind(mod.kind());
  const int numParams = static_cast<int>(kind.params.size());

  OpBuilder b(ctx);
  SmallVector<Type> argTypes;
  for (Param p : kind.params) argTypes.push_back(p == Param::Score ? Type(b.getF32Type()) : Type(b.getI32Type()));
  for (const auto& t : mod.tensors()) argTypes.push_back(capturedTensorType(ctx, t->dtype, t->rank));
  for (const auto& s : mod.scalars()) argTypes.push_back(scalarType(ctx, s->type));
  Type resultType = scalarType(ctx, kind.result);

  Location loc = NameLoc::get(b.getStringAttr(mod.name()));
  b.setInsertionPointToEnd(module.getBody());
  auto fn = b.create<func::FuncOp>(loc, funcName, b.getFunctionType(argTypes, resultType));
  fn->setAttr(fjir::kKindAttr, b.getStringAttr(kind.name));
  fn->setAttr(fjir::kModNameAttr, b.getStringAttr(mod.name()));
  for (int p = 0; p < numParams; ++p) fn.setArgAttr(p, fjir::kParamAttr, b.getStringAttr(paramName(kind.params[p])));
  for (int t = 0; t < numTensors; ++t) {
    fn.setArgAttr(numParams + t, fjir::kTensorSlotAttr, b.getI32IntegerAttr(base.tensor + t));
    fn.setArgAttr(numParams + t, fjir::kCaptureNameAttr, b.getStringAttr(mod.tensors()[t]->name));
    if (mod.tensors()[t]->requiresGrad) fn.setArgAttr(numParams + t, fjir::kRequiresGradAttr, b.getUnitAttr());
  }
  for (int s = 0; s < numScalars; ++s) {
    fn.setArgAttr(numParams + numTensors + s, fjir::kScalarSlotAttr, b.getI32IntegerAttr(base.scalar + s));
    fn.setArgAttr(numParams + numTensors + s, fjir::kCaptureNameAttr, b.getStringAttr(mod.scalars()[s]->name));
  }

  Block* entry = fn.addEntryBlock();
  b.setInsertionPointToStart(entry);
  InstrEmitter emitter(b, loc, fn, kind.params);
  emitter.setNumTensors(numTensors);
  Program program(mod);
  std::vector<Value> values;
  for (const Instr& in : program.instrs()) values.push_back(emitter.emit(in, values));
  b.create<func::ReturnOp>(loc, values.back());
  return fn;
}

}  // namespace flexjit
