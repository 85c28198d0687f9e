// flex_attention on the CPU (the float64 reference path) and its input validation.
#include <gtest/gtest.h>

#include "AttentionTestUtil.h"
#include "codegen/Variant.h"
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
        if (i < 5) {
          EXPECT_EQ(x, 0.0);
        }
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
  AttentionOptions nan;
  nan.scale = std::nanf("");
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k2.view(), k2.view(), ScoreMod::noop(), nullptr, nan); }).find("scale must be finite"),
            std::string::npos);
  CapturedTensor unbound("bias", DType::F32, 1);
  ScoreMod usesBias("uses_bias", [&](Expr s, Expr, Expr h, Expr, Expr) { return s + unbound[h]; });
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), k2.view(), k2.view(), usesBias); }).find("not bound to data"), std::string::npos);
}

// An empty captured tensor (torch gives it no data pointer) is a tensor every read falls outside: 0.
TEST(AttentionCpu, EmptyCapturedTensorReadsZero) {
  Tensor q = randomTensor(DType::F32, {1, 2, 19, 16}, Device::cpu(), 1);
  CapturedTensor empty("empty", TensorView(nullptr, DType::F32, Device::cpu(), {0}, {1}));
  ScoreMod biased("biased", [&](Expr s, Expr, Expr, Expr q, Expr) { return s + empty[q] * 5.0f; });
  MaskMod emptyMask("empty_mask", [&](Expr, Expr, Expr q, Expr kv) { return (q >= kv) | (empty[kv] != 0.0f); });
  BlockMask mask = createBlockMask(emptyMask, 1, 2, 19, 19, Device::cpu(), 16, 16);
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  BlockMask causalMask = createBlockMask(causal, 1, 2, 19, 19, Device::cpu(), 16, 16);
  AttentionResult got = flex_attention(q.view(), q.view(), q.view(), biased, &mask);
  AttentionResult want = flex_attention(q.view(), q.view(), q.view(), ScoreMod::noop(), &causalMask);
  EXPECT_EQ(maxError(asDoubles(got.out), asDoubles(want.out)), 0.0);
  EXPECT_EQ(maxError(asDoubles(got.lse), asDoubles(want.lse)), 0.0);
}

// An error inside a worker thread of the CPU reference reaches the caller (escaping the thread would abort).
TEST(AttentionCpu, ErrorsInReferenceWorkersReachTheCaller) {
  Tensor q = randomTensor(DType::F32, {2, 2, 33, 16}, Device::cpu(), 1);
  CapturedTensor noData("no_data", TensorView(nullptr, DType::F32, Device::cpu(), {4}, {1}));
  ScoreMod reads("reads", [&](Expr s, Expr, Expr h, Expr, Expr) { return s + noData[h]; });
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), q.view(), q.view(), reads); }).find("'no_data' has no CPU data"),
            std::string::npos);
}

// int64 values are used as int32 inside a mod: one that does not fit is an error, not a wrapped value.
TEST(AttentionCpu, Int64ValuesOutsideInt32AreRefused) {
  Tensor q = randomTensor(DType::F32, {1, 1, 9, 16}, Device::cpu(), 1);
  std::vector<int64_t> ids = {0, 0, 1, 1, 2, 2, 3, 3, int64_t(1) << 32};
  Tensor idTensor = Tensor::fromVector(ids, DType::I64, {9}, Device::cpu());
  CapturedTensor doc("doc", idTensor.view());
  MaskMod document("document", [&](Expr, Expr, Expr q, Expr kv) { return doc[q] == doc[kv]; });
  ScoreMod byDoc("by_doc", [&](Expr s, Expr, Expr, Expr q, Expr) { return s + toFloat(doc[q]); });
  const char* expected = "captured tensor 'doc' (int64[9] on cpu) holds 4294967296 at [8]; a mod computes integers in int32";
  EXPECT_NE(errorOf([&] { createBlockMask(document, 1, 1, 9, 9); }).find(expected), std::string::npos);
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), q.view(), q.view(), byDoc); }).find(expected), std::string::npos);
  ids.back() = INT32_MAX;
  Tensor fits = Tensor::fromVector(ids, DType::I64, {9}, Device::cpu());
  doc.bind(fits.view());
  EXPECT_NO_THROW(createBlockMask(document, 1, 1, 9, 9));
}

// torch accepts a zero or negative scale, and so does flexjit. On the GPU such a call runs the score_mod
// path (scoreModForScale: the mod plus a captured zero), because the kernels fold only a positive scale
// into their exp2 factor; the rewrite changes no value and keeps the captures' order.
TEST(AttentionCpu, ZeroAndNegativeScales) {
  Tensor q = randomTensor(DType::F32, {1, 2, 19, 16}, Device::cpu(), 1);
  Tensor biasData = randomTensor(DType::F32, {2, 19}, Device::cpu(), 2);
  Tensor gateData = randomTensor(DType::F32, {19}, Device::cpu(), 3);
  CapturedTensor bias("bias", biasData.view(), true), gate("gate", gateData.view(), true);
  ScoreMod biased("biased", [&](Expr s, Expr, Expr h, Expr q, Expr kv) { return s + bias[h][kv] * gate[q]; });
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  Variant noopFacts = generateVariant(ScoreMod::noop(), causal);
  ASSERT_TRUE(noopFacts.facts.scoreIsNoop);
  for (float scale : {0.0f, -0.7f}) {
    ScoreMod guarded = scoreModForScale(ScoreMod::noop(), scale);
    EXPECT_FALSE(generateVariant(guarded, causal).facts.scoreIsNoop) << scale;
    ScoreMod rewritten = scoreModForScale(biased, scale);
    ASSERT_EQ(rewritten.tensors().size(), 2u);
    EXPECT_EQ(rewritten.tensors()[0], biased.tensors()[0]);
    EXPECT_EQ(rewritten.tensors()[1], biased.tensors()[1]);
    AttentionOptions options;
    options.scale = scale;
    AttentionResult want = flex_attention(q.view(), q.view(), q.view(), biased, nullptr, options);
    AttentionResult got = flex_attention(q.view(), q.view(), q.view(), rewritten, nullptr, options);
    EXPECT_EQ(maxError(asDoubles(got.out), asDoubles(want.out)), 0.0) << scale;
    EXPECT_EQ(maxError(asDoubles(got.lse), asDoubles(want.lse)), 0.0) << scale;
  }
  EXPECT_EQ(scoreModForScale(biased, 0.25f).key(), biased.key());  // positive scales run the mod as it is
}

// A block mask made for B=1 / H=1 is broadcast; that is only right when its mask_mod ignores b / h.
TEST(AttentionCpu, BroadcastBlockMaskMustNotReadBatchOrHead) {
  Tensor q = randomTensor(DType::F32, {2, 3, 40, 16}, Device::cpu(), 1);
  MaskMod byBatch("by_batch", [](Expr b, Expr, Expr q, Expr kv) { return (q >= kv) | (b == 1); });
  MaskMod byHead("by_head", [](Expr, Expr h, Expr q, Expr kv) { return q - kv <= h * 8; });
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  BlockMask batchOne = createBlockMask(byBatch, 1, 3, 40, 40, Device::cpu(), 16, 16);
  BlockMask headOne = createBlockMask(byHead, 2, 1, 40, 40, Device::cpu(), 16, 16);
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), q.view(), q.view(), ScoreMod::noop(), &batchOne); })
                .find("made for B=1 but the query has B=2, and its mask_mod 'by_batch' reads b"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { flex_attention(q.view(), q.view(), q.view(), ScoreMod::noop(), &headOne); })
                .find("made for H=1 but the query has H=3, and its mask_mod 'by_head' reads h"),
            std::string::npos);
  // Masks that ignore b and h broadcast as before, and masks made for the query's sizes are fine.
  BlockMask causalOne = createBlockMask(causal, 1, 1, 40, 40, Device::cpu(), 16, 16);
  BlockMask batchTwo = createBlockMask(byBatch, 2, 3, 40, 40, Device::cpu(), 16, 16);
  EXPECT_NO_THROW(flex_attention(q.view(), q.view(), q.view(), ScoreMod::noop(), &causalOne));
  EXPECT_NO_THROW(flex_attention(q.view(), q.view(), q.view(), ScoreMod::noop(), &batchTwo));
}

// fillWords (what an empty GPU problem writes instead of launching kernels) on host memory.
TEST(AttentionCpu, FillWordsSetsContiguousViewsAndRefusesStridedOnes) {
  Tensor lse = Tensor::fromVector(std::vector<float>(6, 1.0f), DType::F32, {2, 3}, Device::cpu());
  fillWords(lse.view(), 0xff800000u, nullptr, "lse");
  for (float x : lse.toVector<float>()) EXPECT_EQ(x, -INFINITY);
  Tensor out = randomTensor(DType::BF16, {1, 1, 3, 5}, Device::cpu(), 7);  // 30 bytes: not whole words
  fillWords(out.view(), 0, nullptr, "out");
  for (double x : asDoubles(out)) EXPECT_EQ(x, 0.0);
  EXPECT_THROW(fillWords(out.view(), 1, nullptr, "out"), Error);
  TensorView strided = lse.view();
  strided.shape = {2, 2};
  EXPECT_NE(errorOf([&] { fillWords(strided, 0, nullptr, "lse"); }).find("lse must be contiguous here"),
            std::string::npos);
}
