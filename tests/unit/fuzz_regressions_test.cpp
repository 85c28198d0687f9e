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

bool bitsEqual(float a, float b) { return (a != a && b != b) || std::memcmp(&a, &b, sizeof a) == 0; }

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

TEST(FuzzRegression, MinimumAndMaximumOrderSignedZeros) {
  // minimum(0.0, score) at score = -0.0: Semantics.h treated the zeros as equal and returned the second
  // operand (-0.0), the canonicalizer moved the constant to the right (arith.minimumf is commutative:
  // IEEE 754-2019, -0.0 < 0.0) and the kernel returned 0.0. Now Semantics.h is IEEE 754-2019 too.
  EXPECT_TRUE(std::signbit(fj::minimumF(0.0f, -0.0f)) && std::signbit(fj::minimumF(-0.0f, 0.0f)));
  EXPECT_FALSE(std::signbit(fj::maximumF(0.0f, -0.0f)) || std::signbit(fj::maximumF(-0.0f, 0.0f)));
  std::vector<ScoreMod> mods{
      ScoreMod("min", [](Expr s, Expr, Expr, Expr, Expr) { return 1.0f / minimum(0.0f, s); }),
      ScoreMod("max", [](Expr s, Expr, Expr, Expr, Expr) { return 1.0f / maximum(-0.0f, s); }),
      ScoreMod("clamp", [](Expr s, Expr, Expr, Expr, Expr) { return 1.0f / clamp(s, -0.0f, 0.0f); })};
  std::vector<Variant> variants;
  for (const ScoreMod& m : mods) variants.push_back(generateVariant(m, MaskMod::noop(), {false}));
  HostLibrary lib(variants, "regress-zeros", "-O0");
  ASSERT_TRUE(lib.ok());
  for (size_t k = 0; k < mods.size(); ++k) {
    Program p(mods[k]);
    fj::CaptureArgs cap = hostCaptures(variants[k]);
    for (float s : {0.0f, -0.0f}) {
      const float want = p.scoreF32(s, {}), got = lib.get<ScoreFn>("score", k)(s, 0, 0, 0, 0, &cap);
      EXPECT_TRUE(bitsEqual(want, got)) << mods[k].name() << " at " << s << ": interpreter " << want << ", kernel "
                                        << got;
    }
  }
}

TEST(FuzzRegression, ZeroAdjointTimesInfiniteDerivativeIsNaN) {
  // The interpreter's reverse mode (the CPU reference backward) skipped every zero adjoint, so the branch
  // where() does not take contributed nothing; fj-autodiff, like torch, multiplies the zero by the branch's
  // derivative, and sqrt'(0) = inf makes it NaN. The two disagreed (0 against NaN); now both give NaN.
  ScoreMod m("where_sqrt", [](Expr s, Expr, Expr, Expr q, Expr) { return where(toFloat(q) < -1.0f, sqrt(s), s); });
  Program p(m);
  EXPECT_TRUE(std::isnan(p.scoreGrad(0.0, {}, 1.0).dscore));
  EXPECT_EQ(p.scoreGrad(4.0, {}, 1.0).dscore, 1.0) << "away from the pole the dead branch adds 0";
  Variant v = generateVariant(m, MaskMod::noop());
  HostLibrary lib({v}, "regress-adjoint", "-O0");
  ASSERT_TRUE(lib.ok());
  fj::CaptureArgs cap = hostCaptures(v);
  fj::GradArgs grads{};
  EXPECT_TRUE(std::isnan(lib.get<GradFn>("grad", 0)(0.0f, 0, 0, 0, 0, 1.0f, &cap, &grads)));
  EXPECT_EQ(lib.get<GradFn>("grad", 0)(4.0f, 0, 0, 0, 0, 1.0f, &cap, &grads), 1.0f);
  // The same rule makes torch's where(c, s * nan, s) NaN in every row, not only where c holds.
  ScoreMod nanBranch("nan_branch", [](Expr s, Expr, Expr, Expr q, Expr) { return where(q == 6, s * NAN, s); });
  EXPECT_TRUE(std::isnan(Program(nanBranch).scoreGrad(1.0, {0, 0, 3, 0}, 1.0).dscore));
}

TEST(FuzzRegression, GradientOfADeadBranchIsNaNLikeTorch) {
  // fj-autodiff ran after simplification, which had folded where(false, sqrt(score), score) to score: the
  // generated gradient was 1 where the chain rule on the mod as written (the interpreter, torch) gives
  // 0 * inf = NaN. Autodiff now runs on the imported IR, so no fold can change a gradient.
  ScoreMod m("dead_branch", [](Expr s, Expr, Expr, Expr, Expr) { return where(Expr(false), sqrt(s), s); });
  Program p(m);
  EXPECT_TRUE(std::isnan(p.scoreGrad(0.0, {}, 1.0).dscore));
  Variant v = generateVariant(m, MaskMod::noop());
  EXPECT_NE(v.simplifiedIR.find("score_mod_grad"), std::string::npos);
  HostLibrary lib({v}, "regress-dead", "-O0");
  ASSERT_TRUE(lib.ok());
  fj::CaptureArgs cap = hostCaptures(v);
  fj::GradArgs grads{};
  EXPECT_TRUE(std::isnan(lib.get<GradFn>("grad", 0)(0.0f, 0, 0, 0, 0, 1.0f, &cap, &grads)));
  EXPECT_EQ(lib.get<GradFn>("grad", 0)(4.0f, 0, 0, 0, 0, 1.0f, &cap, &grads), 1.0f);
  EXPECT_EQ(p.scoreF32(-1.0f, {}), -1.0f) << "the forward value is the taken branch";
}

TEST(FuzzRegression, AProbModWithoutTensorGradientsCompiles) {
  // The emitter gave a gradient function the gradient-sink parameter only when it wrote captured-tensor
  // gradients or was score_mod_grad, but the prob_mod adapter (prob_mod_dp, prob_mod_grad) always passes
  // one: every prob_mod reading no tensor that requires a gradient failed to compile.
  ProbMod prob("relu_shift", [](Expr p, Expr, Expr, Expr, Expr, Expr visible) {
    return maximum(p - 1.0f / toFloat(visible), 0.0f);
  });
  Variant v = generateVariant(ScoreMod::noop(), MaskMod::noop(), VariantOptions{}, ExtraHooks{std::nullopt, prob});
  HostLibrary lib({v}, "regress-prob-grad", "-O0");
  ASSERT_TRUE(lib.ok());
  fj::CaptureArgs cap = hostCaptures(v);
  fj::GradArgs none{};
  auto grad = lib.get<ProbGradFn>("prob_grad", 0);
  ASSERT_NE(grad, nullptr);
  EXPECT_EQ(grad(0.5f, 0, 0, 3, 1, 4, 1.0f, &cap, &none), 1.0f);  // 0.5 - 1/4 > 0: d/dp = 1
  EXPECT_EQ(grad(0.1f, 0, 0, 3, 1, 4, 1.0f, &cap, &none), 0.0f);  // clipped
  EXPECT_EQ(lib.get<ProbFn>("prob", 0)(0.5f, 0, 0, 3, 1, 4, &cap), 0.25f);
}
