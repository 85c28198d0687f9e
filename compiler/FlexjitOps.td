//===- FlexjitOps.td - the fj dialect ---------------------------------------------------------------===//
//
// A small dialect for what arith/math/memref cannot say with flexjit's semantics: Python floor division
// and remainder and C's remainder (defined for a zero divisor), shifts defined for every shift count, a
// saturating float->int cast, sigmoid (kept whole so its
// derivative stays finite), and bounds-checked captured-tensor reads and gradient writes. Everything else
// in a mod is arith and math.
//
//===------------------------------------------------------------------------------------------------===//

#ifndef FLEXJIT_OPS_TD
#define FLEXJIT_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Flexjit_Dialect : Dialect {
  let name = "fj";
  let summary = "flexjit's ops for attention score_mod / mask_mod functions";
  let description = [{
    Mods are `func.func`s over arith, math and these ops. Captured tensors are strided memref arguments;
    captured scalars are f32/i32 arguments. See docs/dsl.md for the semantics of every op.
  }];
  let cppNamespace = "::flexjit::fjir";
  let hasConstantMaterializer = 1;
}

class FJ_Op<string mnemonic, list<Trait> traits = []> : Op<Flexjit_Dialect, mnemonic, traits>;

def FJ_IntOrFloat : AnyTypeOf<[I32, F32]>;

def FJ_FloorDivOp : FJ_Op<"floordiv", [Pure, SameOperandsAndResultType]> {
  let summary = "Python floor division";
  let description = [{
    Rounds toward negative infinity. For i32, `x // 0 == 0` and `INT_MIN // -1` wraps to INT_MIN; for f32
    it is torch.floor_divide (fmod-based).
  }];
  let arguments = (ins FJ_IntOrFloat:$lhs, FJ_IntOrFloat:$rhs);
  let results = (outs FJ_IntOrFloat:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
  let hasFolder = 1;
}

def FJ_ModOp : FJ_Op<"mod", [Pure, SameOperandsAndResultType]> {
  let summary = "Python remainder (the result has the divisor's sign)";
  let description = [{ For i32, `x % 0 == x`, keeping `a == (a // b) * b + a % b`. For f32, torch.remainder. }];
  let arguments = (ins FJ_IntOrFloat:$lhs, FJ_IntOrFloat:$rhs);
  let results = (outs FJ_IntOrFloat:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
  let hasFolder = 1;
}

def FJ_FModOp : FJ_Op<"fmod", [Pure, SameOperandsAndResultType]> {
  let summary = "C remainder (the result has the dividend's sign), torch.fmod";
  let description = [{
    For i32, `x fmod 0 == x` (as fj.mod) and `INT_MIN fmod -1 == 0`, never a trap; for f32, C fmodf (NaN for a
    zero divisor).
  }];
  let arguments = (ins FJ_IntOrFloat:$lhs, FJ_IntOrFloat:$rhs);
  let results = (outs FJ_IntOrFloat:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
  let hasFolder = 1;
}

def FJ_ShlOp : FJ_Op<"shl", [Pure, SameOperandsAndResultType]> {
  let summary = "i32 left shift with torch's meaning";
  let description = [{ Wraps; a shift outside [0, 32) gives 0 (arith.shli would be poison). }];
  let arguments = (ins I32:$lhs, I32:$rhs);
  let results = (outs I32:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
  let hasFolder = 1;
}

def FJ_ShrOp : FJ_Op<"shr", [Pure, SameOperandsAndResultType]> {
  let summary = "i32 arithmetic right shift with torch's meaning";
  let description = [{ A shift outside [0, 32) gives the sign fill, 0 or -1 (arith.shrsi would be poison). }];
  let arguments = (ins I32:$lhs, I32:$rhs);
  let results = (outs I32:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict";
  let hasFolder = 1;
}

def FJ_SigmoidOp : FJ_Op<"sigmoid", [Pure, SameOperandsAndResultType]> {
  let summary = "1 / (1 + exp(-x))";
  let description = [{
    Kept as one op: expanded, its derivative would multiply 0 by inf for large negative inputs.
  }];
  let arguments = (ins F32:$input);
  let results = (outs F32:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
  let hasFolder = 1;
}

def FJ_ToIntOp : FJ_Op<"to_int", [Pure]> {
  let summary = "f32 -> i32, truncating toward zero, saturating, NaN -> 0";
  let arguments = (ins F32:$input);
  let results = (outs I32:$result);
  let assemblyFormat = "$input attr-dict";
  let hasFolder = 1;
}

def FJ_LoadOp : FJ_Op<"load", [Pure]> {
  let summary = "read a captured tensor element";
  let description = [{
    Reads `tensor[indices]` and widens it to the DSL type: float tensors to f32, int32/int64 tensors to i32
    (int64 wraps), bool (i8) tensors to i1. An index outside the tensor's shape reads 0. Captured tensors are
    read-only during a kernel, so the op is pure: repeated reads CSE and unused reads vanish.

    ```mlir
    %v = fj.load %bias[%h, %d] : memref<?x?xbf16, strided<[?, ?], offset: ?>> -> f32
    ```
  }];
  let arguments = (ins AnyMemRef:$tensor, Variadic<I32>:$indices);
  let results = (outs AnyTypeOf<[I1, I32, F32]>:$result);
  let assemblyFormat = "$tensor `[` $indices `]` attr-dict `:` type($tensor) `->` type($result)";
  let hasVerifier = 1;
}

def FJ_GradAccumulateOp : FJ_Op<"grad_accumulate", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "add a gradient contribution to a captured tensor's f32 gradient buffer";
  let description = [{
    Atomically adds `value` at `grad[indices]`; indices outside the shape are dropped (their reads gave 0).
    Produced by fj-autodiff for every read of a tensor that requires a gradient.

    ```mlir
    fj.grad_accumulate %g, %dbias[%h, %d] : memref<?x?xf32, strided<[?, ?], offset: ?>>
    ```
  }];
  let arguments = (ins F32:$value, AnyMemRef:$grad, Variadic<I32>:$indices);
  let assemblyFormat = "$value `,` $grad `[` $indices `]` attr-dict `:` type($grad)";
  let hasVerifier = 1;
}

#endif  // FLEXJIT_OPS_TD
