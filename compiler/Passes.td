//===- Passes.td - flexjit's passes ------------------------------------------------------------------===//

#ifndef FLEXJIT_PASSES_TD
#define FLEXJIT_PASSES_TD

include "mlir/Pass/PassBase.td"

def FJAutodiff : Pass<"fj-autodiff", "mlir::ModuleOp"> {
  let summary = "Derive each score_mod's gradient function (reverse mode)";
  let description = [{
    For every `func.func` with `fj.kind = "score_mod"`, adds `@<name>_grad` taking the forward arguments,
    then `%grad_out: f32`, then one f32 gradient memref per captured tensor marked `fj.requires_grad`. It
    returns d(result)/d(score) * grad_out and adds d(result)/d(element) * grad_out into the gradient
    memref at every read of such a tensor (fj.grad_accumulate), so a tensor read several times
    (`g[q] - g[kv]`) gets each contribution. Rules follow torch autograd (ties of min/max split evenly,
    where() routes the gradient to the chosen branch, floor/ceil/floordiv have zero gradient).

    Before:
    ```mlir
    func.func @score_mod(%s: f32, ...) -> f32 attributes {fj.kind = "score_mod"} {
      %0 = math.tanh %s : f32
      return %0 : f32
    }
    ```
    After (with -canonicalize -cse):
    ```mlir
    func.func @score_mod_grad(%s: f32, ..., %g: f32) -> f32 attributes {fj.kind = "score_mod_grad"} {
      %t = math.tanh %s : f32
      %t2 = arith.mulf %t, %t : f32
      %d = arith.subf %one, %t2 : f32
      %r = arith.mulf %g, %d : f32
      return %r : f32
    }
    ```
  }];
  let dependentDialects = ["mlir::arith::ArithDialect", "mlir::math::MathDialect", "mlir::func::FuncDialect"];
}

def FJPrintRanges : Pass<"fj-print-ranges", "mlir::ModuleOp"> {
  let summary = "Print the interval classification of every mod over a parameter box";
  let description = [{
    Evaluates each mod with interval semantics (dsl/Interval.h) for b, h, q_idx and kv_idx in the given
    inclusive ranges and prints, per function, `full`, `empty` or `partial`: for a mask_mod whether it
    keeps every / no / some positions; for a score_mod whether its result is never / always / sometimes
    -inf. Used by lit tests of the range analysis.
  }];
  let options = [
    Option<"bRange", "b", "std::string", /*default=*/"\"0:0\"", "b range lo:hi">,
    Option<"hRange", "h", "std::string", /*default=*/"\"0:0\"", "h range lo:hi">,
    Option<"qRange", "q", "std::string", /*default=*/"\"0:2147483647\"", "q_idx range lo:hi">,
    Option<"kvRange", "kv", "std::string", /*default=*/"\"0:2147483647\"", "kv_idx range lo:hi">,
    Option<"printValues", "print-values", "bool", /*default=*/"false", "also print every value's interval">,
  ];
}

#endif  // FLEXJIT_PASSES_TD
