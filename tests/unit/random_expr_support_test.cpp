// RandomExprGen (see RandomExpr.h), plus a check that it produces the op mix the property tests need.
#include <gtest/gtest.h>

#include <set>

#include "RandomExpr.h"
#include "dsl/Mods.h"

namespace flexjit::testing {

Expr RandomExprGen::floatExpr(int depth) {
  auto p = [](Param x) { return Expr::param(x); };
  if (leaf(depth)) {
    switch (pick(opt_.floatTensor ? 4 : 3)) {
      case 0: return opt_.allowScore ? p(Param::Score) : Expr(uniform(-2, 2));
      case 1: return Expr(uniform(-2, 2));
      case 2: return toFloat(intExpr(depth + 1)) * 0.125f;
      default: return (*opt_.floatTensor)[index(depth)];
    }
  }
  Expr a = floatExpr(depth + 1);
  if (opt_.smooth) {
    switch (pick(17)) {
      case 0: return a + floatExpr(depth + 1);
      case 1: return a - floatExpr(depth + 1);
      case 2: return a * floatExpr(depth + 1);
      case 3: return a / (1.5f + a * a);                    // denominators stay away from 0
      case 4: return exp(clamp(a, -4.0f, 4.0f));
      case 5: return tanh(a);
      case 6: return sigmoid(a);
      case 7: return sqrt(a * a + 1.0f);
      case 8: return log(a * a + 0.5f);
      case 9: return where(boolExpr(depth + 1), a, floatExpr(depth + 1));
      case 10: return -a + exp2(clamp(a, -3.0f, 3.0f));
      case 11: return sin(a) + cos(a) * 0.5f;
      case 12: return atan(a) + erf(a);
      case 13: return log1p(a * a) + expm1(clamp(a, -3.0f, 3.0f));
      case 14: return pow(a * a + 0.5f, clamp(floatExpr(depth + 1), -2.0f, 2.0f));
      case 15: return tan(clamp(a, -1.0f, 1.0f));
      default: return rsqrt(a * a + 2.0f) + abs(a) * 0.25f;
    }
  }
  switch (pick(21)) {
    case 0: return a + floatExpr(depth + 1);
    case 1: return a - floatExpr(depth + 1);
    case 2: return a * floatExpr(depth + 1);
    case 3: return a / floatExpr(depth + 1);
    case 4: return floordiv(a, floatExpr(depth + 1));
    case 5: return a % floatExpr(depth + 1);
    case 6: return minimum(a, floatExpr(depth + 1));
    case 7: return maximum(a, floatExpr(depth + 1));
    case 8: return exp(a);
    case 9: return log(abs(a));
    case 10: return tanh(a) + sigmoid(a);
    case 11: return sqrt(a) + rsqrt(a);
    case 12: return floor(a) + ceil(a) - exp2(a) + log2(a);
    case 13: return where(boolExpr(depth + 1), a, floatExpr(depth + 1));
    case 14: return -abs(a);
    case 15: return round(a) + trunc(a);
    case 16: return fmod(a, floatExpr(depth + 1));
    case 17: return pow(a, floatExpr(depth + 1));
    case 18: return sin(a) + cos(a) - tan(a) + atan(a);
    case 19: return erf(a) + log1p(a) - expm1(a);
    default: return toFloat(toInt(a * 3.0f));
  }
}

Expr RandomExprGen::intExpr(int depth) {
  auto p = [](Param x) { return Expr::param(x); };
  if (leaf(depth)) {
    switch (pick(opt_.intTensor ? 6 : 5)) {
      case 0: return p(Param::Q);
      case 1: return p(Param::KV);
      case 2: return p(Param::H);
      case 3: return p(Param::B);
      case 4: return Expr(pick(41) - 20);
      default: return (*opt_.intTensor)[index(depth)];
    }
  }
  Expr a = intExpr(depth + 1);
  switch (pick(opt_.smooth ? 9 : 15)) {
    case 0: return a + intExpr(depth + 1);
    case 1: return a - intExpr(depth + 1);
    case 2: return a * (pick(7) - 3);
    case 3: return floordiv(a, pick(9) - 4);
    case 4: return a % (pick(9) - 4);
    case 5: return minimum(a, intExpr(depth + 1));
    case 6: return maximum(a, intExpr(depth + 1));
    case 7: return abs(a);
    case 8: return clamp(a, pick(20) - 10, pick(20) + 10);
    case 9: return where(boolExpr(depth + 1), a, intExpr(depth + 1));
    case 10: return (a & intExpr(depth + 1)) ^ (a | 3);
    case 11: return fmod(a, pick(9) - 4);
    case 12: return fmod(a, intExpr(depth + 1)) + (a << (pick(40) - 4));
    case 13: return (a >> intExpr(depth + 1)) - (a >> (pick(6)));
    default: return floordiv(a, intExpr(depth + 1)) + a % intExpr(depth + 1);
  }
}

Expr RandomExprGen::boolExpr(int depth) {
  if (leaf(depth)) return intExpr(depth + 1) <= intExpr(depth + 1);
  switch (pick(opt_.smooth ? 6 : 8)) {
    case 0: return intExpr(depth + 1) < intExpr(depth + 1);
    case 1: return intExpr(depth + 1) == intExpr(depth + 1);
    case 2: return boolExpr(depth + 1) & boolExpr(depth + 1);
    case 3: return boolExpr(depth + 1) | boolExpr(depth + 1);
    case 4: return ~boolExpr(depth + 1);
    case 5: return boolExpr(depth + 1) ^ (intExpr(depth + 1) != intExpr(depth + 1));
    case 6: return floatExpr(depth + 1) > floatExpr(depth + 1);
    default: return toBool(intExpr(depth + 1));
  }
}

}  // namespace flexjit::testing

using namespace flexjit;
using namespace flexjit::testing;

TEST(RandomExpr, CoversManyOps) {
  CapturedTensor ft("ft", DType::F32, 1), it("it", DType::I32, 1);
  RandomExprOptions o;
  o.floatTensor = &ft;
  o.intTensor = &it;
  RandomExprGen gen(1, o);
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    ScoreMod m = ScoreMod::fromBody("r", gen.floatExpr());
    std::string text = m.canonicalForm();
    for (const char* op : {"exp ", "tanh ", "// ", "% ", "where ", "load ", "min ", "to_int ", "sin ", "pow ",
                           "fmod ", "<< ", ">> ", "round "})
      if (text.find(op) != std::string::npos) seen.insert(op);
  }
  EXPECT_EQ(seen.size(), 14u) << "the generator should reach every op family";
}
