// Inference layouts of K and V (AttentionOptions::paged, kvLengths): on the CPU a paged cache gives exactly
// the contiguous result, per-sequence lengths exactly the result of the equivalent mask_mod, and every bad
// input is an error that names it; the planner sends them to the decode family and says when it cannot.
// On a GPU (skipped here) the decode family's paged and length paths against the same CPU results.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>

#include "AttentionTestUtil.h"
#include "dsl/Error.h"
#include "runtime/AttentionBackward.h"
#include "runtime/Planner.h"
#include "runtime_test_support.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

constexpr int64_t kB = 3, kHq = 4, kHkv = 2, kLq = 3, kD = 16, kPage = 32, kPages = 5;  // 160 logical keys

/// A pool of pages holding the contiguous k [B, Hkv, L, D] in a shuffled order, with its page table.
struct Paged {
  Tensor pool, table;
};

Paged toPages(const Tensor& contiguous, uint32_t seed, int spare = 3) {
  const auto& sh = contiguous.shape();
  const int64_t B = sh[0], H = sh[1], L = sh[2], D = sh[3], pages = L / kPage, total = B * pages + spare;
  std::vector<int32_t> ids(static_cast<size_t>(total));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  Tensor pool = randomTensor(contiguous.dtype(), {1, H, total * kPage, D}, Device::cpu(), seed + 1);  // spare pages: noise
  std::vector<int32_t> table(static_cast<size_t>(B * pages));
  const size_t elem = static_cast<size_t>(dtypeSize(contiguous.dtype()));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < pages; ++j) {
      const int32_t page = ids[static_cast<size_t>(b * pages + j)];
      table[static_cast<size_t>(b * pages + j)] = page;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t r = 0; r < kPage; ++r)
          std::memcpy(static_cast<char*>(pool.data()) + elem * static_cast<size_t>((h * total * kPage + page * kPage + r) * D),
                      static_cast<const char*>(contiguous.data()) +
                          elem * static_cast<size_t>(((b * H + h) * L + j * kPage + r) * D),
                      elem * static_cast<size_t>(D));
    }
  return {pool, Tensor::fromVector(table, DType::I32, {B, pages}, Device::cpu())};
}

void expectSame(const AttentionResult& a, const AttentionResult& b, const std::string& what) {
  EXPECT_EQ(asDoubles(a.out), asDoubles(b.out)) << what;
  EXPECT_EQ(asDoubles(a.lse), asDoubles(b.lse)) << what;
}

MaskMod slidingWindow() {
  return MaskMod("window_end", [](Expr, Expr, Expr q, Expr kv) { return (kv <= q + Expr(157)) & (q + Expr(157) - kv < 90); });
}

ScoreMod alibi() {
  return ScoreMod("alibi", [](Expr s, Expr, Expr h, Expr q, Expr kv) { return s - toFloat(h + 1) * 0.01f * toFloat(q - kv); });
}

}  // namespace

TEST(PagedKV, APagedCacheGivesTheContiguousResult) {
  const int64_t L = kPage * kPages;
  Tensor q = randomTensor(DType::F32, {kB, kHq, kLq, kD}, Device::cpu(), 1);
  Tensor k = randomTensor(DType::F32, {kB, kHkv, L, kD}, Device::cpu(), 2);
  Tensor v = randomTensor(DType::F32, {kB, kHkv, L, kD}, Device::cpu(), 3);
  Paged pk = toPages(k, 10), pv = toPages(v, 10);  // one shuffle: the same table for K and V
  ASSERT_EQ(asDoubles(pk.table), asDoubles(pv.table));
  BlockMask mask = createBlockMask(slidingWindow(), 1, 1, kLq, L, Device::cpu(), 128, kPage);
  AttentionOptions paged;
  paged.paged = PagedKV{pk.table.view(), kPage};
  for (bool withMods : {false, true}) {
    const ScoreMod score = withMods ? alibi() : ScoreMod::noop();
    const BlockMask* bm = withMods ? &mask : nullptr;
    AttentionResult want = flex_attention(q.view(), k.view(), v.view(), score, bm);
    AttentionResult got = flex_attention(q.view(), pk.pool.view(), pv.pool.view(), score, bm, paged);
    expectSame(got, want, withMods ? "alibi + window" : "no mods");
  }
}

TEST(PagedKV, KvLengthsAreTheEquivalentMask) {
  const int64_t L = 150;
  Tensor q = randomTensor(DType::F32, {kB, kHq, kLq, kD}, Device::cpu(), 4);
  Tensor k = randomTensor(DType::F32, {kB, kHkv, L, kD}, Device::cpu(), 5);
  Tensor v = randomTensor(DType::F32, {kB, kHkv, L, kD}, Device::cpu(), 6);
  std::vector<int32_t> lengths{150, 0, 77};  // a full sequence, an empty one (O = 0, LSE = -inf), a short one
  Tensor lens = Tensor::fromVector(lengths, DType::I32, {kB}, Device::cpu());
  CapturedTensor len("len", lens.view());
  MaskMod byLength("by_length", [&](Expr b, Expr, Expr, Expr kv) { return kv < len[b]; });
  BlockMask mask = createBlockMask(byLength, kB, 1, kLq, L, Device::cpu());
  AttentionOptions options;
  options.kvLengths = lens.view();
  options.returnMaxScores = true;
  AttentionResult want = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), &mask);
  AttentionResult got = flex_attention(q.view(), k.view(), v.view(), ScoreMod::noop(), nullptr, options);
  expectSame(got, want, "kv_lengths");
  std::vector<double> lse = asDoubles(got.lse);
  for (int64_t h = 0; h < kHq; ++h) EXPECT_EQ(lse[(1 * kHq + h) * kLq], -INFINITY) << "the empty sequence";
}

TEST(PagedKV, BadInputsAreNamed) {
  const int64_t L = kPage * kPages;
  Tensor q = randomTensor(DType::F32, {kB, kHq, kLq, kD}, Device::cpu(), 7);
  Tensor k = randomTensor(DType::F32, {kB, kHkv, L, kD}, Device::cpu(), 8);
  Paged pk = toPages(k, 11);
  auto expectError = [&](const TensorView& kk, const AttentionOptions& o, const std::string& says) {
    try {
      flex_attention(q.view(), kk, kk, ScoreMod::noop(), nullptr, o);
      ADD_FAILURE() << "accepted: " << says;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  std::vector<int32_t> table = pk.table.toVector<int32_t>();
  table[4] = 999;
  Tensor badTable = Tensor::fromVector(table, DType::I32, {kB, kPages}, Device::cpu());
  AttentionOptions o;
  o.paged = PagedKV{badTable.view(), kPage};
  expectError(pk.pool.view(), o, "page_table[0][4] = 999 is not a page of the cache");
  o.paged = PagedKV{pk.table.view(), 0};
  expectError(pk.pool.view(), o, "page size must be a positive int32");
  o.paged = PagedKV{pk.table.view(), kPage};
  expectError(k.view(), o, "a paged key / value cache is [1, Hkv, pages * page_size, D]");
  Tensor odd = randomTensor(DType::F32, {1, kHkv, 100, kD}, Device::cpu(), 9);
  expectError(odd.view(), o, "not a whole number of pages of 32");
  Tensor i64 = Tensor::zeros(DType::I64, {kB, kPages}, Device::cpu());
  o.paged = PagedKV{i64.view(), kPage};
  expectError(pk.pool.view(), o, "page_table must be int32[B=3, pages per sequence]");
  AttentionOptions l;
  Tensor lens = Tensor::fromVector(std::vector<int32_t>{1, 2, 161}, DType::I32, {kB}, Device::cpu());
  l.kvLengths = lens.view();
  expectError(k.view(), l, "kv_lengths[2] = 161 is outside [0, KV_LEN = 160]");
  Tensor shortLens = Tensor::fromVector(std::vector<int32_t>{1, 2}, DType::I32, {2}, Device::cpu());
  l.kvLengths = shortLens.view();
  expectError(k.view(), l, "kv_lengths must be int32[3]");
  // Forward only.
  BackwardOptions b;
  b.kvLengths = lens.view();
  AttentionResult r = flex_attention(q.view(), k.view(), k.view());
  try {
    flex_attention_backward(q.view(), k.view(), k.view(), r.out.view(), r.lse.view(), r.out.view(), ScoreMod::noop(),
                            nullptr, b);
    ADD_FAILURE() << "a backward with kv_lengths was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inference features"), std::string::npos) << e.what();
  }
}

TEST(PagedKV, ThePlannerSendsThemToTheDecodeFamily) {
  ForwardProblem p;
  p.archMajor = 9;
  p.batch = 2, p.headsQ = 8, p.headsKV = 2, p.lenQ = 1, p.lenKV = 4096, p.pageSize = 128;
  EXPECT_EQ(planForward(p).config.family, KernelFamily::Decode);  // without decode=1
  p.pageSize = 0;
  p.kvLengths = true;
  EXPECT_EQ(planForward(p).config.family, KernelFamily::Decode);
  struct Case {
    int pageSize, lenQ;
    const char* env;
    const char* says;
  };
  for (const Case& c : {Case{16, 1, "", "page size 16 is not a multiple of the decode tiles' 32 keys"},
                        Case{128, 100, "", "cannot run this problem: Q_LEN = 100"},
                        Case{128, 1, "decode=0", "FLEXJIT_FWD_CONFIG rules out"},
                        Case{32, 1, "decode=1,blockN=64", "blockN=64 does not divide the page size 32"}}) {
    flexjit::testing::ScopedEnv env("FLEXJIT_FWD_CONFIG", std::string(c.env));
    p.pageSize = c.pageSize, p.lenQ = c.lenQ;
    try {
      planForward(p);
      ADD_FAILURE() << c.says << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
    }
  }
}

TEST(PagedKVGpu, TheDecodeFamilyMatchesTheCpuResults) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const Device gpu = Device::cuda(0);
  const int64_t L = kPage * kPages;
  for (DType dtype : {DType::BF16, DType::F16}) {
    Tensor q = randomTensor(dtype, {kB, kHq, kLq, 64}, Device::cpu(), 21);
    Tensor k = randomTensor(dtype, {kB, kHkv, L, 64}, Device::cpu(), 22);
    Tensor v = randomTensor(dtype, {kB, kHkv, L, 64}, Device::cpu(), 23);
    Paged pk = toPages(k, 30), pv = toPages(v, 30);
    Tensor lens = Tensor::fromVector(std::vector<int32_t>{160, 0, 45}, DType::I32, {kB}, Device::cpu());
    Tensor qg = q.to(gpu), pkg = pk.pool.to(gpu), pvg = pv.pool.to(gpu), tg = pk.table.to(gpu), lg = lens.to(gpu);
    BlockMask cpuMask = createBlockMask(slidingWindow(), 1, 1, kLq, L, Device::cpu(), 128, kPage);
    BlockMask gpuMask = createBlockMask(slidingWindow(), 1, 1, kLq, L, gpu, 128, kPage);
    AttentionOptions cpuOpt, gpuOpt;
    cpuOpt.paged = PagedKV{pk.table.view(), kPage};
    cpuOpt.kvLengths = lens.view();
    gpuOpt.paged = PagedKV{tg.view(), kPage};
    gpuOpt.kvLengths = lg.view();
    for (bool withMask : {false, true}) {
      AttentionResult want = flex_attention(q.view(), pk.pool.view(), pv.pool.view(), alibi(),
                                            withMask ? &cpuMask : nullptr, cpuOpt);
      AttentionResult got = flex_attention(qg.view(), pkg.view(), pvg.view(), alibi(), withMask ? &gpuMask : nullptr, gpuOpt);
      const std::string what = fmt::format("{} {}", dtypeName(dtype), withMask ? "window" : "no mask");
      EXPECT_LT(maxError(asDoubles(got.out), asDoubles(want.out)), 2e-2) << what;
      std::vector<double> gl = asDoubles(got.lse), wl = asDoubles(want.lse);
      for (size_t i = 0; i < gl.size(); ++i)
        EXPECT_TRUE(gl[i] == wl[i] || std::fabs(gl[i] - wl[i]) < 2e-3 * std::max(1.0, std::fabs(wl[i]))) << what << " " << i;
    }
    // A page id outside the pool: the rows that read it come out NaN, the others stay right.
    std::vector<int32_t> table = pk.table.toVector<int32_t>();
    table[2 * kPages + 0] = -5;  // sequence 2's first page
    Tensor bad = Tensor::fromVector(table, DType::I32, {kB, kPages}, gpu);
    gpuOpt.paged = PagedKV{bad.view(), kPage};
    AttentionResult poisoned = flex_attention(qg.view(), pkg.view(), pvg.view(), ScoreMod::noop(), nullptr, gpuOpt);
    std::vector<double> lse = asDoubles(poisoned.lse);
    for (int64_t b = 0; b < kB; ++b)
      for (int64_t r = 0; r < kHq * kLq; ++r)
        EXPECT_EQ(std::isnan(lse[b * kHq * kLq + r]), b == 2) << "b" << b << " row " << r;
  }
}
