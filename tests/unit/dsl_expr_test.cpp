// DSL: tracing, type rules, structural keys and error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "dsl/Error.h"
#include "dsl/Interpreter.h"
#include "dsl/Mods.h"

using namespace flexjit;

namespace {

/// Runs `fn` and returns the flexjit::Error message it raised ("" if none).
template <class F>
std::string errorOf(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

MaskMod causal() {
  return MaskMod("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
}

}  // namespace

TEST(DslTrace, CausalMaskEvaluates) {
  Program p(causal());
  EXPECT_TRUE(p.mask({0, 0, 5, 3}));
  EXPECT_TRUE(p.mask({0, 0, 5, 5}));
  EXPECT_FALSE(p.mask({0, 0, 5, 6}));
}

TEST(DslTypes, PromotionFollowsTorch) {
  Expr q = Expr::param(Param::Q), s = Expr::param(Param::Score);
  EXPECT_EQ((q + 1).type(), ScalarType::I32);
  EXPECT_EQ((q + 1.5f).type(), ScalarType::F32);
  EXPECT_EQ((q / 2).type(), ScalarType::F32);  // true division
  EXPECT_EQ(floordiv(q, 2).type(), ScalarType::I32);
  EXPECT_EQ((q > 2).type(), ScalarType::Bool);
  EXPECT_EQ(((q > 2) + (q < 9)).type(), ScalarType::I32);  // bools count as ints
  EXPECT_EQ(exp(q).type(), ScalarType::F32);
  EXPECT_EQ(floor(q).type(), ScalarType::I32);
  EXPECT_EQ(where(q > 0, s, 0).type(), ScalarType::F32);
}

TEST(DslSemantics, FloorDivAndModFollowPython) {
  // Python: -7 // 2 == -4, -7 % 2 == 1, 7 % -2 == -1, -7 % -2 == -1.
  ScoreMod m("pymod", [](Expr s, Expr, Expr, Expr q, Expr kv) {
    return toFloat(floordiv(q - kv, 2) * 100 + (q - kv) % 4);
  });
  Program p(m);
  EXPECT_EQ(p.scoreF32(0, {0, 0, 0, 7}), -4 * 100 + 1);   // -7 // 2, -7 % 4 == 1
  EXPECT_EQ(p.scoreF32(0, {0, 0, 7, 0}), 3 * 100 + 3);
  ScoreMod neg("negdiv", [](Expr, Expr, Expr, Expr q, Expr kv) { return toFloat(q % (0 - kv)); });
  Program pn(neg);
  EXPECT_EQ(pn.scoreF32(0, {0, 0, 7, 2}), -1);   // 7 % -2
  EXPECT_EQ(pn.scoreF32(0, {0, 0, 7, 0}), 7);    // x % 0 == x (defined)
}

TEST(DslSemantics, FModShiftsAndRoundFollowTorch) {
  // torch.fmod takes the dividend's sign; shifts outside [0, 32) give 0 (<<) or the sign fill (>>); round ties
  // to even. The values are torch's on int32 / float32 tensors.
  ScoreMod m("ints", [](Expr, Expr, Expr, Expr q, Expr kv) {
    return toFloat(fmod(q - 12, kv - 5) * 1000 + fmod(q - 12, 0) * 100);
  });
  Program p(m);
  EXPECT_EQ(p.scoreF32(0, {0, 0, 7, 8}), -2 * 1000 + -5 * 100);  // fmod(-5, 3) == -2, fmod(-5, 0) == -5
  EXPECT_EQ(p.scoreF32(0, {0, 0, 17, 2}), 2 * 1000 + 5 * 100);   // fmod(5, -3) == 2
  ScoreMod shifts("shifts", [](Expr, Expr, Expr, Expr q, Expr kv) { return toFloat((q - 8) << kv) + toFloat((q - 8) >> kv) * 0.5f; });
  Program ps(shifts);
  EXPECT_EQ(ps.scoreF32(0, {0, 0, 9, 3}), 8 + 0);         // 1 << 3, 1 >> 3
  EXPECT_EQ(ps.scoreF32(0, {0, 0, 0, 1}), -16 + -4 * 0.5f);  // -8 << 1, -8 >> 1
  EXPECT_EQ(ps.scoreF32(0, {0, 0, 9, 32}), 0 + 0);         // shifts of 32: 0 and the sign of 1
  EXPECT_EQ(ps.scoreF32(0, {0, 0, 0, 40}), 0 + -1 * 0.5f);  // -8 >> 40 == -1
  ScoreMod r("round", [](Expr s, Expr, Expr, Expr, Expr) { return round(s) * 10.0f + trunc(s); });
  Program pr(r);
  EXPECT_EQ(pr.scoreF32(2.5f, {}), 20.0f + 2.0f);
  EXPECT_EQ(pr.scoreF32(-1.5f, {}), -20.0f - 1.0f);
  EXPECT_EQ(pr.scoreF32(0.5f, {}), 0.0f);
}

TEST(DslInterval, NewFloatOpsContainEverySample) {
  // Each op's interval form over random boxes of the score holds the op's value at every sampled point
  // (float32, as the kernels compute) and at the ends.
  std::vector<ScoreMod> mods = {
      ScoreMod("sin", [](Expr s, Expr, Expr, Expr, Expr) { return sin(s); }),
      ScoreMod("cos", [](Expr s, Expr, Expr, Expr, Expr) { return cos(s); }),
      ScoreMod("tan", [](Expr s, Expr, Expr, Expr, Expr) { return tan(s); }),
      ScoreMod("atan", [](Expr s, Expr, Expr, Expr, Expr) { return atan(s); }),
      ScoreMod("erf", [](Expr s, Expr, Expr, Expr, Expr) { return erf(s); }),
      ScoreMod("log1p", [](Expr s, Expr, Expr, Expr, Expr) { return log1p(s); }),
      ScoreMod("expm1", [](Expr s, Expr, Expr, Expr, Expr) { return expm1(s); }),
      ScoreMod("round", [](Expr s, Expr, Expr, Expr, Expr) { return round(s) + trunc(s); }),
      ScoreMod("pow", [](Expr s, Expr, Expr, Expr, Expr) { return pow(s * s, s - 1.0f); }),
      ScoreMod("fmod", [](Expr s, Expr, Expr, Expr, Expr) { return fmod(s * 3.0f, s + 2.0f); }),
  };
  std::mt19937 rng(7);
  auto uniform = [&](float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); };
  for (const ScoreMod& m : mods) {
    Program p(m);
    for (int t = 0; t < 400; ++t) {
      float a = uniform(-12.0f, 12.0f), w = t % 4 == 0 ? 0.0f : uniform(0.0f, t % 3 == 0 ? 0.1f : 8.0f);
      fj::IvFloat r = p.scoreInterval(Box{}, fj::ivFloat(a, a + w));
      for (int k = 0; k <= 16; ++k) {
        float x = k == 16 ? a + w : a + w * static_cast<float>(k) / 16.0f;
        float y = p.scoreF32(x, {});
        bool inside = std::isnan(y) ? r.nan : (r.lo <= y && y <= r.hi);
        ASSERT_TRUE(inside) << m.name() << " at " << x << " = " << y << " outside [" << r.lo << ", " << r.hi
                            << "] (nan " << r.nan << ") for [" << a << ", " << a + w << "]";
      }
    }
  }
}

TEST(DslKeys, StructuralHashingRules) {
  auto a = MaskMod("a", [](Expr, Expr, Expr q, Expr kv) { return q - kv <= 1024; });
  auto b = MaskMod("b", [](Expr, Expr, Expr q, Expr kv) {
    Expr d = q - kv;
    return d <= 1024;
  });
  auto c = MaskMod("c", [](Expr, Expr, Expr q, Expr kv) { return q - kv <= 1000; });
  EXPECT_EQ(a.key(), b.key()) << "equal expressions give equal keys whatever their names";
  EXPECT_NE(a.key(), c.key()) << "a different constant gives a different key";

  CapturedTensor doc1("doc", DType::I32, 1), doc2("other", DType::I32, 1), doc64("doc64", DType::I64, 1);
  auto m1 = MaskMod("d1", [&](Expr, Expr, Expr q, Expr kv) { return doc1[q] == doc1[kv]; });
  auto m2 = MaskMod("d2", [&](Expr, Expr, Expr q, Expr kv) { return doc2[q] == doc2[kv]; });
  auto m3 = MaskMod("d3", [&](Expr, Expr, Expr q, Expr kv) { return doc1[q] == doc2[kv]; });
  auto m4 = MaskMod("d4", [&](Expr, Expr, Expr q, Expr kv) { return doc64[q] == doc64[kv]; });
  EXPECT_EQ(m1.key(), m2.key()) << "tensor identity does not enter the key";
  EXPECT_NE(m1.key(), m3.key()) << "one tensor read twice differs from two tensors";
  EXPECT_NE(m1.key(), m4.key()) << "dtype enters the key";
  EXPECT_EQ(m3.tensors().size(), 2u);
}

TEST(DslCaptures, ScalarsChangeWithoutChangingTheKey) {
  CapturedScalar cap("cap", 30.0f);
  ScoreMod m("softcap", [&](Expr s, Expr, Expr, Expr, Expr) { return cap * tanh(s / cap); });
  std::string key = m.key();
  Program p(m);
  float before = p.scoreF32(10.0f, {});
  cap.set(5.0f);
  p.bindCaptures();
  float after = p.scoreF32(10.0f, {});
  EXPECT_NEAR(before, 30.0f * std::tanh(10.0f / 30.0f), 1e-5);
  EXPECT_NEAR(after, 5.0f * std::tanh(2.0f), 1e-5);
  EXPECT_EQ(ScoreMod("softcap2", [&](Expr s, Expr, Expr, Expr, Expr) { return cap * tanh(s / cap); }).key(), key);
}

TEST(DslCompose, AndOrMasks) {
  auto window = MaskMod("window", [](Expr, Expr, Expr q, Expr kv) { return q - kv <= 4; });
  Program both(and_masks({causal(), window}));
  Program either(or_masks({causal(), window}));
  EXPECT_TRUE(both.mask({0, 0, 10, 8}));
  EXPECT_FALSE(both.mask({0, 0, 10, 2}));
  EXPECT_FALSE(both.mask({0, 0, 2, 10}));
  EXPECT_TRUE(either.mask({0, 0, 2, 10}));
  EXPECT_TRUE(noop_mask().isNoop());
  EXPECT_TRUE(noop_score_mod().isNoop());
}

TEST(DslErrors, MessagesNameTheModAndTheOp) {
  std::string e = errorOf([] { MaskMod("bad", [](Expr, Expr, Expr q, Expr) { return toFloat(q); }); });
  EXPECT_NE(e.find("mask_mod 'bad'"), std::string::npos) << e;
  EXPECT_NE(e.find("must return bool"), std::string::npos) << e;

  e = errorOf([] { ScoreMod("boolish", [](Expr, Expr, Expr, Expr q, Expr kv) { return q > kv; }); });
  EXPECT_NE(e.find("score_mod 'boolish'"), std::string::npos) << e;
  EXPECT_NE(e.find("must return float32"), std::string::npos) << e;

  CapturedTensor bias("bias", DType::F32, 2);
  e = errorOf([&] { ScoreMod("f", [&](Expr s, Expr, Expr h, Expr, Expr) { return s + bias[h][s]; }); });
  EXPECT_NE(e.find("score_mod 'f'"), std::string::npos) << e;
  EXPECT_NE(e.find("indexed with a float32"), std::string::npos) << e;

  e = errorOf([&] { ScoreMod("rank", [&](Expr s, Expr, Expr h, Expr, Expr) { return s + bias[h]; }); });
  EXPECT_NE(e.find("has rank 2 but was indexed with 1 index"), std::string::npos) << e;

  e = errorOf([] { MaskMod("neg", [](Expr, Expr, Expr q, Expr kv) { return -(q > kv); }); });
  EXPECT_NE(e.find("negation of a bool"), std::string::npos) << e;

  e = errorOf([] { MaskMod("w", [](Expr, Expr, Expr q, Expr kv) { return where(q - kv, true, false); }); });
  EXPECT_NE(e.find("condition of where() must be bool"), std::string::npos) << e;

  e = errorOf([] { ScoreMod("bits", [](Expr s, Expr, Expr, Expr, Expr) { return toFloat(s & 1); }); });
  EXPECT_NE(e.find("operator '&'"), std::string::npos) << e;

  e = errorOf([] { CapturedTensor("g", DType::I32, 1, /*requiresGrad=*/true); });
  EXPECT_NE(e.find("only float tensors can require a gradient"), std::string::npos) << e;

  e = errorOf([] { CapturedTensor t("t", DType::F32, 1); t.bind(TensorView(nullptr, DType::F16, Device::cpu(), {4})); });
  EXPECT_NE(e.find("declared float32 of rank 1"), std::string::npos) << e;

  e = errorOf([] { ScoreMod("big", [](Expr s, Expr, Expr, Expr q, Expr) { return s + toFloat(q + 3000000000LL); }); });
  EXPECT_NE(e.find("does not fit int32"), std::string::npos) << e;
}

// A very long expression (200k ops, as a generated or unrolled mod can make) is built, keyed, evaluated
// and destroyed without recursing once per op (which overflowed the stack at teardown).
TEST(DslExpr, LongChainsAreHandledWithoutDeepRecursion) {
  constexpr int kOps = 200000;
  {
    Expr e = Expr::param(Param::Score);
    for (int i = 0; i < kOps; ++i) e = e + 1.0f;
    ScoreMod chain = ScoreMod::fromBody("chain", e);
    EXPECT_EQ(chain.key().size(), 16u);
    Program p(chain);
    EXPECT_EQ(p.scoreF32(0.0f, {0, 0, 0, 0}), static_cast<float>(kOps));
  }
  Expr e = Expr::param(Param::Q);
  for (int i = 0; i < kOps; ++i) e = e + 1;
  e = Expr();  // the last reference to the whole chain
  SUCCEED();
}
