// RUN: flexjit-opt %s --fj-simplify | FileCheck %s

// fj folders use flexjit's semantics: Python floor division / remainder, x // 0 == 0, x % 0 == x.
// CHECK-LABEL: func.func @fold_python_division
// CHECK-DAG: arith.constant -4 : i32
// CHECK-DAG: arith.constant 1 : i32
// CHECK-DAG: arith.constant 0 : i32
// CHECK-DAG: arith.constant 7 : i32
// CHECK-NOT: fj.floordiv
// CHECK-NOT: fj.mod
func.func @fold_python_division() -> (i32, i32, i32, i32) {
  %a = arith.constant -7 : i32
  %b = arith.constant 2 : i32
  %z = arith.constant 0 : i32
  %s = arith.constant 7 : i32
  %0 = fj.floordiv %a, %b : i32
  %1 = fj.mod %a, %b : i32
  %2 = fj.floordiv %s, %z : i32
  %3 = fj.mod %s, %z : i32
  return %0, %1, %2, %3 : i32, i32, i32, i32
}

// x // 1 == x and x % 1 == 0 for ints; repeated tensor reads CSE (captured tensors are read-only).
// CHECK-LABEL: func.func @identities
// CHECK-SAME: (%[[X:.+]]: i32,
// CHECK: %[[L:.+]] = fj.load
// CHECK-NOT: fj.load
// CHECK: return %[[X]], %{{.+}}, %[[L]], %[[L]]
func.func @identities(%x: i32, %t: memref<?xf32, strided<[?], offset: ?>>) -> (i32, i32, f32, f32) {
  %one = arith.constant 1 : i32
  %0 = fj.floordiv %x, %one : i32
  %1 = fj.mod %x, %one : i32
  %2 = fj.load %t[%x] : memref<?xf32, strided<[?], offset: ?>> -> f32
  %3 = fj.load %t[%x] : memref<?xf32, strided<[?], offset: ?>> -> f32
  return %0, %1, %2, %3 : i32, i32, f32, f32
}

// float -> int saturates and maps NaN to 0; sigmoid folds.
// CHECK-LABEL: func.func @fold_casts
// CHECK-DAG: arith.constant 2147483647 : i32
// CHECK-DAG: arith.constant 0 : i32
// CHECK-DAG: arith.constant 5.000000e-01 : f32
func.func @fold_casts() -> (i32, i32, f32) {
  %big = arith.constant 1.0e20 : f32
  %nan = arith.constant 0x7FC00000 : f32
  %zero = arith.constant 0.0 : f32
  %0 = fj.to_int %big
  %1 = fj.to_int %nan
  %2 = fj.sigmoid %zero : f32
  return %0, %1, %2 : i32, i32, f32
}

// fj.fmod takes the dividend's sign (torch.fmod; x fmod 0 == x for ints); fj.shl / fj.shr are torch's shifts,
// defined for every shift count (arith.shli / shrsi would be poison at 32).
// CHECK-LABEL: func.func @fold_fmod_and_shifts
// CHECK-DAG: arith.constant -1 : i32
// CHECK-DAG: arith.constant -7 : i32
// CHECK-DAG: arith.constant 0 : i32
// CHECK-DAG: arith.constant -28 : i32
// CHECK-DAG: arith.constant -2 : i32
// CHECK-DAG: arith.constant -1.000000e+00 : f32
// CHECK-NOT: fj.fmod
// CHECK-NOT: fj.shl
// CHECK-NOT: fj.shr
func.func @fold_fmod_and_shifts() -> (i32, i32, i32, i32, i32, i32, f32) {
  %a = arith.constant -7 : i32
  %b = arith.constant 2 : i32
  %z = arith.constant 0 : i32
  %big = arith.constant 32 : i32
  %fa = arith.constant -7.0 : f32
  %fb = arith.constant 2.0 : f32
  %0 = fj.fmod %a, %b : i32
  %1 = fj.fmod %a, %z : i32
  %2 = fj.shl %a, %big
  %3 = fj.shl %a, %b
  %4 = fj.shr %a, %b
  %5 = fj.shr %a, %big
  %6 = fj.fmod %fa, %fb : f32
  return %0, %1, %2, %3, %4, %5, %6 : i32, i32, i32, i32, i32, i32, f32
}
