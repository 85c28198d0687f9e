// flex_attention on the CPU (the float64 reference path) and its input validation.
#include <gtest/gtest.h>

#include "AttentionTestUtil.h"
#include "runtime/AttentionBackward.h"

#include <cmath>
#include <limits>
#include "examples/SeedVariants.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(AttentionCpu, UniformScoresAverageValues) {
  // q = 0 makes every score 0: the output is the mean of V over the kept positions.
  Tensor q = Tensor::zeros(DType::F32, {1, 1, 3, 4}, Device::cpu());
  Tensor k = randomTensor(DType::F32, {1, 1, 5, 4}, Device::cpu(), 1);
  Tensor v = randomTensor(DType::F32, {1, 1, 5, 2}, Device::cpu(), 2);
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  BlockMask m = createBlockMask(causal, 1, 1, 3, 5, Device::cpu(), 16, 16);
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &m);
  std::vector<float> vv = v.toVector<float>(), o = r.out.toVector<float>(), lse = r.lse.toVector<float>();
  for (int i = 0; i < 3; ++i) {
    for (int d = 0; d < 2; ++d) {
      double mean = 0;
      for (int j = 0; j <= i; ++j) mean += vv[j * 2 + d] / (i + 1);
      EXPECT_NEAR(o[i * 2 + d], mean, 1e-6);
    }
    EXPECT_NEAR(lse[i], std::log(double(i + 1)), 1e-6);
  }
}

TEST(AttentionCpu, FullyMaskedRowsGiveZeroAndMinusInfinity) {
  MaskMod late("late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 5) & (kv <= q); });
  Tensor q = randomTensor(DType::BF16, {1, 2, 9, 8}, Device::cpu(), 3);
  Tensor k = randomTensor(DType::BF16, {1, 2, 9, 8}, Device::cpu(), 4);
  Tensor v = randomTensor(DType::BF16, {1, 2, 9, 8}, Device::cpu(), 5);
  BlockMask m = createBlockMask(late, 1, 2, 9, 9, Device::cpu(), 16, 16);
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &m);
  std::vector<double> o = asDoubles(r.out), lse = asDoubles(r.lse);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 9; ++i) {
      EXPECT_EQ(std::isinf(lse[h * 9 + i]) && lse[h * 9 + i] < 0, i < 5) << i;
      for (int d = 0; d < 8; ++d) {
        double x = o[(h * 9 + i) * 8 + d];
        EXPECT_FALSE(std::isnan(x));
        if (i < 5) EXPECT_EQ(x, 0.0);
      }
    }
}

TEST(AttentionCpu, NaNPropagatesLikeTorch) {
  // A NaN in q (row 4) and a score_mod returning NaN (row 6) turn those rows into NaN (O, LSE and their dq);
  // they are not mistaken for fully masked rows (O = 0, LSE = -inf: rows 0 and 1 here), and the other rows
  // are untouched. (Not where(q == 6, s * NAN, s): by the chain rule, as in torch and the kernels, the branch
  // where() does not take gets a zero adjoint, and 0 * NaN makes every row's gradient NaN.)
  ScoreMod nanRow("nan_row6", [](Expr s, Expr, Expr, Expr q, Expr) { return s * where(q == 6, NAN, 1.0f); });
  MaskMod late("late", [](Expr, Expr, Expr q, Expr kv) { return (q >= 2) & (kv <= q); });
  Tensor q = randomTensor(DType::F32, {1, 1, 9, 8}, Device::cpu(), 3);
  writeFloat(q.data(), DType::F32, 4 * 8 + 1, std::numeric_limits<double>::quiet_NaN());
  Tensor k = randomTensor(DType::F32, {1, 1, 9, 8}, Device::cpu(), 4);
  Tensor v = randomTensor(DType::F32, {1, 1, 9, 8}, Device::cpu(), 5);
  Tensor dout = randomTensor(DType::F32, {1, 1, 9, 8}, Device::cpu(), 6);
  BlockMask m = createBlockMask(late, 1, 1, 9, 9, Device::cpu(), 16, 16);
  AttentionResult r = flex_attention(q.view(), k.view(), v.view(), nanRow, &m);
  AttentionGradients g = flex_attention_backward(q.view(), k.view(), v.view(), r.out.view(), r.lse.view(), dout.view(),
                                                 nanRow, &m);
  std::vector<double> o = asDoubles(r.out), lse = asDoubles(r.lse), dq = asDoubles(g.dq);
  for (int i = 0; i < 9; ++i) {
    const bool nan = i == 4 || i == 6;
    EXPECT_EQ(std::isnan(lse[i]), nan) << i;
    if (i < 2) {
      EXPECT_EQ(lse[i], -INFINITY) << i;
    }
    for (int d = 0; d < 8; ++d) {
      EXPECT_EQ(std::isnan(o[i * 8 + d]), nan) << i << "," << d;
      EXPECT_EQ(std::isnan(dq[i * 8 + d]), nan) << i << "," << d;
      if (i < 2) {
        EXPECT_EQ(o[i * 8 + d], 0.0);
      }
    }
  }
}

TEST(AttentionCpu, ScoreModMaskingEqualsMaskMod) {
  // where(q >= kv, score, -inf) as a score_mod gives the same result as the causal mask_mod.
  ScoreMod causalScore("causal_score", [](Expr s, Expr, Expr, Expr q, Expr kv) { return where(q >= kv, s, -INFINITY); });
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  Tensor q = randomTensor(DType::F32, {2, 4, 33, 16}, Device::cpu(), 6);
  Tensor k = randomTensor(DType::F32, {2, 2, 33, 16}, Device::cpu(), 7);  // GQA: 4 query heads per 2 kv heads
  Tensor v = randomTensor(DType::F32, {2, 2, 33, 16}, Device::cpu(), 8);
  BlockMask m = createBlockMask(causal, 2, 4, 33, 33, Device::cpu(), 16, 16);
  AttentionResult a = flex_attention(q.view(), k.view(), v.view(), causalScore, nullptr);
  AttentionResult b = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &m);
  EXPECT_LT(maxError(asDoubles(a.out), asDoubles(b.out)), 1e-6);
  EXPECT_LT(maxError(asDoubles(a.lse), asDoubles(b.lse)), 1e-5);
}

TEST(AttentionCpu, InputErrorsSayWhatToDo) {
  Tensor q = randomTensor(DType::BF16, {1, 4, 8, 16}, Device::cpu(), 1);
  Tensor k = randomTensor(DType::BF16, {1, 3, 8, 16}, Device::cpu(), 2);
  Tensor k16 = randomTensor(DType::F16, {1, 2, 8, 16}, Device::cpu(), 2);
  Tensor k2 = randomTensor(DType::BF16, {1, 2, 8, 16}, Device::cpu(), 2);
  Tensor kd = randomTensor(DType::BF16, {1, 2, 8, 32}, Device::cpu(), 2);
  Tensor i32 = Tensor::zeros(DType::I32, {1, 4, 8, 16}, Device::cpu());
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k.view(), k.view()); }).find("multiple of key/value heads"), std::string::npos);
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k16.view(), k16.view()); }).find("one dtype"), std::string::npos);
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), kd.view(), kd.view()); }).find("head dims differ"), std::string::npos);
  EXPECT_NE(errorOf([&] { flex_attention(i32.view(), i32.view(), i32.view()); }).find("int32 inputs are not supported"), std::string::npos);
  TensorView strided = q.view();
  strided.strides[3] = 2;
  EXPECT_NE(errorOf([&] { flex_attention(strided, k2.view(), k2.view()); }).find("contiguous in its last"), std::string::npos);
  TensorView flat = q.view();
  flat.shape = {4, 8, 16};
  flat.strides = {128, 16, 1};
  EXPECT_NE(errorOf([&] { flex_attention(flat, k2.view(), k2.view()); }).find("must be 4-D"), std::string::npos);
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  BlockMask wrong = createBlockMask(causal, 1, 1, 16, 16);
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k2.view(), k2.view(), ScoreMod::noop(), &wrong); }).find("was made for Q_LEN=16"),
            std::string::npos);
  AttentionOptions neg;
  neg.scale = -1.0f;
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k2.view(), k2.view(), ScoreMod::noop(), nullptr, neg); }).find("scale must be positive"),
            std::string::npos);
  CapturedTensor unbound("bias", DType::F32, 1);
  ScoreMod usesBias("uses_bias", [&](Expr s, Expr, Expr h, Expr, Expr) { return s + unbound[h]; });
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k2.view(), k2.view(), usesBias); }).find("not bound to data"), std::string::npos);
}
