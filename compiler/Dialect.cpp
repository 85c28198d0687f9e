// The fj dialect: registration, folders and verifiers. Folders use dsl/Semantics.h, so constant folding
// computes exactly what the interpreter and the GPU compute.
#include "compiler/Dialect.h"

#include "dsl/Semantics.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpImplementation.h"

#include <cmath>

#include "FlexjitDialect.cpp.inc"

#define GET_OP_CLASSES
#include "FlexjitOps.cpp.inc"

using namespace mlir;

namespace flexjit::fjir {

void FlexjitDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "FlexjitOps.cpp.inc"
      >();
}

Operation* FlexjitDialect::materializeConstant(OpBuilder& builder, Attribute value, Type type, Location loc) {
  return arith::ConstantOp::materialize(builder, value, type, loc);
}

void registerDialects(DialectRegistry& registry) {
  registry.insert<FlexjitDialect, func::FuncDialect, arith::ArithDialect, math::MathDialect, memref::MemRefDialect>();
}

namespace {

std::optional<int32_t> intConstant(Attribute a) {
  if (auto i = llvm::dyn_cast_if_present<IntegerAttr>(a)) return static_cast<int32_t>(i.getInt());
  return std::nullopt;
}

std::optional<float> floatConstant(Attribute a) {
  if (auto f = llvm::dyn_cast_if_present<FloatAttr>(a)) return static_cast<float>(f.getValueAsDouble());
  return std::nullopt;
}

/// Folds a binary int/float op whose operands are both constants.
template <class IntFn, class FloatFn>
OpFoldResult foldBinary(Type type, ArrayRef<Attribute> operands, IntFn intFn, FloatFn floatFn) {
  if (type.isInteger(32)) {
    auto a = intConstant(operands[0]), b = intConstant(operands[1]);
    if (a && b) return IntegerAttr::get(type, intFn(*a, *b));
  } else {
    auto a = floatConstant(operands[0]), b = floatConstant(operands[1]);
    if (a && b) return FloatAttr::get(type, floatFn(*a, *b));
  }
  return {};
}

bool isIntOne(Attribute a) { return intConstant(a) == 1; }

/// Checks that indices match a memref's rank.
LogicalResult verifyIndexing(Operation* op, MemRefType type, size_t numIndices) {
  if (static_cast<int64_t>(numIndices) != type.getRank())
    return op->emitOpError() << "indexes a rank-" << type.getRank() << " tensor with " << numIndices << " indices";
  if (type.getRank() < 1 || type.getRank() > fj::kMaxRank)
    return op->emitOpError() << "supports ranks 1 to " << fj::kMaxRank << ", got " << type.getRank();
  return success();
}

}  // namespace

OpFoldResult FloorDivOp::fold(FoldAdaptor adaptor) {
  // x // 1 == x for ints (for floats floor_divide(x, 1) == floor(x), not x).
  if (getType().isInteger(32) && isIntOne(adaptor.getRhs())) return getLhs();
  return foldBinary(getType(), adaptor.getOperands(), fj::floorDivI, fj::floorDivF<float>);
}

OpFoldResult ModOp::fold(FoldAdaptor adaptor) {
  if (getType().isInteger(32) && isIntOne(adaptor.getRhs())) return IntegerAttr::get(getType(), 0);
  return foldBinary(getType(), adaptor.getOperands(), fj::modI, fj::modF<float>);
}

OpFoldResult FModOp::fold(FoldAdaptor adaptor) {
  return foldBinary(getType(), adaptor.getOperands(), fj::fmodI, [](float a, float b) { return fj::fmodR(a, b); });
}

OpFoldResult ShlOp::fold(FoldAdaptor adaptor) {
  return foldBinary(getType(), adaptor.getOperands(), fj::shlI, [](float, float) { return 0.0f; });
}

OpFoldResult ShrOp::fold(FoldAdaptor adaptor) {
  return foldBinary(getType(), adaptor.getOperands(), fj::shrI, [](float, float) { return 0.0f; });
}

OpFoldResult SigmoidOp::fold(FoldAdaptor adaptor) {
  if (auto x = floatConstant(adaptor.getInput())) return FloatAttr::get(getType(), 1.0f / (1.0f + std::exp(-*x)));
  return {};
}

OpFoldResult ToIntOp::fold(FoldAdaptor adaptor) {
  if (auto x = floatConstant(adaptor.getInput())) return IntegerAttr::get(getType(), fj::toI32(*x));
  return {};
}

LogicalResult LoadOp::verify() {
  auto type = llvm::cast<MemRefType>(getTensor().getType());
  if (failed(verifyIndexing(*this, type, getIndices().size()))) return failure();
  Type elem = type.getElementType(), result = getResult().getType();
  bool ok = (llvm::isa<FloatType>(elem) && result.isF32()) ||
            ((elem.isInteger(32) || elem.isInteger(64)) && result.isInteger(32)) ||
            (elem.isInteger(8) && result.isInteger(1));
  if (!ok) return emitOpError() << "cannot read " << elem << " elements as " << result;
  return success();
}

LogicalResult GradAccumulateOp::verify() {
  auto type = llvm::cast<MemRefType>(getGrad().getType());
  if (!type.getElementType().isF32()) return emitOpError() << "gradient buffers are f32, got " << type.getElementType();
  return verifyIndexing(*this, type, getIndices().size());
}

}  // namespace flexjit::fjir
