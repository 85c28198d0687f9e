// The meaning of every DSL operation on scalars, as host+device code.
//
// This header is compiled three ways: into the CPU interpreter (the oracle), into CPU tests, and
// (embedded at build time) into every generated CUDA kernel, so the GPU computes exactly what the
// interpreter defines. It therefore uses no standard headers under NVRTC and only plain C types.
//
// Rules that differ from C++ and follow torch / Python instead:
//   - int32 arithmetic wraps (two's complement) instead of being undefined on overflow;
//   - `//` rounds toward negative infinity and `%` takes the divisor's sign;
//   - x // 0 == 0 and x % 0 == x for ints (so that a == (a // b) * b + a % b still holds), never a trap;
//   - float -> int truncates toward zero, saturates at the int32 range, and maps NaN to 0 (PTX cvt.rzi);
//   - minimum/maximum propagate NaN (torch.minimum / torch.maximum) and order -0.0 below 0.0 (IEEE 754-2019);
//   - a captured-tensor read outside the tensor's shape yields 0 (and a gradient write there is dropped),
//     so a wrong index never reads or writes out of bounds.
#pragma once

// FJ_HD: host+device under nvcc and NVRTC, plain inline for host compilers. Device intrinsics are chosen
// with __CUDA_ARCH__ (defined only in device passes), so nvcc's host pass sees the portable code.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define FJ_HD __host__ __device__ __forceinline__
#else
#define FJ_HD inline
#endif
#if !defined(__CUDACC_RTC__)
#include <cmath>
#include <cstring>
#endif

namespace fj {

/// Largest tensor rank a captured tensor may have.
constexpr int kMaxRank = 4;

/// Element codes for captured tensors; must match flexjit::DType's order.
enum ElemType { kElemBool = 0, kElemI32, kElemI64, kElemF32, kElemF16, kElemBF16 };

/// A captured tensor as the generated code sees it: base pointer, strides and sizes in elements.
struct TensorArg {
  const void* data;
  long long stride[kMaxRank];
  int size[kMaxRank];
};

/// Most captured tensors / scalars one variant (score_mod and mask_mod together) may read.
constexpr int kMaxCapturedTensors = 8;
constexpr int kMaxCapturedScalars = 16;

/// Everything a variant's mods read besides their parameters; passed by value as a kernel parameter.
/// Tensors are numbered score_mod's first, then mask_mod's; scalars likewise, floats in `f`, ints in `i`.
struct CaptureArgs {
  TensorArg tensor[kMaxCapturedTensors];
  float f[kMaxCapturedScalars];
  int i[kMaxCapturedScalars];
};

/// Float32 gradient buffers for captured tensors that require a gradient (same numbering as
/// CaptureArgs::tensor; null where no gradient is wanted). The backward adds into them atomically.
struct GradArgs {
  float* grad[kMaxCapturedTensors];
  long long stride[kMaxCapturedTensors][kMaxRank];
  /// Accumulation site `site` of a generated score_mod_grad adds `value` at tensor[indices] of capture
  /// `slot` (accumulateGrad below; `site` does not matter here). score_mod_grad is a template over this
  /// "gradient sink": the dK/dV kernel passes fjk::GradWindowSink, which adds into shared memory instead.
  template <class... I>
  FJ_HD void accumulate(int site, int slot, const TensorArg& t, float value, I... indices) const;
};

/// A gradient sink that drops every contribution: for calls of a generated *_grad function made only for its
/// derivative (the forward's delta-weights pass takes d prob_mod / d p and no captured-tensor gradient).
struct NoGrads {
  template <class... I>
  FJ_HD void accumulate(int, int, const TensorArg&, float, I...) const {}
};

FJ_HD float bitsToFloat(unsigned bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}
FJ_HD float infinity() { return bitsToFloat(0x7f800000u); }
FJ_HD float quietNaN() { return bitsToFloat(0x7fc00000u); }
template <class R>
FJ_HD bool isNaN(R x) { return x != x; }

// ---- int32 with wrap-around -------------------------------------------------------------------
FJ_HD int addI(int a, int b) { return (int)((unsigned)a + (unsigned)b); }
FJ_HD int subI(int a, int b) { return (int)((unsigned)a - (unsigned)b); }
FJ_HD int mulI(int a, int b) { return (int)((unsigned)a * (unsigned)b); }
FJ_HD int negI(int a) { return (int)(0u - (unsigned)a); }
FJ_HD int absI(int a) { return a < 0 ? negI(a) : a; }
FJ_HD int minI(int a, int b) { return a < b ? a : b; }
FJ_HD int maxI(int a, int b) { return a < b ? b : a; }

/// Python floor division. b == 0 gives 0 (defined, not a trap); INT_MIN // -1 wraps to INT_MIN.
FJ_HD int floorDivI(int a, int b) {
  if (b == 0) return 0;
  if (b == -1) return negI(a);  // avoids the INT_MIN / -1 hardware trap
  int q = a / b;
  // C truncates toward zero; step down when the exact quotient was negative and inexact.
  if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
  return q;
}

/// Python remainder (sign of the divisor). b == 0 gives a, keeping a == (a // b) * b + a % b.
FJ_HD int modI(int a, int b) {
  if (b == 0) return a;
  if (b == -1) return 0;
  int r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

/// C remainder (torch.fmod on ints): the sign of the dividend. b == 0 gives a, as `%` does; INT_MIN fmod -1 is 0
/// (no hardware trap).
FJ_HD int fmodI(int a, int b) {
  if (b == 0) return a;
  if (b == -1) return 0;
  return a % b;
}

/// torch's `a << s` on int32: wraps; a shift outside [0, 32) gives 0 (torch defines it so; C leaves it undefined).
FJ_HD int shlI(int a, int s) { return (unsigned)s >= 32u ? 0 : (int)((unsigned)a << s); }
/// torch's `a >> s` on int32: arithmetic; a shift outside [0, 32) gives the sign fill (0 or -1), which a >> 31 is.
FJ_HD int shrI(int a, int s) { return a >> ((unsigned)s >= 32u ? 31 : s); }

// ---- floats -----------------------------------------------------------------------------------
FJ_HD float floorR(float x) { return floorf(x); }
FJ_HD double floorR(double x) { return floor(x); }
FJ_HD float ceilR(float x) { return ceilf(x); }
FJ_HD double ceilR(double x) { return ceil(x); }
FJ_HD float fmodR(float a, float b) { return fmodf(a, b); }
FJ_HD double fmodR(double a, double b) { return fmod(a, b); }
/// Ties to even, like torch.round (rint in the default rounding mode, the only one CUDA and flexjit use).
FJ_HD float roundR(float x) { return rintf(x); }
FJ_HD double roundR(double x) { return rint(x); }
FJ_HD float truncR(float x) { return truncf(x); }
FJ_HD double truncR(double x) { return trunc(x); }
// The accurate CUDA math functions (sinf: 2 ulp, erff: 2 ulp, powf: 4 ulp ...), not the __sinf intrinsics
// that lose all accuracy away from 0; the host's libm in the interpreter and CPU tests.
FJ_HD float sinR(float x) { return sinf(x); }
FJ_HD double sinR(double x) { return sin(x); }
FJ_HD float cosR(float x) { return cosf(x); }
FJ_HD double cosR(double x) { return cos(x); }
FJ_HD float tanR(float x) { return tanf(x); }
FJ_HD double tanR(double x) { return tan(x); }
FJ_HD float atanR(float x) { return atanf(x); }
FJ_HD double atanR(double x) { return atan(x); }
FJ_HD float erfR(float x) { return erff(x); }
FJ_HD double erfR(double x) { return erf(x); }
FJ_HD float log1pR(float x) { return log1pf(x); }
FJ_HD double log1pR(double x) { return log1p(x); }
FJ_HD float expm1R(float x) { return expm1f(x); }
FJ_HD double expm1R(double x) { return expm1(x); }
FJ_HD float powR(float a, float b) { return powf(a, b); }
FJ_HD double powR(double a, double b) { return pow(a, b); }

/// torch.remainder for floats: fmod, moved into the divisor's sign.
template <class R>
FJ_HD R modF(R a, R b) {
  R r = fmodR(a, b);
  if (r != R(0) && ((r < R(0)) != (b < R(0)))) r += b;
  return r;
}

/// torch.floor_divide for floats (the fmod-based form, exact where floor(a / b) would misround).
template <class R>
FJ_HD R floorDivF(R a, R b) {
  if (b == R(0)) return a / b;  // +-inf or NaN, as torch
  R mod = fmodR(a, b);
  R div = (a - mod) / b;
  if (mod != R(0) && ((b < R(0)) != (mod < R(0)))) div -= R(1);
  if (div == R(0)) return (a / b < R(0)) ? -R(0) : R(0);
  R fl = floorR(div);
  if (div - fl > R(0.5)) fl += R(1);
  return fl;
}

FJ_HD bool signBit(float x) {
#ifdef __CUDA_ARCH__
  return (__float_as_uint(x) >> 31) != 0;
#else
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return (u >> 31) != 0;
#endif
}
FJ_HD bool signBit(double x) {
#ifdef __CUDA_ARCH__
  return __double_as_longlong(x) < 0;
#else
  long long u;
  std::memcpy(&u, &x, sizeof u);
  return u < 0;
#endif
}

/// IEEE 754-2019 minimum / maximum: NaN propagates (torch.minimum / torch.maximum) and -0.0 < 0.0. The
/// DSL's minimum and maximum are arith.minimumf / arith.maximumf in the compiler, whose folders and rewrite
/// patterns (constants moved to the right, they are commutative) assume exactly this: with the zeros treated
/// as equal, minimum(0.0, score) at score = -0.0 gave -0.0 here but 0.0 after simplification.
template <class R>
FJ_HD R minimumF(R a, R b) {
  if (isNaN(a) || isNaN(b)) return R(quietNaN());
  if (a == b) return signBit(a) ? a : b;
  return a < b ? a : b;
}
template <class R>
FJ_HD R maximumF(R a, R b) {
  if (isNaN(a) || isNaN(b)) return R(quietNaN());
  if (a == b) return signBit(a) ? b : a;
  return a < b ? b : a;
}

/// float -> int32 like PTX cvt.rzi.s32: truncate, saturate, NaN -> 0.
template <class R>
FJ_HD int toI32(R x) {
  if (isNaN(x)) return 0;
  if (x >= R(2147483647.0)) return 2147483647;
  if (x <= R(-2147483648.0)) return (int)(-2147483647 - 1);
  return (int)x;
}

// ---- captured tensor reads --------------------------------------------------------------------
FJ_HD float halfToFloat(unsigned short h) {
  // IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN).
  unsigned sign = (unsigned)(h & 0x8000u) << 16;
  unsigned exp = (h >> 10) & 0x1fu;
  unsigned man = h & 0x3ffu;
  if (exp == 0x1fu) return bitsToFloat(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bitsToFloat(sign);
    float f = (float)man * bitsToFloat(0x33800000u);  // man * 2^-24
    return sign ? -f : f;
  }
  return bitsToFloat(sign | ((exp + 112u) << 23) | (man << 13));
}
FJ_HD float bf16ToFloat(unsigned short h) { return bitsToFloat((unsigned)h << 16); }

/// Offset of element idx of a tensor shaped like `t` laid out with `stride` (t's own, or a gradient
/// buffer's), or -1 when an index is outside the tensor (reads give 0, writes are dropped).
FJ_HD long long stridedOffset(const TensorArg& t, const long long* stride, int rank, const int* idx) {
  long long off = 0;
  for (int d = 0; d < rank; ++d) {
    if ((unsigned)idx[d] >= (unsigned)t.size[d]) return -1;
    off += (long long)idx[d] * stride[d];
  }
  return off;
}

/// Offset of an element in the tensor itself, or -1 when an index is outside it.
FJ_HD long long elementOffset(const TensorArg& t, int rank, const int* idx) {
  return stridedOffset(t, t.stride, rank, idx);
}

/// elementOffset for indices given as arguments: offsetOf(t, i, j).
template <class... I>
FJ_HD long long offsetOf(const TensorArg& t, I... indices) {
  const int idx[] = {indices...};
  return elementOffset(t, (int)sizeof...(I), idx);
}

/// Offset of tensor[indices] in a gradient buffer with strides `gradStride` (bounds from the forward tensor
/// `t`), or -1 when an index is outside the tensor: such contributions are dropped.
template <class... I>
FJ_HD long long gradOffset(const long long* gradStride, const TensorArg& t, I... indices) {
  const int idx[] = {indices...};
  return stridedOffset(t, gradStride, (int)sizeof...(I), idx);
}

/// Adds a gradient contribution at tensor[indices] into a float32 gradient buffer with the tensor's shape
/// (bounds from the forward tensor, strides of the buffer). Out-of-bounds positions are dropped.
template <class... I>
FJ_HD void accumulateGrad(float* grad, const long long* gradStride, const TensorArg& t, float value, I... indices) {
  const long long off = gradOffset(gradStride, t, indices...);
  if (off < 0) return;
#ifdef __CUDA_ARCH__
  atomicAdd(grad + off, value);
#else
  grad[off] += value;
#endif
}

template <class... I>
FJ_HD void GradArgs::accumulate(int, int slot, const TensorArg& t, float value, I... indices) const {
  accumulateGrad(grad[slot], stride[slot], t, value, indices...);
}

/// Reads element `off` of a tensor of type `elem` as the DSL sees it: floats as float, ints as int.
FJ_HD float loadFloat(const TensorArg& t, int elem, long long off) {
  if (off < 0) return 0.0f;
  switch (elem) {
    case kElemF32: return ((const float*)t.data)[off];
    case kElemF16: return halfToFloat(((const unsigned short*)t.data)[off]);
    case kElemBF16: return bf16ToFloat(((const unsigned short*)t.data)[off]);
    default: return 0.0f;
  }
}
FJ_HD int loadInt(const TensorArg& t, int elem, long long off) {
  if (off < 0) return 0;
  switch (elem) {
    case kElemBool: return ((const unsigned char*)t.data)[off] != 0;
    case kElemI32: return ((const int*)t.data)[off];
    case kElemI64: return (int)((const long long*)t.data)[off];  // wraps to int32, like .to(int32)
    default: return 0;
  }
}

}  // namespace fj
