// Pass registration and the body of flexjit-opt (kept inside libflexjit so the tool shares its one copy
// of MLIR).
#include "compiler/OptMain.h"

#include "compiler/Dialect.h"
#include "compiler/Passes.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

namespace flexjit {

namespace {
#define GEN_PASS_REGISTRATION
#include "Passes.h.inc"
}  // namespace

void registerPasses() {
  registerFlexjitPasses();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::PassPipelineRegistration<>("fj-simplify", "canonicalize + CSE, flexjit's simplification stage",
                                   [](mlir::OpPassManager& pm) { addSimplifyPasses(pm); });
}

int optMain(int argc, char** argv) {
  registerPasses();
  mlir::DialectRegistry registry;
  fjir::registerDialects(registry);
  return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, "flexjit optimizer driver\n", registry));
}

}  // namespace flexjit
