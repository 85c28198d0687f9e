// RUN: flexjit-opt %s --fj-autodiff --fj-simplify | FileCheck %s

// A tensor read twice (g[q] - g[kv]) gets both contributions, with opposite signs.
// CHECK-LABEL: func.func @score_mod_grad
// CHECK-SAME: %[[S:[^:]+]]: f32 {fj.param = "score"}
// CHECK-SAME: %[[G:[^:]+]]: f32 {fj.param = "grad_out"}
// CHECK-SAME: %[[DG:[^:]+]]: memref<?xf32, strided<[?], offset: ?>> {fj.grad = 0 : i32}
// CHECK-SAME: attributes {fj.kind = "score_mod_grad"}
// CHECK: %[[T:.+]] = math.tanh
// CHECK: %[[T2:.+]] = arith.mulf %[[T]], %[[T]]
// CHECK: %[[D:.+]] = arith.subf %{{.+}}, %[[T2]]
// CHECK: %[[R:.+]] = arith.mulf %[[G]], %[[D]]
// CHECK: %[[N:.+]] = arith.negf %[[R]]
// CHECK-DAG: fj.grad_accumulate %[[N]], %[[DG]][%arg4]
// CHECK-DAG: fj.grad_accumulate %[[R]], %[[DG]][%arg3]
// CHECK: return %[[R]] : f32
func.func @score_mod(%score: f32 {fj.param = "score"}, %b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"},
                     %q: i32 {fj.param = "q_idx"}, %kv: i32 {fj.param = "kv_idx"},
                     %g: memref<?xf32, strided<[?], offset: ?>> {fj.tensor = 0 : i32, fj.requires_grad}) -> f32
    attributes {fj.kind = "score_mod"} {
  %0 = fj.load %g[%q] : memref<?xf32, strided<[?], offset: ?>> -> f32
  %1 = fj.load %g[%kv] : memref<?xf32, strided<[?], offset: ?>> -> f32
  %2 = arith.subf %0, %1 : f32
  %3 = arith.addf %score, %2 : f32
  %4 = math.tanh %3 : f32
  return %4 : f32
}

// A tensor without requires_grad gets no gradient buffer; where() routes the gradient.
// CHECK-LABEL: func.func @masked_grad
// CHECK-NOT: fj.grad_accumulate
// CHECK: %[[C:.+]] = arith.cmpi sge
// CHECK: %[[R:.+]] = arith.select %[[C]], %{{.+}}, %{{.+}} : f32
// CHECK: return %[[R]]
func.func @masked(%score: f32 {fj.param = "score"}, %b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"},
                  %q: i32 {fj.param = "q_idx"}, %kv: i32 {fj.param = "kv_idx"},
                  %bias: memref<?x?xbf16, strided<[?, ?], offset: ?>> {fj.tensor = 0 : i32}) -> f32
    attributes {fj.kind = "score_mod"} {
  %ninf = arith.constant 0xFF800000 : f32
  %d = arith.subi %q, %kv : i32
  %v = fj.load %bias[%h, %d] : memref<?x?xbf16, strided<[?, ?], offset: ?>> -> f32
  %s = arith.addf %score, %v : f32
  %c = arith.cmpi sge, %q, %kv : i32
  %r = arith.select %c, %s, %ninf : f32
  return %r : f32
}

// Ignoring the score gives a zero gradient, not a missing return.
// CHECK-LABEL: func.func @constant_grad
// CHECK: %[[Z:.+]] = arith.constant 0.000000e+00 : f32
// CHECK: return %[[Z]]
func.func @constant(%score: f32 {fj.param = "score"}, %b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"},
                    %q: i32 {fj.param = "q_idx"}, %kv: i32 {fj.param = "kv_idx"}) -> f32
    attributes {fj.kind = "score_mod"} {
  %c = arith.constant 2.0 : f32
  return %c : f32
}

// Mask functions are left alone.
// CHECK-NOT: func.func @mask_mod_grad
func.func @mask_mod(%b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"}, %q: i32 {fj.param = "q_idx"},
                    %kv: i32 {fj.param = "kv_idx"}) -> i1 attributes {fj.kind = "mask_mod"} {
  %0 = arith.cmpi sge, %q, %kv : i32
  return %0 : i1
}

// x ** y with torch's rules: the base's gradient is 0 where y == 0, the exponent's 0 where x == 0 and y >= 0.
// CHECK-LABEL: func.func @pow_grad
// CHECK-DAG: %[[YM1:.+]] = arith.subf %[[Y:.+]], %{{.+}} : f32
// CHECK-DAG: math.powf %{{.+}}, %[[YM1]] : f32
// CHECK-DAG: math.log
// CHECK-DAG: arith.cmpf oeq
// CHECK-DAG: arith.cmpf oge
// CHECK: fj.grad_accumulate
func.func @pow(%score: f32 {fj.param = "score"}, %b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"},
               %q: i32 {fj.param = "q_idx"}, %kv: i32 {fj.param = "kv_idx"},
               %g: memref<?xf32, strided<[?], offset: ?>> {fj.tensor = 0 : i32, fj.requires_grad}) -> f32
    attributes {fj.kind = "score_mod"} {
  %y = fj.load %g[%q] : memref<?xf32, strided<[?], offset: ?>> -> f32
  %r = math.powf %score, %y : f32
  return %r : f32
}
