// RUN: flexjit-opt %s --fj-print-ranges="q=1024:1151 kv=0:127" -o /dev/null | FileCheck %s --check-prefix=NEAR
// RUN: flexjit-opt %s --fj-print-ranges="q=2048:2175 kv=0:127" -o /dev/null | FileCheck %s --check-prefix=FAR
// RUN: flexjit-opt %s --fj-print-ranges="q=0:127 kv=128:255" -o /dev/null | FileCheck %s --check-prefix=ABOVE
// RUN: flexjit-opt %s --fj-print-ranges="q=128:255 kv=0:127 print-values=true" -o /dev/null | FileCheck %s --check-prefix=VALUES
// RUN: not flexjit-opt %s --fj-print-ranges="q=9:1" -o /dev/null 2>&1 | FileCheck %s --check-prefix=BAD

// Sliding window of 1024 under causal: a block pair straddling the window edge is partial, one past it
// empty, one above the diagonal empty, one just below the diagonal full.
// NEAR: @sliding_window: partial
// FAR: @sliding_window: empty
// ABOVE: @sliding_window: empty
// VALUES: @sliding_window: full
// VALUES: arith.subi : [1, 255]
// BAD: bad range '9:1'
func.func @sliding_window(%b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"}, %q: i32 {fj.param = "q_idx"},
                          %kv: i32 {fj.param = "kv_idx"}) -> i1 attributes {fj.kind = "mask_mod"} {
  %0 = arith.cmpi sge, %q, %kv : i32
  %c = arith.constant 1024 : i32
  %1 = arith.subi %q, %kv : i32
  %2 = arith.cmpi sle, %1, %c : i32
  %3 = arith.andi %0, %2 : i1
  return %3 : i1
}

// A score_mod that masks through -inf: always -inf above the diagonal ("empty"), never below ("full").
// NEAR: @causal_score: full
// ABOVE: @causal_score: empty
func.func @causal_score(%score: f32 {fj.param = "score"}, %b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"},
                        %q: i32 {fj.param = "q_idx"}, %kv: i32 {fj.param = "kv_idx"}) -> f32
    attributes {fj.kind = "score_mod"} {
  %ninf = arith.constant 0xFF800000 : f32
  %c = arith.cmpi sge, %q, %kv : i32
  %r = arith.select %c, %score, %ninf : f32
  return %r : f32
}

// 2-D neighbourhoods through // and %: the analysis stays sound (never claims full/empty wrongly) and
// decides blocks far apart in the image.
// FAR: @natten: empty
func.func @natten(%b: i32 {fj.param = "b"}, %h: i32 {fj.param = "h"}, %q: i32 {fj.param = "q_idx"},
                  %kv: i32 {fj.param = "kv_idx"}) -> i1 attributes {fj.kind = "mask_mod"} {
  %w = arith.constant 128 : i32
  %k = arith.constant 3 : i32
  %qx = fj.floordiv %q, %w : i32
  %kx = fj.floordiv %kv, %w : i32
  %qy = fj.mod %q, %w : i32
  %ky = fj.mod %kv, %w : i32
  %dx = arith.subi %qx, %kx : i32
  %dy = arith.subi %qy, %ky : i32
  %ax = math.absi %dx : i32
  %ay = math.absi %dy : i32
  %cx = arith.cmpi sle, %ax, %k : i32
  %cy = arith.cmpi sle, %ay, %k : i32
  %r = arith.andi %cx, %cy : i1
  return %r : i1
}
