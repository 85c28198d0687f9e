#include "codegen/FunctionEmitter.h"

#include <fmt/format.h>

#include <cmath>

#include "compiler/Dialect.h"
#include "dsl/Error.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace flexjit {

std::string FunctionEmitter::emit(func::FuncOp fn, const std::string& name) {
  Value result = emitBody(fn, name);
  return fmt::format("{}FJ_HD {} {}({}) {{\n{}  return {};\n}}\n", templateHeader(fn), typeName(fn.getResultTypes()[0]),
                     name, paramList(fn), body_, use(result));
}

Value FunctionEmitter::emitBody(func::FuncOp fn, const std::string& name) {
  names_.clear();
  body_.clear();
  next_ = 0;
  for (unsigned i = 0; i < fn.getNumArguments(); ++i) names_[fn.getArgument(i)] = argExpr(fn, i);
  for (const auto& [value, expr] : preBound_) names_[value] = expr;
  preBound_.clear();
  Value result;
  for (Operation& op : fn.front()) {
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      result = ret.getOperand(0);
      continue;
    }
    if (!emitOp(&op)) {
      std::string text;
      llvm::raw_string_ostream os(text);
      op.print(os);
      throw Error(fmt::format("flexjit codegen: no CUDA form for `{}` in {}; please report this with the mod",
                              text, name));
    }
  }
  return result;
}

int FunctionEmitter::gradSiteOf(Operation* op) {
  int site = 0;
  for (Operation& other : *op->getBlock()) {
    if (&other == op) return site;
    if (isa<fjir::GradAccumulateOp>(other)) ++site;
  }
  return site;
}

int FunctionEmitter::gradSiteCount(func::FuncOp fn) {
  int sites = 0;
  fn.walk([&](fjir::GradAccumulateOp) { ++sites; });
  return sites;
}

std::set<std::string> FunctionEmitter::indexDependencies(Operation* site, llvm::DenseSet<Operation*>& ops) {
  auto acc = cast<fjir::GradAccumulateOp>(site);
  auto fn = site->getParentOfType<func::FuncOp>();
  std::set<std::string> params;
  llvm::SmallVector<Value> work(acc.getIndices().begin(), acc.getIndices().end());
  while (!work.empty()) {
    Value v = work.pop_back_val();
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      if (auto p = fn.getArgAttrOfType<StringAttr>(arg.getArgNumber(), fjir::kParamAttr)) params.insert(p.str());
    } else if (Operation* def = v.getDefiningOp(); def && ops.insert(def).second) {
      work.append(def->operand_begin(), def->operand_end());
    }
  }
  return params;
}

bool FunctionEmitter::gradSiteMixesQAndKv(func::FuncOp fn) {
  bool mixed = false;
  fn.walk([&](fjir::GradAccumulateOp site) {
    llvm::DenseSet<Operation*> ops;
    const std::set<std::string> params = indexDependencies(site, ops);
    mixed |= params.count("q_idx") && params.count("kv_idx");
  });
  return mixed;
}

std::string FunctionEmitter::argExpr(func::FuncOp fn, unsigned index) const {
  if (auto p = fn.getArgAttrOfType<StringAttr>(index, fjir::kParamAttr)) return p.getValue().str();
  if (auto s = fn.getArgAttrOfType<IntegerAttr>(index, fjir::kScalarSlotAttr))
    return fmt::format("cap.{}[{}]", fn.getArgument(index).getType().isF32() ? "f" : "i", s.getInt());
  return "";  // tensors and gradient buffers are only used through their slots
}

const std::string& FunctionEmitter::use(Value v) const {
  auto it = names_.find(v);
  if (it == names_.end()) throw Error("flexjit codegen: internal error, a value is used before its definition");
  return it->second;
}

void FunctionEmitter::define(Operation* op, const std::string& expr) {
  std::string name = fmt::format("v{}", next_++);
  statement(fmt::format("const {} {} = {};", typeName(op->getResult(0).getType()), name, expr));
  names_[op->getResult(0)] = name;
}

std::string FunctionEmitter::fresh() { return fmt::format("v{}", next_++); }

int FunctionEmitter::slotOf(func::FuncOp fn, Value v, const char* attr) {
  auto arg = dyn_cast<BlockArgument>(v);
  if (!arg) throw Error("flexjit codegen: a captured tensor must be a function argument");
  auto slot = fn.getArgAttrOfType<IntegerAttr>(arg.getArgNumber(), attr);
  if (!slot) throw Error(fmt::format("flexjit codegen: argument {} has no {} slot", arg.getArgNumber(), attr));
  return static_cast<int>(slot.getInt());
}

std::string FunctionEmitter::elemName(Type t) {
  if (t.isF32()) return "fj::kElemF32";
  if (t.isF16()) return "fj::kElemF16";
  if (t.isBF16()) return "fj::kElemBF16";
  if (t.isInteger(8)) return "fj::kElemBool";
  if (t.isInteger(32)) return "fj::kElemI32";
  if (t.isInteger(64)) return "fj::kElemI64";
  throw Error("flexjit codegen: unsupported captured tensor element type");
}

std::string FunctionEmitter::floatLiteral(float v) {
  if (std::isnan(v)) return "fj::quietNaN()";
  if (std::isinf(v)) return v > 0 ? "fj::infinity()" : "(-fj::infinity())";
  // Shortest text that reads back as the same float; make sure it has a '.' or exponent before 'f'.
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  s += "f";
  return v < 0 || std::signbit(v) ? "(" + s + ")" : s;
}

std::string FunctionEmitter::intLiteral(int64_t v) {
  if (v == INT32_MIN) return "(-2147483647 - 1)";
  return v < 0 ? fmt::format("({})", v) : fmt::format("{}", v);
}

}  // namespace flexjit
