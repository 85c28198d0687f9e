// lowerMods: import -> verify -> autodiff -> simplify, collecting diagnostics into
// flexjit::Error instead of printing them.
#include "compiler/Pipeline.h"

#include <fmt/format.h>

#include "compiler/Dialect.h"
#include "compiler/Import.h"
#include "compiler/Passes.h"
#include "compiler/RangeAnalysis.h"
#include "dsl/Error.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;

namespace flexjit {

namespace {

/// Collects MLIR diagnostics so failures become one readable flexjit::Error.
class DiagnosticCollector {
 public:
  explicit DiagnosticCollector(MLIRContext* ctx)
      : handler_(ctx, [this](Diagnostic& d) {
          llvm::raw_string_ostream os(text_);
          os << d.getLocation() << ": " << d << "\n";
          return success();
        }) {}
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  ScopedDiagnosticHandler handler_;
};

void runPasses(ModuleOp module, const std::function<void(OpPassManager&)>& build, const char* stage,
               const DiagnosticCollector& diags, const std::string& what) {
  PassManager pm(module.getContext());
  build(pm);
  if (failed(pm.run(module)))
    throw Error(fmt::format("flexjit compiler: {} failed for {}:\n{}", stage, what, diags.text()));
}

bool returnsScoreUnchanged(func::FuncOp fn) {
  auto ret = cast<func::ReturnOp>(fn.front().getTerminator());
  auto arg = dyn_cast<BlockArgument>(ret.getOperand(0));
  return arg && arg.getArgNumber() == 0;
}

ModFacts deriveFacts(const LoweredMods& lowered, const ScoreMod& score, const ExtraHooks& extra) {
  ModFacts facts;
  ParamBox everywhere;
  func::FuncOp scoreFn = lowered.lookup("score_mod"), maskFn = lowered.lookup("mask_mod");
  facts.scoreIsNoop = returnsScoreUnchanged(scoreFn);
  facts.maskIsNoop = RangeAnalysis(maskFn, everywhere).classify() == BlockClass::Full;
  facts.scoreCanBeNegInf = RangeAnalysis(scoreFn, everywhere).classify() != BlockClass::Full;
  for (const auto& t : score.tensors()) facts.hasTensorGrads |= t->requiresGrad;
  facts.maskReadsTensors = maskFn.walk([](fjir::LoadOp) { return WalkResult::interrupt(); }).wasInterrupted();
  maskFn.walk([&](Operation* op) {
    if (!op->hasTrait<OpTrait::ConstantLike>() && !isa<func::ReturnOp, func::FuncOp>(op)) ++facts.maskOps;
  });
  facts.hasSink = extra.sink.has_value();
  if (extra.sink)
    for (const auto& t : extra.sink->tensors()) facts.sinkHasTensorGrads |= t->requiresGrad;
  facts.hasProb = extra.prob.has_value();
  if (extra.prob) {
    for (const auto& t : extra.prob->tensors()) facts.probHasTensorGrads |= t->requiresGrad;
    // prob_mod(p, b, h, q_idx, kv_idx, num_visible): argument 5, read or not after simplification.
    constexpr unsigned kVisibleArg = 5;
    facts.probReadsVisible = !lowered.lookup("prob_mod").getArgument(kVisibleArg).use_empty();
  }
  return facts;
}

}  // namespace

std::string toText(Operation* op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os);
  return text;
}

func::FuncOp LoweredMods::lookup(const std::string& name) const {
  ModuleOp m = module.get();
  return m.lookupSymbol<func::FuncOp>(name);
}

LoweredMods lowerMods(const ScoreMod& score, const MaskMod& mask, const LowerOptions& options,
                      const ExtraHooks& extra) {
  for (const auto& t : mask.tensors())
    if (t->requiresGrad)
      throw Error(fmt::format("{} reads captured tensor '{}' which requires a gradient, but masks have no "
                              "gradient; read it in the score_mod instead", mask.describe(), t->name));
  LoweredMods out;
  DialectRegistry registry;
  fjir::registerDialects(registry);
  out.context = std::make_unique<MLIRContext>(registry, MLIRContext::Threading::DISABLED);
  out.context->loadAllAvailableDialects();
  DiagnosticCollector diags(out.context.get());

  OpBuilder b(out.context.get());
  out.module = ModuleOp::create(b.getUnknownLoc());
  importMod(*out.module, score, "score_mod", SlotBase{});
  SlotBase base{static_cast<int>(score.tensors().size()), static_cast<int>(score.scalars().size())};
  importMod(*out.module, mask, "mask_mod", base);
  base.tensor += static_cast<int>(mask.tensors().size());
  base.scalar += static_cast<int>(mask.scalars().size());
  std::string what = fmt::format("{} with {}", score.describe(), mask.describe());
  for (const Mod* hook : {extra.sink ? static_cast<const Mod*>(&*extra.sink) : nullptr,
                          extra.prob ? static_cast<const Mod*>(&*extra.prob) : nullptr}) {
    if (!hook) continue;
    importMod(*out.module, *hook, modKindName(hook->kind()), base);
    base.tensor += static_cast<int>(hook->tensors().size());
    base.scalar += static_cast<int>(hook->scalars().size());
    what += " and " + hook->describe();
  }
  if (failed(verify(*out.module)))
    throw Error(fmt::format("flexjit compiler: the imported IR of {} does not verify (a flexjit bug):\n{}", what, diags.text()));
  out.importedIR = toText(*out.module);

  // The gradient is that of the mod as written (the interpreter's reverse mode, the CPU reference, walks the
  // same graph): autodiff runs before simplification. The chain rule's zero adjoints give NaN against an
  // infinite local derivative (as in torch), so differentiating the simplified mod made gradients depend on
  // what the folders could prove: where(false, rsqrt(score), y) lost its dead branch and with it the NaN.
  if (options.withGradient)
    runPasses(*out.module, [](OpPassManager& pm) { pm.addPass(createFJAutodiff()); }, "automatic differentiation",
              diags, what);
  out.differentiatedIR = toText(*out.module);
  if (options.simplify) runPasses(*out.module, addSimplifyPasses, "simplification", diags, what);
  out.simplifiedIR = toText(*out.module);
  out.facts = deriveFacts(out, score, extra);
  return out;
}

void addSimplifyPasses(OpPassManager& pm) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createCanonicalizerPass());
}

}  // namespace flexjit
