// RUN: flexjit-opt %s -split-input-file -verify-diagnostics

func.func @wrong_rank(%t: memref<?x?xf32, strided<[?, ?], offset: ?>>, %i: i32) -> f32 {
  // expected-error @+1 {{indexes a rank-2 tensor with 1 indices}}
  %0 = fj.load %t[%i] : memref<?x?xf32, strided<[?, ?], offset: ?>> -> f32
  return %0 : f32
}

// -----

func.func @wrong_result(%t: memref<?xbf16, strided<[?], offset: ?>>, %i: i32) -> i32 {
  // expected-error @+1 {{cannot read 'bf16' elements as 'i32'}}
  %0 = fj.load %t[%i] : memref<?xbf16, strided<[?], offset: ?>> -> i32
  return %0 : i32
}

// -----

func.func @grad_not_f32(%t: memref<?xbf16, strided<[?], offset: ?>>, %i: i32, %v: f32) {
  // expected-error @+1 {{gradient buffers are f32}}
  fj.grad_accumulate %v, %t[%i] : memref<?xbf16, strided<[?], offset: ?>>
  return
}
