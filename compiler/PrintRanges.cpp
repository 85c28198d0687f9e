// fj-print-ranges: prints the range analysis' verdict per mod for a parameter box (lit tests).
#include <string>

#include "compiler/Dialect.h"
#include "compiler/Passes.h"
#include "compiler/RangeAnalysis.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/AsmState.h"
#include "llvm/Support/raw_ostream.h"

namespace flexjit {
#define GEN_PASS_DEF_FJPRINTRANGES
#include "Passes.h.inc"
}  // namespace flexjit

using namespace mlir;

namespace flexjit {

namespace {

/// Parses "lo:hi" (inclusive).
std::optional<fj::IvInt> parseRange(const std::string& text) {
  size_t colon = text.find(':');
  if (colon == std::string::npos) return std::nullopt;
  try {
    long long lo = std::stoll(text.substr(0, colon)), hi = std::stoll(text.substr(colon + 1));
    if (lo > hi || lo < fj::kI32Min || hi > fj::kI32Max) return std::nullopt;
    return fj::ivInt(lo, hi);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void printRange(raw_ostream& os, Type t, const ValueRange& r) {
  if (t.isInteger(1)) os << (r.b.canFalse && r.b.canTrue ? "{false, true}" : r.b.canTrue ? "{true}" : "{false}");
  else if (t.isInteger(32)) os << "[" << r.i.lo << ", " << r.i.hi << "]";
  else if (t.isF32()) os << "[" << r.f.lo << ", " << r.f.hi << "]" << (r.f.nan ? " or NaN" : "");
  else os << "?";
}

struct PrintRangesPass : impl::FJPrintRangesBase<PrintRangesPass> {
  using FJPrintRangesBase::FJPrintRangesBase;

  void runOnOperation() override {
    ParamBox params;
    const std::pair<const std::string*, fj::IvInt*> fields[] = {
        {&bRange, &params.box.b}, {&hRange, &params.box.h}, {&qRange, &params.box.q}, {&kvRange, &params.box.kv}};
    for (auto [text, slot] : fields) {
      auto r = parseRange(*text);
      if (!r) {
        getOperation().emitError() << "fj-print-ranges: bad range '" << *text << "', expected lo:hi with lo <= hi";
        return signalPassFailure();
      }
      *slot = *r;
    }
    for (auto fn : getOperation().getOps<func::FuncOp>()) {
      auto kind = fn->getAttrOfType<StringAttr>(fjir::kKindAttr);
      if (!kind || kind.getValue().ends_with("_grad")) continue;
      RangeAnalysis analysis(fn, params);
      llvm::outs() << "@" << fn.getName() << ": " << blockClassName(analysis.classify()) << "\n";
      if (printValues) printAll(fn, analysis);
    }
  }

  void printAll(func::FuncOp fn, const RangeAnalysis& analysis) {
    AsmState state(fn);
    for (Operation& op : fn.front()) {
      if (op.getNumResults() != 1) continue;
      llvm::outs() << "  ";
      op.getResult(0).printAsOperand(llvm::outs(), state);
      llvm::outs() << " = " << op.getName() << " : ";
      printRange(llvm::outs(), op.getResult(0).getType(), analysis.range(op.getResult(0)));
      llvm::outs() << "\n";
    }
  }
};

}  // namespace

}  // namespace flexjit
