// Every bug the differential fuzzer (differential_fuzz_test.cpp) found, minimised, as a named test. Each
// names the stage that was wrong and checks the fixed behaviour through the public API: the interpreter,
// the compile-time facts, the interval semantics and the host-compiled generated hooks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "HostCompile.h"
#include "codegen/Variant.h"
#include "dsl/Interpreter.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

bool contains(const fj::IvFloat& r, float v) { return v != v ? r.nan : (!fj::ivEmpty(r) && r.lo <= v && v <= r.hi); }

/// score_mod_interval of variant k over box {b, h, q, kv} = {0, 0, 0..7, 0..7} and score range `s`.
fj::IvFloat generatedScoreInterval(const HostLibrary& lib, size_t k, const Variant& v, fj::IvFloat s) {
  const long long box[8] = {0, 0, 0, 0, 0, 7, 0, 7};
  const float in[3] = {s.lo, s.hi, s.nan ? 1.0f : 0.0f};
  float out[3];
  fj::CaptureArgs cap = hostCaptures(v);
  lib.get<ScoreIntervalFn>("score_interval", k)(box, in, &cap, out);
  return fj::IvFloat{out[0], out[1], out[2] != 0};
}

const Box kBox{fj::ivInt(0, 0), fj::ivInt(0, 0), fj::ivInt(0, 7), fj::ivInt(0, 7)};

}  // namespace

TEST(FuzzRegression, RsqrtOfNegativeZeroIsMinusInfinity) {
  // rsqrt(-0.0) = -inf (IEEE, rsqrtf on the GPU), but ivRsqrt bounded an interval holding 0 below by
  // rsqrt(hi): kScoreCanBeNegInf was false for score_mod = rsqrt(score), and the interval forms missed -inf.
  ScoreMod m("rsqrt", [](Expr s, Expr, Expr, Expr, Expr) { return rsqrt(s); });
  Program p(m);
  EXPECT_EQ(p.scoreF32(-0.0f, {}), -INFINITY);
  EXPECT_TRUE(contains(fj::ivRsqrt(fj::ivFloat(0.0f, 1.0f)), -INFINITY)) << "[0, 1] may hold -0.0";
  EXPECT_TRUE(contains(p.scoreInterval(kBox, fj::ivFloat(-0.0f, 2.0f)), -INFINITY));
  Variant v = generateVariant(m, MaskMod::noop());
  EXPECT_TRUE(v.facts.scoreCanBeNegInf);
  HostLibrary lib({v}, "regress-rsqrt", "-O0");
  ASSERT_TRUE(lib.ok());
  EXPECT_TRUE(contains(generatedScoreInterval(lib, 0, v, fj::ivFloat(-0.0f, 2.0f)), -INFINITY));
}

TEST(FuzzRegression, FloorDivOfAnInfiniteDividendIsNaN) {
  // inf // x is NaN (floorDivF goes through fmod, like torch and Python), but ivFloorDivF took the NaN flag
  // from the quotient's interval only and claimed [inf, inf].
  ScoreMod m("inf_floordiv", [](Expr, Expr, Expr h, Expr, Expr) { return floordiv(-INFINITY, toFloat(h) + 2.0f); });
  Program p(m);
  EXPECT_TRUE(std::isnan(p.scoreF32(0.0f, {})));
  EXPECT_TRUE(fj::ivFloorDivF(fj::ivFloatPoint(INFINITY), fj::ivFloat(1.0f, 3.0f)).nan);
  EXPECT_TRUE(p.scoreInterval(kBox).nan);
  Variant v = generateVariant(m, MaskMod::noop());
  HostLibrary lib({v}, "regress-floordiv", "-O0");
  ASSERT_TRUE(lib.ok());
  EXPECT_TRUE(generatedScoreInterval(lib, 0, v, fj::ivFloatFinite()).nan);
}

TEST(FuzzRegression, NaNConstantsAndScalarsInIntervals) {
  // A NaN constant (interpreter) or captured scalar (interpreter and generated interval forms) became the
  // interval [NaN, NaN] without the NaN flag: every comparison with it claimed "never", so the mask
  // !(q < nan), true everywhere, was classified as keeping nothing (an empty block: rows silently dropped).
  CapturedScalar nanScalar("c", NAN);
  MaskMod bad("not_below_nan", [&](Expr, Expr, Expr q, Expr) { return !(toFloat(q) < nanScalar); });
  Program pm(bad);
  pm.bindCaptures();
  EXPECT_TRUE(pm.mask({0, 0, 3, 5}));
  EXPECT_TRUE(pm.maskInterval(kBox).canTrue);
  EXPECT_NE(pm.classify(kBox), BlockClass::Empty);
  ScoreMod constant("max_nan", [](Expr s, Expr, Expr, Expr, Expr) { return minimum(maximum(s, NAN), 0.25f); });
  Program ps(constant);
  EXPECT_TRUE(std::isnan(ps.scoreF32(1.0f, {})));
  EXPECT_TRUE(ps.scoreInterval(kBox, fj::ivFloat(-1.0f, 1.0f)).nan);

  Variant v = generateVariant(ScoreMod::noop(), bad);
  HostLibrary lib({v}, "regress-nan", "-O0");
  ASSERT_TRUE(lib.ok());
  const long long box[8] = {0, 0, 0, 0, 0, 7, 0, 7};
  int out[2];
  fj::CaptureArgs cap = hostCaptures(v);
  lib.get<MaskIntervalFn>("mask_interval", 0)(box, &cap, out);
  EXPECT_TRUE(out[1]) << "the generated mask_mod_interval must allow true";
}
