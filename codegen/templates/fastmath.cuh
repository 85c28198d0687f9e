// Fast math used by generated mod code on the GPU. Each function states its accuracy; the interval
// semantics in dsl/Interval.h widen transcendental results by 2^-9 relative so block decisions stay sound
// under these approximations.
#pragma once

#include "dsl/Semantics.h"

namespace fj {

/// log2(e), folded into exp so the hardware's exp2 unit does the work.
constexpr float kLog2e = 1.4426950408889634f;
/// ln(2), for log via the hardware's log2.
constexpr float kLn2 = 0.6931471805599453f;

// Each function is FJ_HD: the approximate instruction in device code, the precise function it stands for
// on the host (CPU tests of generated code, nvcc's host pass).

/// 2^x with ex2.approx.ftz (max relative error 2^-22 on normal results; flushes subnormals).
FJ_HD float fastExp2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return std::exp2(x);
#endif
}
/// e^x as 2^(x * log2 e).
FJ_HD float fastExp(float x) {
#ifdef __CUDA_ARCH__
  return fastExp2(x * kLog2e);
#else
  return std::exp(x);
#endif
}
/// log2(x) with lg2.approx.ftz (absolute error ~2^-22 near 1).
FJ_HD float fastLog2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return std::log2(x);
#endif
}
FJ_HD float fastLog(float x) {
#ifdef __CUDA_ARCH__
  return fastLog2(x) * kLn2;
#else
  return std::log(x);
#endif
}
/// tanh with the sm_75+ instruction (max relative error about 2^-11): soft-capping at bf16 cost.
FJ_HD float fastTanh(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return std::tanh(x);
#endif
}
/// 1 / (1 + e^-x) with ex2.approx and a fast reciprocal: relative error ~2^-21, also in the tails
/// (the tanh form 0.5 * tanh(x / 2) + 0.5 would lose all relative accuracy for x << 0).
FJ_HD float fastSigmoid(float x) {
#ifdef __CUDA_ARCH__
  return __fdividef(1.0f, 1.0f + fastExp(-x));
#else
  return 1.0f / (1.0f + std::exp(-x));
#endif
}
/// a / b with div.approx (__fdividef: 2 ulp; 0 when 2^126 < |b| < 2^128), instead of the ~20-instruction
/// IEEE division: `score / cap` in soft-capping runs once per score.
FJ_HD float fastDiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdividef(a, b);
#else
  return a / b;
#endif
}
/// a / b correctly rounded (IEEE 754), whatever the compiler's division flags: for a quotient that reaches
/// a floor, a cast or a comparison (codegen/ScalarEmitter.cpp), where 2 ulp can change the result.
FJ_HD float exactDiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
FJ_HD float fastRsqrt(float x) {
#ifdef __CUDA_ARCH__
  return rsqrtf(x);
#else
  return 1.0f / std::sqrt(x);
#endif
}
FJ_HD float fastSqrt(float x) {
#ifdef __CUDA_ARCH__
  return sqrtf(x);
#else
  return std::sqrt(x);
#endif
}

}  // namespace fj
