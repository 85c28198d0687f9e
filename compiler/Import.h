// DSL -> MLIR: each traced mod becomes a func.func over arith, math and fj ops.
#pragma once

#include <string>

#include "dsl/Mods.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace flexjit {

/// Where a mod's captures live in the variant's fj::CaptureArgs.
struct SlotBase {
  int tensor = 0;
  int scalar = 0;
};

/// Adds `func.func @<funcName>` computing `mod` to `module`. Arguments: the mod's parameters (score, b, h,
/// q_idx, kv_idx; a mask_mod has no score), then one strided memref per captured tensor, then one f32/i32
/// per captured scalar; argument attributes record parameter names, capture slots (numbered from `base`)
/// and requires_grad. Raises flexjit::Error if the variant needs more capture slots than fj::CaptureArgs has.
mlir::func::FuncOp importMod(mlir::ModuleOp module, const Mod& mod, const std::string& funcName, SlotBase base);

/// The memref type a captured tensor of `dtype` and `rank` is passed as (dynamic shape and strides).
mlir::MemRefType capturedTensorType(mlir::MLIRContext* ctx, DType dtype, int rank);

}  // namespace flexjit
