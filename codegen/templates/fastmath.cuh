// Fast math used by generated mod code on the GPU. Each function states its accuracy; the interval
// semantics in dsl/Interval.h widen transcendental results by 2^-9 relative so block decisions stay sound
// under these approximations.
#pragma once

namespace fj {

/// log2(e), folded into exp so the hardware's exp2 unit does the work.
constexpr float kLog2e = 1.4426950408889634f;
/// ln(2), for log via the hardware's log2.
constexpr float kLn2 = 0.6931471805599453f;

#ifdef FJ_DEVICE_CODE

/// 2^x with ex2.approx.ftz (max relative error 2^-22 on normal results; flushes subnormals).
__device__ __forceinline__ float fastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
/// e^x as 2^(x * log2 e).
__device__ __forceinline__ float fastExp(float x) { return fastExp2(x * kLog2e); }
/// log2(x) with lg2.approx.ftz (absolute error ~2^-22 near 1).
__device__ __forceinline__ float fastLog2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float fastLog(float x) { return fastLog2(x) * kLn2; }
/// tanh with the sm_75+ instruction (max relative error about 2^-11): soft-capping at bf16 cost.
__device__ __forceinline__ float fastTanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
/// 1 / (1 + e^-x) with ex2.approx and a fast reciprocal: relative error ~2^-21, also in the tails
/// (the tanh form 0.5 * tanh(x / 2) + 0.5 would lose all relative accuracy for x << 0).
__device__ __forceinline__ float fastSigmoid(float x) { return __fdividef(1.0f, 1.0f + fastExp(-x)); }
__device__ __forceinline__ float fastRsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ float fastSqrt(float x) { return sqrtf(x); }
#else
// Host builds of generated code (CPU tests) use the precise functions the approximations stand for.
inline float fastExp2(float x) { return std::exp2(x); }
inline float fastExp(float x) { return std::exp(x); }
inline float fastLog2(float x) { return std::log2(x); }
inline float fastLog(float x) { return std::log(x); }
inline float fastTanh(float x) { return std::tanh(x); }
inline float fastSigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float fastRsqrt(float x) { return 1.0f / std::sqrt(x); }
inline float fastSqrt(float x) { return std::sqrt(x); }
#endif

}  // namespace fj
