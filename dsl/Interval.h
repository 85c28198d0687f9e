// Interval semantics of every DSL operation: given a box of parameter values (the b, h, q_idx, kv_idx
// ranges of one block pair), bound what the mod can return.
//
// Like Semantics.h this is host+device code: the CPU range analysis, the CPU block-mask reference and
// the generated GPU block-mask kernel all evaluate mods through these functions, so a block decision can
// never differ between them. Every function is *sound*: the true result of the scalar op for any inputs
// in the argument intervals lies in the result interval. Float bounds are rounded outward (they contain
// both the exact result and every float rounding of it, so FMA contraction and approximate
// transcendental instructions in the kernel stay inside).
#pragma once

#include "dsl/Semantics.h"

namespace fj {

/// Tri-state boolean: which values are possible.
struct IvBool {
  bool canFalse;
  bool canTrue;
};

/// Possible int32 values [lo, hi], carried in 64 bits so overflow is detected, then widened.
struct IvInt {
  long long lo;
  long long hi;
};

/// Possible float32 values [lo, hi] over the extended reals, plus whether NaN is possible. lo > hi means
/// no non-NaN value is possible.
struct IvFloat {
  float lo;
  float hi;
  bool nan;
};

constexpr long long kI32Min = -2147483647LL - 1;
constexpr long long kI32Max = 2147483647LL;
/// Most elements an interval load scans to bound a captured tensor's values over an index box.
constexpr long long kMaxLoadScan = 1024;

FJ_HD IvBool ivBool(bool v) { return {!v, v}; }
FJ_HD IvBool ivBoolUnknown() { return {true, true}; }
FJ_HD IvInt ivInt(long long lo, long long hi) { return {lo, hi}; }
FJ_HD IvInt ivIntFull() { return {kI32Min, kI32Max}; }
FJ_HD IvFloat ivFloat(float lo, float hi, bool nan = false) { return {lo, hi, nan}; }
FJ_HD IvFloat ivFloatFull() { return {-infinity(), infinity(), true}; }
/// The interval of one float value. A NaN is no ordered value plus the NaN flag: ivFloat(NaN, NaN) would
/// compare false with every bound and claim that NaN is impossible.
FJ_HD IvFloat ivFloatPoint(float v) { return isNaN(v) ? IvFloat{infinity(), -infinity(), true} : IvFloat{v, v, false}; }
/// The raw attention score: any finite float.
FJ_HD IvFloat ivFloatFinite() { return {-3.4028234663852886e38f, 3.4028234663852886e38f, false}; }

FJ_HD long long minLL(long long a, long long b) { return a < b ? a : b; }
FJ_HD long long maxLL(long long a, long long b) { return a < b ? b : a; }

/// Int results that left the int32 range may have wrapped anywhere.
FJ_HD IvInt normalize(IvInt r) { return (r.lo < kI32Min || r.hi > kI32Max) ? ivIntFull() : r; }

// ---- bool ---------------------------------------------------------------------------------------
FJ_HD IvBool ivNot(IvBool a) { return {a.canTrue, a.canFalse}; }
FJ_HD IvBool ivAnd(IvBool a, IvBool b) { return {a.canFalse || b.canFalse, a.canTrue && b.canTrue}; }
FJ_HD IvBool ivOr(IvBool a, IvBool b) { return {a.canFalse && b.canFalse, a.canTrue || b.canTrue}; }
FJ_HD IvBool ivXor(IvBool a, IvBool b) {
  bool canT = (a.canTrue && b.canFalse) || (a.canFalse && b.canTrue);
  bool canF = (a.canTrue && b.canTrue) || (a.canFalse && b.canFalse);
  return {canF, canT};
}
FJ_HD IvBool ivEq(IvBool a, IvBool b) { return ivNot(ivXor(a, b)); }
FJ_HD IvBool ivUnion(IvBool a, IvBool b) { return {a.canFalse || b.canFalse, a.canTrue || b.canTrue}; }
FJ_HD IvBool ivWhere(IvBool c, IvBool a, IvBool b) {
  if (!c.canFalse) return a;
  if (!c.canTrue) return b;
  return ivUnion(a, b);
}
FJ_HD IvInt ivBoolToInt(IvBool a) { return {a.canFalse ? 0 : 1, a.canTrue ? 1 : 0}; }
FJ_HD IvFloat ivBoolToFloat(IvBool a) { return {a.canFalse ? 0.0f : 1.0f, a.canTrue ? 1.0f : 0.0f, false}; }

// ---- int ----------------------------------------------------------------------------------------
FJ_HD IvInt ivUnion(IvInt a, IvInt b) { return {minLL(a.lo, b.lo), maxLL(a.hi, b.hi)}; }
FJ_HD IvInt ivWhere(IvBool c, IvInt a, IvInt b) {
  if (!c.canFalse) return a;
  if (!c.canTrue) return b;
  return ivUnion(a, b);
}
FJ_HD IvInt ivAdd(IvInt a, IvInt b) { return normalize({a.lo + b.lo, a.hi + b.hi}); }
FJ_HD IvInt ivSub(IvInt a, IvInt b) { return normalize({a.lo - b.hi, a.hi - b.lo}); }
FJ_HD IvInt ivNeg(IvInt a) { return normalize({-a.hi, -a.lo}); }
FJ_HD IvInt ivMul(IvInt a, IvInt b) {
  long long p0 = a.lo * b.lo, p1 = a.lo * b.hi, p2 = a.hi * b.lo, p3 = a.hi * b.hi;
  return normalize({minLL(minLL(p0, p1), minLL(p2, p3)), maxLL(maxLL(p0, p1), maxLL(p2, p3))});
}
FJ_HD IvInt ivAbs(IvInt a) {
  if (a.lo >= 0) return a;
  if (a.hi <= 0) return normalize({-a.hi, -a.lo});
  return normalize({0, maxLL(-a.lo, a.hi)});
}
FJ_HD IvInt ivMin(IvInt a, IvInt b) { return {minLL(a.lo, b.lo), minLL(a.hi, b.hi)}; }
FJ_HD IvInt ivMax(IvInt a, IvInt b) { return {maxLL(a.lo, b.lo), maxLL(a.hi, b.hi)}; }

/// Exact Python floor division on 64-bit values (no overflow for int32 inputs).
FJ_HD long long floorDivLL(long long a, long long b) {
  long long q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
  return q;
}

/// floor(a / b) is monotone in a for fixed b and in b on each side of 0, so over a box that excludes
/// b == 0 its extremes are at the corners.
FJ_HD IvInt ivFloorDivCorners(IvInt a, long long b0, long long b1) {
  long long c0 = floorDivLL(a.lo, b0), c1 = floorDivLL(a.lo, b1);
  long long c2 = floorDivLL(a.hi, b0), c3 = floorDivLL(a.hi, b1);
  return {minLL(minLL(c0, c1), minLL(c2, c3)), maxLL(maxLL(c0, c1), maxLL(c2, c3))};
}
FJ_HD IvInt ivFloorDiv(IvInt a, IvInt b) {
  bool have = false;
  IvInt r = {0, 0};
  if (b.lo <= -1) {
    r = ivFloorDivCorners(a, b.lo, minLL(b.hi, -1));
    have = true;
  }
  if (b.hi >= 1) {
    IvInt p = ivFloorDivCorners(a, maxLL(b.lo, 1), b.hi);
    r = have ? ivUnion(r, p) : p;
    have = true;
  }
  if (b.lo <= 0 && b.hi >= 0) r = have ? ivUnion(r, ivInt(0, 0)) : ivInt(0, 0);  // x // 0 == 0
  return normalize(r);  // INT_MIN // -1 computed exactly is 2^31: widened, matching the wrap
}

FJ_HD IvInt ivMod(IvInt a, IvInt b) {
  if (b.lo == b.hi && b.lo != 0) {
    long long c = b.lo;
    // Inside one period of the divisor the remainder is a + const: monotone.
    if (floorDivLL(a.lo, c) == floorDivLL(a.hi, c)) {
      long long off = floorDivLL(a.lo, c) * c;
      return {a.lo - off, a.hi - off};
    }
    return c > 0 ? ivInt(0, c - 1) : ivInt(c + 1, 0);
  }
  bool have = false;
  IvInt r = {0, 0};
  if (b.hi >= 1) {  // positive divisors d: 0 <= a % d <= d - 1, and a % d == a when 0 <= a < d
    long long dmin = maxLL(b.lo, 1);
    if (a.lo >= 0 && a.hi < dmin) r = a;
    else r = ivInt(0, a.lo >= 0 ? minLL(b.hi - 1, a.hi) : b.hi - 1);
    have = true;
  }
  if (b.lo <= -1) {  // negative divisors d: d + 1 <= a % d <= 0
    long long dmax = minLL(b.hi, -1);
    IvInt p;
    if (a.hi <= 0 && a.lo > dmax) p = a;
    else p = ivInt(a.hi <= 0 ? maxLL(b.lo + 1, a.lo) : b.lo + 1, 0);
    r = have ? ivUnion(r, p) : p;
    have = true;
  }
  if (b.lo <= 0 && b.hi >= 0) r = have ? ivUnion(r, a) : a;  // x % 0 == x
  return r;
}

/// Smallest 2^k - 1 >= x, for x >= 0.
FJ_HD long long bitCeilMask(long long x) {
  long long m = 0;
  while (m < x) m = (m << 1) | 1;
  return m;
}
FJ_HD IvInt ivBitAnd(IvInt a, IvInt b) {
  if (a.lo >= 0 && b.lo >= 0) return {0, minLL(a.hi, b.hi)};
  if (a.lo >= 0) return {0, a.hi};
  if (b.lo >= 0) return {0, b.hi};
  return ivIntFull();
}
FJ_HD IvInt ivBitOr(IvInt a, IvInt b) {
  if (a.lo >= 0 && b.lo >= 0) return {maxLL(a.lo, b.lo), bitCeilMask(maxLL(a.hi, b.hi))};
  return ivIntFull();
}
FJ_HD IvInt ivBitXor(IvInt a, IvInt b) {
  if (a.lo >= 0 && b.lo >= 0) return {0, bitCeilMask(maxLL(a.hi, b.hi))};
  return ivIntFull();
}
FJ_HD IvInt ivBitNot(IvInt a) { return {-a.hi - 1, -a.lo - 1}; }

FJ_HD long long absLL(long long a) { return a < 0 ? -a : a; }
/// C remainder: |a fmod b| <= |b| - 1 with the dividend's sign; a fmod 0 == a.
FJ_HD IvInt ivFMod(IvInt a, IvInt b) {
  long long bmax = maxLL(absLL(b.lo), absLL(b.hi));
  if (bmax == 0) return a;
  long long m = bmax - 1;
  IvInt r = {a.lo < 0 ? maxLL(a.lo, -m) : 0, a.hi > 0 ? minLL(a.hi, m) : 0};
  return (b.lo <= 0 && b.hi >= 0) ? ivUnion(r, a) : r;
}
/// a << s is a * 2^s for shifts in [0, 32): monotone in a for each s and in s for each a, so the corners bound
/// it (computed exactly in 64 bits, then widened if it can wrap); a shift outside [0, 32) gives 0.
FJ_HD IvInt ivShl(IvInt a, IvInt s) {
  long long k0 = maxLL(s.lo, 0), k1 = minLL(s.hi, 31);
  bool outside = s.lo < 0 || s.hi > 31;
  if (k0 > k1) return ivInt(0, 0);
  long long c0 = a.lo * (1LL << k0), c1 = a.lo * (1LL << k1), c2 = a.hi * (1LL << k0), c3 = a.hi * (1LL << k1);
  IvInt r = normalize({minLL(minLL(c0, c1), minLL(c2, c3)), maxLL(maxLL(c0, c1), maxLL(c2, c3))});
  return outside ? ivUnion(r, ivInt(0, 0)) : r;
}
/// a >> s is floor(a / 2^s), monotone in a and in s; a shift outside [0, 32) acts as 31 (the sign fill), so
/// the shifts are bounded by [max(s.lo, 0), 31] when any can be negative.
FJ_HD IvInt ivShr(IvInt a, IvInt s) {
  long long k0 = minLL(maxLL(s.lo, 0), 31), k1 = (s.lo < 0 || s.hi > 31) ? 31 : s.hi;
  long long c0 = floorDivLL(a.lo, 1LL << k0), c1 = floorDivLL(a.lo, 1LL << k1);
  long long c2 = floorDivLL(a.hi, 1LL << k0), c3 = floorDivLL(a.hi, 1LL << k1);
  return {minLL(minLL(c0, c1), minLL(c2, c3)), maxLL(maxLL(c0, c1), maxLL(c2, c3))};
}

FJ_HD IvBool ivLt(IvInt a, IvInt b) { return {a.hi >= b.lo, a.lo < b.hi}; }
FJ_HD IvBool ivLe(IvInt a, IvInt b) { return {a.hi > b.lo, a.lo <= b.hi}; }
FJ_HD IvBool ivGt(IvInt a, IvInt b) { return ivLt(b, a); }
FJ_HD IvBool ivGe(IvInt a, IvInt b) { return ivLe(b, a); }
FJ_HD IvBool ivEq(IvInt a, IvInt b) {
  bool overlap = a.lo <= b.hi && b.lo <= a.hi;
  bool bothPoint = a.lo == a.hi && b.lo == b.hi;
  return {!(bothPoint && a.lo == b.lo), overlap};
}
FJ_HD IvBool ivNe(IvInt a, IvInt b) { return ivNot(ivEq(a, b)); }
FJ_HD IvBool ivIntToBool(IvInt a) { return ivNe(a, ivInt(0, 0)); }

// ---- float --------------------------------------------------------------------------------------
/// Largest float <= x (x a double; overflow goes to -inf / FLT_MAX as appropriate).
FJ_HD float roundDownF(double x) {
  if (isNaN(x)) return -infinity();
  float f = (float)x;
  if ((double)f > x) f = nextafterf(f, -infinity());
  return f;
}
/// Smallest float >= x.
FJ_HD float roundUpF(double x) {
  if (isNaN(x)) return infinity();
  float f = (float)x;
  if ((double)f < x) f = nextafterf(f, infinity());
  return f;
}
/// Builds a float interval from double bounds, widened one double ulp then rounded outward to float,
/// so it holds the exact result and every float rounding of it.
FJ_HD IvFloat ivFromDouble(double lo, double hi, bool nan) {
  if (lo > hi) return {infinity(), -infinity(), nan};
  return {roundDownF(nextafter(lo, -(double)infinity())), roundUpF(nextafter(hi, (double)infinity())), nan};
}
/// Relative slack for transcendental functions: the kernel uses approximate instructions (tanh.approx has
/// a relative error near 2^-11), so their results are widened by 2^-9.
constexpr double kApproxSlack = 1.0 / 512.0;
FJ_HD IvFloat ivApprox(double lo, double hi, bool nan) {
  double dl = (lo < 0 ? -lo : lo) * kApproxSlack + 1e-37;
  double dh = (hi < 0 ? -hi : hi) * kApproxSlack + 1e-37;
  return ivFromDouble(lo - dl, hi + dh, nan);
}
FJ_HD bool ivEmpty(IvFloat a) { return a.lo > a.hi; }
FJ_HD IvFloat ivUnion(IvFloat a, IvFloat b) {
  if (ivEmpty(a)) return {b.lo, b.hi, a.nan || b.nan};
  if (ivEmpty(b)) return {a.lo, a.hi, a.nan || b.nan};
  return {a.lo < b.lo ? a.lo : b.lo, a.hi < b.hi ? b.hi : a.hi, a.nan || b.nan};
}
FJ_HD IvFloat ivWhere(IvBool c, IvFloat a, IvFloat b) {
  if (!c.canFalse) return a;
  if (!c.canTrue) return b;
  return ivUnion(a, b);
}
FJ_HD bool hasPosInf(IvFloat a) { return !ivEmpty(a) && a.hi == infinity(); }
FJ_HD bool hasNegInf(IvFloat a) { return !ivEmpty(a) && a.lo == -infinity(); }
FJ_HD bool hasZero(IvFloat a) { return !ivEmpty(a) && a.lo <= 0.0f && a.hi >= 0.0f; }

FJ_HD IvFloat ivNeg(IvFloat a) { return {-a.hi, -a.lo, a.nan}; }
FJ_HD IvFloat ivAdd(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {infinity(), -infinity(), true};
  bool nan = a.nan || b.nan || (hasPosInf(a) && hasNegInf(b)) || (hasNegInf(a) && hasPosInf(b));
  double lo = (double)a.lo + (double)b.lo, hi = (double)a.hi + (double)b.hi;
  if (isNaN(lo)) lo = -(double)infinity();  // -inf + +inf: the non-NaN results can be anything
  if (isNaN(hi)) hi = (double)infinity();
  return ivFromDouble(lo, hi, nan);
}
FJ_HD IvFloat ivSub(IvFloat a, IvFloat b) { return ivAdd(a, ivNeg(b)); }
FJ_HD IvFloat ivMul(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {infinity(), -infinity(), true};
  bool zeroTimesInf = (hasZero(a) && (hasPosInf(b) || hasNegInf(b))) ||
                      (hasZero(b) && (hasPosInf(a) || hasNegInf(a)));
  if (zeroTimesInf) return ivFloatFull();
  double p0 = (double)a.lo * b.lo, p1 = (double)a.lo * b.hi, p2 = (double)a.hi * b.lo, p3 = (double)a.hi * b.hi;
  double lo = p0, hi = p0;
  lo = p1 < lo ? p1 : lo; lo = p2 < lo ? p2 : lo; lo = p3 < lo ? p3 : lo;
  hi = p1 > hi ? p1 : hi; hi = p2 > hi ? p2 : hi; hi = p3 > hi ? p3 : hi;
  return ivFromDouble(lo, hi, a.nan || b.nan);
}
FJ_HD IvFloat ivDiv(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b) || hasZero(b)) return ivFloatFull();
  bool infOverInf = (hasPosInf(a) || hasNegInf(a)) && (hasPosInf(b) || hasNegInf(b));
  if (infOverInf) return ivFloatFull();
  double q0 = (double)a.lo / b.lo, q1 = (double)a.lo / b.hi, q2 = (double)a.hi / b.lo, q3 = (double)a.hi / b.hi;
  double lo = q0, hi = q0;
  lo = q1 < lo ? q1 : lo; lo = q2 < lo ? q2 : lo; lo = q3 < lo ? q3 : lo;
  hi = q1 > hi ? q1 : hi; hi = q2 > hi ? q2 : hi; hi = q3 > hi ? q3 : hi;
  // The kernel divides with div.approx (2 ulp; and 0 for divisors beyond 2^126): widen like the other
  // approximate instructions, and admit 0 when such a divisor is possible.
  IvFloat r = ivApprox(lo, hi, a.nan || b.nan);
  const float kApproxDivLimit = 8.5070591730234616e37f;  // 2^126
  if (b.hi > kApproxDivLimit || b.lo < -kApproxDivLimit) r = ivUnion(r, ivFloat(0.0f, 0.0f));
  return r;
}
FJ_HD IvFloat ivAbs(IvFloat a) {
  if (ivEmpty(a)) return a;
  if (a.lo >= 0.0f) return a;
  if (a.hi <= 0.0f) return {-a.hi, -a.lo, a.nan};
  return {0.0f, -a.lo > a.hi ? -a.lo : a.hi, a.nan};
}
FJ_HD IvFloat ivMin(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {infinity(), -infinity(), true};
  return {a.lo < b.lo ? a.lo : b.lo, a.hi < b.hi ? a.hi : b.hi, a.nan || b.nan};
}
FJ_HD IvFloat ivMax(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {infinity(), -infinity(), true};
  return {a.lo > b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi, a.nan || b.nan};
}

FJ_HD IvFloat ivExp(IvFloat a) {
  if (ivEmpty(a)) return a;
  return ivApprox(exp((double)a.lo), exp((double)a.hi), a.nan);
}
FJ_HD IvFloat ivExp2(IvFloat a) {
  if (ivEmpty(a)) return a;
  return ivApprox(exp2((double)a.lo), exp2((double)a.hi), a.nan);
}
FJ_HD IvFloat ivLogImpl(IvFloat a, bool base2) {
  if (ivEmpty(a)) return a;
  bool nan = a.nan || a.lo < 0.0f;
  if (a.hi < 0.0f) return {infinity(), -infinity(), true};
  double lo = a.lo < 0.0f ? 0.0 : (double)a.lo;
  double l = base2 ? log2(lo) : log(lo), h = base2 ? log2((double)a.hi) : log((double)a.hi);
  return ivApprox(l, h, nan);
}
FJ_HD IvFloat ivLog(IvFloat a) { return ivLogImpl(a, false); }
FJ_HD IvFloat ivLog2(IvFloat a) { return ivLogImpl(a, true); }
FJ_HD IvFloat ivSqrt(IvFloat a) {
  if (ivEmpty(a)) return a;
  if (a.hi < 0.0f) return {infinity(), -infinity(), true};
  double lo = a.lo < 0.0f ? 0.0 : (double)a.lo;
  return ivApprox(sqrt(lo), sqrt((double)a.hi), a.nan || a.lo < 0.0f);
}
FJ_HD IvFloat ivRsqrt(IvFloat a) {
  if (ivEmpty(a)) return a;
  if (a.hi < 0.0f) return {infinity(), -infinity(), true};
  double lo = a.lo < 0.0f ? 0.0 : (double)a.lo;
  double hiR = lo == 0.0 ? (double)infinity() : 1.0 / sqrt(lo);
  double loR = 1.0 / sqrt((double)a.hi);
  IvFloat r = ivApprox(loR, hiR, a.nan || a.lo < 0.0f);
  // rsqrt(-0.0) is -inf (IEEE 1 / sqrt(-0.0), and rsqrtf on the GPU), and an interval holding 0 may hold
  // -0.0: intervals compare values, so they cannot tell the two zeros apart.
  if (a.lo <= 0.0f) r.lo = -infinity();
  return r;
}
FJ_HD IvFloat ivTanh(IvFloat a) {
  if (ivEmpty(a)) return a;
  IvFloat r = ivApprox(tanh((double)a.lo), tanh((double)a.hi), a.nan);
  r.lo = r.lo < -1.0f ? -1.0f : r.lo;  // tanh.approx stays within [-1, 1]
  r.hi = r.hi > 1.0f ? 1.0f : r.hi;
  return r;
}
FJ_HD IvFloat ivSigmoid(IvFloat a) {
  if (ivEmpty(a)) return a;
  IvFloat r = ivApprox(1.0 / (1.0 + exp(-(double)a.lo)), 1.0 / (1.0 + exp(-(double)a.hi)), a.nan);
  r.lo = r.lo < 0.0f ? 0.0f : r.lo;
  r.hi = r.hi > 1.0f ? 1.0f : r.hi;
  return r;
}
FJ_HD IvFloat clampIv(IvFloat r, float lo, float hi) {
  r.lo = r.lo < lo ? lo : r.lo;
  r.hi = r.hi > hi ? hi : r.hi;
  return r;
}

constexpr double kPi = 3.141592653589793;
/// Whether c + 2 pi k lies in [lo, hi] for some integer k; the double arithmetic's rounding is absorbed by a
/// margin that counts points near the edges as inside (a wider result, never a wrong one).
FJ_HD bool hitsPeriodic(double lo, double hi, double c) {
  const double period = 2.0 * kPi, margin = 1e-9 * (fabs(lo) + fabs(hi) + 1.0);
  double k = ceil((lo - margin - c) / period);
  return c + period * k <= hi + margin;
}
/// sin or cos: the values at the ends, widened to +-1 where a maximum or minimum lies inside.
FJ_HD IvFloat ivSinCos(IvFloat a, bool isCos) {
  if (ivEmpty(a)) return a;
  bool inf = hasPosInf(a) || hasNegInf(a);  // sin(+-inf) is NaN
  const double kLargeArgument = 1e9;        // beyond it the margins of hitsPeriodic exceed a period
  double lo = a.lo, hi = a.hi;
  if (inf || hi - lo >= 2.0 * kPi || fabs(lo) > kLargeArgument || fabs(hi) > kLargeArgument)
    return {-1.0f, 1.0f, a.nan || inf};
  double f0 = isCos ? cos(lo) : sin(lo), f1 = isCos ? cos(hi) : sin(hi);
  double rlo = f0 < f1 ? f0 : f1, rhi = f0 < f1 ? f1 : f0;
  if (hitsPeriodic(lo, hi, isCos ? 0.0 : kPi / 2)) rhi = 1.0;
  if (hitsPeriodic(lo, hi, isCos ? kPi : -kPi / 2)) rlo = -1.0;
  return clampIv(ivApprox(rlo, rhi, a.nan), -1.0f, 1.0f);
}
FJ_HD IvFloat ivSin(IvFloat a) { return ivSinCos(a, false); }
FJ_HD IvFloat ivCos(IvFloat a) { return ivSinCos(a, true); }
/// tan increases on each branch (k pi - pi/2, k pi + pi/2): inside one branch the ends bound it, across a pole
/// it can be anything (never NaN for finite inputs).
FJ_HD IvFloat ivTan(IvFloat a) {
  if (ivEmpty(a)) return a;
  bool inf = hasPosInf(a) || hasNegInf(a);
  double lo = a.lo, hi = a.hi;
  const double kLargeArgument = 1e9, margin = 1e-9 * (fabs(lo) + fabs(hi) + 1.0);
  if (!inf && fabs(lo) < kLargeArgument && fabs(hi) < kLargeArgument) {
    double k = floor((lo + kPi / 2) / kPi);
    if (lo - (k * kPi - kPi / 2) > margin && (k * kPi + kPi / 2) - hi > margin) return ivApprox(tan(lo), tan(hi), a.nan);
  }
  return {-infinity(), infinity(), a.nan || inf};
}
FJ_HD IvFloat ivAtan(IvFloat a) {
  if (ivEmpty(a)) return a;
  const float kHalfPiUp = 1.57079637f;  // float(pi / 2), rounded up: atanf(inf)
  return clampIv(ivApprox(atan((double)a.lo), atan((double)a.hi), a.nan), -kHalfPiUp, kHalfPiUp);
}
FJ_HD IvFloat ivErf(IvFloat a) {
  if (ivEmpty(a)) return a;
  return clampIv(ivApprox(erf((double)a.lo), erf((double)a.hi), a.nan), -1.0f, 1.0f);
}
/// log1p is log(1 + x): NaN below -1, -inf at -1.
FJ_HD IvFloat ivLog1p(IvFloat a) {
  if (ivEmpty(a)) return a;
  if (a.hi < -1.0f) return {infinity(), -infinity(), true};
  double lo = a.lo < -1.0f ? -1.0 : (double)a.lo;
  return ivApprox(log1p(lo), log1p((double)a.hi), a.nan || a.lo < -1.0f);
}
FJ_HD IvFloat ivExpm1(IvFloat a) {
  if (ivEmpty(a)) return a;
  return clampIv(ivApprox(expm1((double)a.lo), expm1((double)a.hi), a.nan), -1.0f, infinity());
}
/// a ** b for a >= 0 is monotone in a for each b and in b for each a, so the corners bound it. A negative base
/// (NaN for fractional exponents, alternating signs for integral ones) or a zero base under a negative exponent
/// (+-inf: the interval cannot tell -0 from 0) is not modelled.
FJ_HD IvFloat ivPow(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b) || a.lo < 0.0f || (a.lo == 0.0f && b.lo < 0.0f)) return ivFloatFull();
  double c0 = pow((double)a.lo, (double)b.lo), c1 = pow((double)a.lo, (double)b.hi);
  double c2 = pow((double)a.hi, (double)b.lo), c3 = pow((double)a.hi, (double)b.hi);
  double lo = c0, hi = c0;
  lo = c1 < lo ? c1 : lo; lo = c2 < lo ? c2 : lo; lo = c3 < lo ? c3 : lo;
  hi = c1 > hi ? c1 : hi; hi = c2 > hi ? c2 : hi; hi = c3 > hi ? c3 : hi;
  IvFloat r = ivApprox(lo, hi, a.nan || b.nan);
  // pow(nan, 0) and pow(1, nan) are 1.
  if ((a.nan && hasZero(b)) || (b.nan && a.lo <= 1.0f && a.hi >= 1.0f)) r = ivUnion(r, ivFloat(1.0f, 1.0f));
  return r;
}
/// C fmod: |fmod(a, b)| <= min(|a|, |b|), with the dividend's sign; NaN for b == 0 and infinite a.
FJ_HD IvFloat ivFModF(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {infinity(), -infinity(), true};
  bool nan = a.nan || b.nan || hasPosInf(a) || hasNegInf(a) || hasZero(b);
  double bmax = fabs((double)b.lo) > fabs((double)b.hi) ? fabs((double)b.lo) : fabs((double)b.hi);
  double lo = a.lo < 0.0f ? ((double)a.lo > -bmax ? (double)a.lo : -bmax) : 0.0;
  double hi = a.hi > 0.0f ? ((double)a.hi < bmax ? (double)a.hi : bmax) : 0.0;
  return ivFromDouble(lo, hi, nan);
}
FJ_HD IvFloat ivRound(IvFloat a) { return ivEmpty(a) ? a : IvFloat{rintf(a.lo), rintf(a.hi), a.nan}; }
FJ_HD IvFloat ivTrunc(IvFloat a) { return ivEmpty(a) ? a : IvFloat{truncf(a.lo), truncf(a.hi), a.nan}; }
FJ_HD IvFloat ivFloor(IvFloat a) { return ivEmpty(a) ? a : IvFloat{floorf(a.lo), floorf(a.hi), a.nan}; }
FJ_HD IvFloat ivCeil(IvFloat a) { return ivEmpty(a) ? a : IvFloat{ceilf(a.lo), ceilf(a.hi), a.nan}; }
FJ_HD IvFloat ivFloorDivF(IvFloat a, IvFloat b) {
  IvFloat q = ivDiv(a, b);
  if (q.nan || ivEmpty(q)) return ivFloatFull();
  // floor_divide differs from floor(a / b) by at most one. It goes through fmod, which is NaN for an
  // infinite dividend: inf // 2 is NaN (floorDivF, like torch and Python), not inf.
  return ivFromDouble(floor((double)q.lo) - 1.0, floor((double)q.hi) + 1.0, hasPosInf(a) || hasNegInf(a));
}
FJ_HD IvFloat ivModF(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b) || b.nan) return ivFloatFull();
  bool nan = a.nan || hasPosInf(a) || hasNegInf(a);
  if (b.lo > 0.0f && b.hi < infinity()) return {0.0f, b.hi, nan};
  if (b.hi < 0.0f && b.lo > -infinity()) return {b.lo, 0.0f, nan};
  return ivFloatFull();
}

FJ_HD IvBool ivLt(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {true, false};  // only NaN: every ordered comparison is false
  bool nan = a.nan || b.nan;
  return {nan || a.hi >= b.lo, a.lo < b.hi};
}
FJ_HD IvBool ivLe(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {true, false};
  bool nan = a.nan || b.nan;
  return {nan || a.hi > b.lo, a.lo <= b.hi};
}
FJ_HD IvBool ivGt(IvFloat a, IvFloat b) { return ivLt(b, a); }
FJ_HD IvBool ivGe(IvFloat a, IvFloat b) { return ivLe(b, a); }
FJ_HD IvBool ivEq(IvFloat a, IvFloat b) {
  if (ivEmpty(a) || ivEmpty(b)) return {true, false};
  bool overlap = a.lo <= b.hi && b.lo <= a.hi;
  bool samePoint = a.lo == a.hi && b.lo == b.hi && a.lo == b.lo;
  return {!samePoint || a.nan || b.nan, overlap};
}
FJ_HD IvBool ivNe(IvFloat a, IvFloat b) { return ivNot(ivEq(a, b)); }
FJ_HD IvBool ivFloatToBool(IvFloat a) { return ivNe(a, ivFloat(0.0f, 0.0f)); }

FJ_HD IvFloat ivIntToFloat(IvInt a) { return ivFromDouble((double)a.lo, (double)a.hi, false); }
FJ_HD IvInt ivFloatToInt(IvFloat a) {
  if (ivEmpty(a)) return {0, 0};
  IvInt r = {toI32(a.lo), toI32(a.hi)};  // truncation is monotone (non-decreasing)
  return a.nan ? ivUnion(r, ivInt(0, 0)) : r;
}

// ---- captured-tensor reads ----------------------------------------------------------------------
/// Clips index ranges to the tensor; returns the number of in-bounds elements (0 when none) and whether
/// some index can fall outside (such reads yield 0).
FJ_HD long long clipIndexBox(const TensorArg& t, int rank, const IvInt* idx, IvInt* clipped, bool* outside) {
  long long volume = 1;
  *outside = false;
  for (int d = 0; d < rank; ++d) {
    long long lo = maxLL(idx[d].lo, 0), hi = minLL(idx[d].hi, (long long)t.size[d] - 1);
    if (idx[d].lo < 0 || idx[d].hi > (long long)t.size[d] - 1) *outside = true;
    if (lo > hi) return 0;
    clipped[d] = ivInt(lo, hi);
    volume *= hi - lo + 1;
    if (volume > kMaxLoadScan) volume = kMaxLoadScan + 1;  // saturate; only the comparison matters
  }
  return volume;
}

/// Visits every in-bounds element of a box of at most kMaxLoadScan elements.
template <class F>
FJ_HD void forEachInBox(const TensorArg& t, int rank, const IvInt* box, F&& visit) {
  int idx[kMaxRank] = {0, 0, 0, 0};
  for (int d = 0; d < rank; ++d) idx[d] = (int)box[d].lo;
  for (;;) {
    visit(elementOffset(t, rank, idx));
    int d = rank - 1;
    while (d >= 0 && idx[d] == (int)box[d].hi) {
      idx[d] = (int)box[d].lo;
      --d;
    }
    if (d < 0) return;
    ++idx[d];
  }
}

/// Bounds a float tensor read over an index box: scans the values when the tensor is present and the box
/// small, else assumes any value.
FJ_HD IvFloat ivLoadFloat(const TensorArg& t, int elem, int rank, const IvInt* idx) {
  IvInt box[kMaxRank];
  bool outside = false;
  long long volume = clipIndexBox(t, rank, idx, box, &outside);
  IvFloat r = {infinity(), -infinity(), false};
  if (outside) r = ivFloat(0.0f, 0.0f);
  if (volume == 0) return r;
  if (t.data == nullptr || volume > kMaxLoadScan) return ivFloatFull();
  forEachInBox(t, rank, box, [&](long long off) {
    float v = loadFloat(t, elem, off);
    if (isNaN(v)) r.nan = true;
    else r = ivUnion(r, ivFloat(v, v));
  });
  return r;
}
FJ_HD IvInt ivLoadInt(const TensorArg& t, int elem, int rank, const IvInt* idx) {
  IvInt box[kMaxRank];
  bool outside = false;
  long long volume = clipIndexBox(t, rank, idx, box, &outside);
  bool have = outside;
  IvInt r = {0, 0};
  if (volume == 0) return r;
  if (t.data == nullptr || volume > kMaxLoadScan) return elem == kElemBool ? ivInt(0, 1) : ivIntFull();
  forEachInBox(t, rank, box, [&](long long off) {
    long long v = loadInt(t, elem, off);
    r = have ? ivUnion(r, ivInt(v, v)) : ivInt(v, v);
    have = true;
  });
  return r;
}
FJ_HD IvBool ivLoadBool(const TensorArg& t, int rank, const IvInt* idx) {
  return ivIntToBool(ivLoadInt(t, kElemBool, rank, idx));
}

// ---- captured-tensor gradient writes ------------------------------------------------------------
/// The offsets into a gradient buffer that one accumulation site can write: [lo, hi] (64-bit, as
/// gradOffset computes them); lo > hi when it can write none.
struct IvOffset {
  long long lo;
  long long hi;
};

FJ_HD bool ivEmpty(IvOffset a) { return a.lo > a.hi; }

/// Bounds gradOffset(gradStride, t, indices...) over an index box: each index range is clipped to the
/// tensor (out-of-bounds contributions are dropped, so they write nothing), then combined with the
/// buffer's strides (either sign). An index range entirely outside the tensor gives the empty interval.
FJ_HD IvOffset ivGradOffset(const TensorArg& t, const long long* gradStride, int rank, const IvInt* idx) {
  IvOffset r = {0, 0};
  for (int d = 0; d < rank; ++d) {
    const long long lo = maxLL(idx[d].lo, 0), hi = minLL(idx[d].hi, (long long)t.size[d] - 1);
    if (lo > hi) return {1, 0};
    const long long a = lo * gradStride[d], b = hi * gradStride[d];
    r.lo += minLL(a, b);
    r.hi += maxLL(a, b);
  }
  return r;
}

}  // namespace fj
