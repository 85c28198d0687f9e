// The row / column split of a mod (see SplitEmitter.h).
#include "codegen/SplitEmitter.h"

#include <fmt/format.h>

#include "compiler/Dialect.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"

using namespace mlir;

namespace flexjit {

namespace {

// What a value depends on: the mod's parameters, one bit each (captures and constants depend on none).
constexpr unsigned kDepScore = 1, kDepB = 2, kDepH = 4, kDepQ = 8, kDepKv = 16;

unsigned paramBit(func::FuncOp fn, unsigned arg) {
  auto p = fn.getArgAttrOfType<StringAttr>(arg, fjir::kParamAttr);
  if (!p) return 0;
  const StringRef n = p.getValue();
  return n == "score" ? kDepScore : n == "b" ? kDepB : n == "h" ? kDepH : n == "q_idx" ? kDepQ : n == "kv_idx" ? kDepKv : 0;
}

/// A row op may run once per row: it reads neither the score nor kv_idx. A column op reads neither the score
/// nor q_idx. An op that reads neither index is both (it is given to the row).
bool rowOnly(unsigned d) { return (d & (kDepScore | kDepKv)) == 0; }
bool colOnly(unsigned d) { return (d & (kDepScore | kDepQ)) == 0; }

/// What hoisting an op saves per element: tensor reads, divisions and transcendental functions count as
/// several plain ops.
int opCost(Operation* op) {
  if (isa<arith::ConstantOp>(op)) return 0;
  if (isa<fjir::LoadOp, fjir::FloorDivOp, fjir::ModOp, arith::DivFOp>(op)) return 4;
  if (op->getDialect() && op->getDialect()->getNamespace() == "math") return 4;
  return 1;
}

/// Worth a split: one expensive op or two plain ones taken out of the per-element work.
constexpr int kMinHoistedCost = 2;

}  // namespace

void SplitEmitter::analyze(func::FuncOp fn) {
  deps_.clear();
  rowValues_.clear();
  colValues_.clear();
  auto depsOf = [&](Value v) -> unsigned {
    if (auto arg = dyn_cast<BlockArgument>(v)) return paramBit(fn, arg.getArgNumber());
    return deps_.lookup(v.getDefiningOp());
  };
  for (Operation& op : fn.front()) {
    unsigned d = 0;
    for (Value operand : op.getOperands()) d |= depsOf(operand);
    deps_[&op] = d;
  }
  // The frontier: values of row / column ops (not block arguments, not constants) that a per-element op
  // reads, or that the mod returns.
  llvm::DenseSet<Value> seen;
  auto addFrontier = [&](Value v) {
    Operation* def = v.getDefiningOp();
    if (!def || isa<arith::ConstantOp>(def) || !seen.insert(v).second) return;
    const unsigned d = deps_.lookup(def);
    if (rowOnly(d)) rowValues_.push_back(v);
    else if (colOnly(d)) colValues_.push_back(v);
  };
  for (Operation& op : fn.front()) {
    const unsigned d = deps_.lookup(&op);
    const bool perElement = isa<func::ReturnOp>(op) || (!rowOnly(d) && !colOnly(d));
    if (!perElement) continue;
    for (Value operand : op.getOperands()) addFrontier(operand);
  }
}

void SplitEmitter::selectPart(func::FuncOp fn, Part part) {
  selected_.clear();
  part_ = part;
  if (part == Part::Rest) {
    // Every op that is neither row nor column work, and the constants they read.
    for (Operation& op : fn.front()) {
      const unsigned d = deps_.lookup(&op);
      if (!isa<arith::ConstantOp>(op) && !rowOnly(d) && !colOnly(d)) selected_.insert(&op);
    }
    for (Operation& op : fn.front())
      if (selected_.count(&op))
        for (Value v : op.getOperands())
          if (Operation* def = v.getDefiningOp(); def && isa<arith::ConstantOp>(def)) selected_.insert(def);
    return;
  }
  llvm::SmallVector<Value> work(part == Part::Row ? rowValues_.begin() : colValues_.begin(),
                                part == Part::Row ? rowValues_.end() : colValues_.end());
  while (!work.empty()) {
    Value v = work.pop_back_val();
    Operation* def = v.getDefiningOp();
    if (def && selected_.insert(def).second) work.append(def->operand_begin(), def->operand_end());
  }
}

int SplitEmitter::elementLoads(func::FuncOp fn) {
  analyze(fn);
  int loads = 0;
  for (const auto& [op, d] : deps_)
    if (isa<fjir::LoadOp>(op) && !rowOnly(d) && !colOnly(d)) ++loads;
  return loads;
}

int SplitEmitter::hoistedCost() const {
  int cost = 0;
  for (const auto& [op, d] : deps_)
    if (!isa<func::ReturnOp>(op) && (rowOnly(d) || colOnly(d))) cost += opCost(op);
  return cost;
}

std::string SplitEmitter::paramList(func::FuncOp fn) const {
  if (part_ == Part::Row) return "int b, int h, int q_idx, const fj::CaptureArgs& cap";
  if (part_ == Part::Col) return "int b, int h, int kv_idx, const fj::CaptureArgs& cap";
  std::string params = ScalarEmitter::paramList(fn);
  const std::string capParam = "const fj::CaptureArgs& cap";
  return params.replace(params.find(capParam), capParam.size(),
                        fmt::format("const {0}_Row& row, const {0}_Col& col, {1}", name_, capParam));
}

bool SplitEmitter::emitOp(Operation* op) {
  if (!selected_.count(op)) return true;  // another part computes it
  return ScalarEmitter::emitOp(op);
}

std::string SplitEmitter::emitPart(func::FuncOp fn, const std::string& name, Part part) {
  selectPart(fn, part);
  const std::vector<Value>& fields = part == Part::Row ? rowValues_ : colValues_;
  if (part == Part::Rest) {
    for (size_t k = 0; k < rowValues_.size(); ++k) bind(rowValues_[k], fmt::format("row.r{}", k));
    for (size_t k = 0; k < colValues_.size(); ++k) bind(colValues_[k], fmt::format("col.c{}", k));
    return emit(fn, name + "_split");
  }
  emitBody(fn, name);
  const char* type = part == Part::Row ? "_Row" : "_Col";
  std::string init;
  for (size_t k = 0; k < fields.size(); ++k) init += fmt::format("{}{}", k ? ", " : "", use(fields[k]));
  return fmt::format("FJ_HD {0}{1} {0}{2}({3}) {{\n{4}  return {0}{1}{{{5}}};\n}}\n", name, type,
                     part == Part::Row ? "_row" : "_col", paramList(fn), body(), init);
}

std::string SplitEmitter::emitSplit(func::FuncOp fn, const std::string& name) {
  name_ = name;
  analyze(fn);
  if (hoistedCost() < kMinHoistedCost || (rowValues_.empty() && colValues_.empty())) return "";
  auto structOf = [&](const char* suffix, const char* field, const std::vector<Value>& values) {
    std::string s = fmt::format("struct {}{} {{\n", name, suffix);
    for (size_t k = 0; k < values.size(); ++k) s += fmt::format("  {} {}{};\n", typeName(values[k].getType()), field, k);
    return s + "};\n";
  };
  std::string out = structOf("_Row", "r", rowValues_) + structOf("_Col", "c", colValues_);
  out += emitPart(fn, name, Part::Row) + emitPart(fn, name, Part::Col) + emitPart(fn, name, Part::Rest);
  return out;
}

}  // namespace flexjit
