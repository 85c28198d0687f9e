// Host conversions between float and the 16-bit float formats (round to nearest even), for the CPU
// reference and tests.
#pragma once

#include <cstdint>
#include <cstring>

#include "dsl/Semantics.h"
#include "dsl/Types.h"

namespace flexjit {

inline uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline uint16_t floatToHalf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u, abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                                // subnormal half (or zero)
    float a;
    std::memcpy(&a, &abs, 4);
    // a * 2^24 rounded to an integer is the subnormal mantissa (nearest even via the FPU).
    float m = a * 16777216.0f;
    uint32_t mi = static_cast<uint32_t>(__builtin_nearbyintf(m));
    return static_cast<uint16_t>(sign | mi);
  }
  uint32_t mant = abs + 0xfffu + ((abs >> 13) & 1u) - 0x38000000u;  // rebias 127 -> 15, round to 10 bits
  return static_cast<uint16_t>(sign | (mant >> 13));
}

/// Reads element `i` of a float tensor (f32 / f16 / bf16) as double.
inline double readFloat(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::F32: return static_cast<const float*>(data)[i];
    case DType::F16: return fj::halfToFloat(static_cast<const uint16_t*>(data)[i]);
    case DType::BF16: return fj::bf16ToFloat(static_cast<const uint16_t*>(data)[i]);
    default: return 0.0;
  }
}

/// Writes `x` (rounded to the dtype) to element `i`.
inline void writeFloat(void* data, DType dtype, int64_t i, double x) {
  switch (dtype) {
    case DType::F32: static_cast<float*>(data)[i] = static_cast<float>(x); break;
    case DType::F16: static_cast<uint16_t*>(data)[i] = floatToHalf(static_cast<float>(x)); break;
    case DType::BF16: static_cast<uint16_t*>(data)[i] = floatToBf16(static_cast<float>(x)); break;
    default: break;
  }
}

}  // namespace flexjit
