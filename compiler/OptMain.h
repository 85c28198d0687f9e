// Entry point of the flexjit-opt tool: mlir-opt with the fj dialect and flexjit's passes registered.
#pragma once

namespace flexjit {

/// Runs mlir-opt's main with flexjit's dialects and passes (fj-autodiff, fj-print-ranges, fj-simplify).
int optMain(int argc, char** argv);

}  // namespace flexjit
