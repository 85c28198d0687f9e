// The code flexjit emits, compiled for the host, against the interpreter (the meaning of every op):
// values bit for bit, gradients against finite differences, interval forms never wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "HostCompile.h"
#include "RandomExpr.h"
#include "codegen/Variant.h"
#include "dsl/Interpreter.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

constexpr int kTensorLen = 64;
constexpr uint32_t kSeed = 20261123;

/// Test captures: a float tensor (optionally requiring a gradient) and an int tensor, both rank 1.
struct TestTensors {
  std::vector<float> f;
  std::vector<int32_t> i;
  CapturedTensor ft, it;
  explicit TestTensors(bool requiresGrad)
      : f(kTensorLen), i(kTensorLen), ft("ft", DType::F32, 1, requiresGrad), it("it", DType::I32, 1) {
    std::mt19937 g(kSeed);
    for (auto& x : f) x = std::uniform_real_distribution<float>(-1, 1)(g);
    for (auto& x : i) x = std::uniform_int_distribution<int>(-10, 10)(g);
    ft.bind(TensorView(f.data(), DType::F32, Device::cpu(), {kTensorLen}));
    it.bind(TensorView(i.data(), DType::I32, Device::cpu(), {kTensorLen}));
  }
  RandomExprOptions options(bool smooth) {
    RandomExprOptions o;
    o.smooth = smooth;
    o.floatTensor = &ft;
    o.intTensor = &it;
    o.tensorLength = kTensorLen;
    return o;
  }
};

bool sameFloat(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0 || (a == b && a == 0.0f);
}

/// One small mod per DSL op (both int and float forms where they differ).
std::vector<ScoreMod> perOpMods() {
  std::vector<ScoreMod> mods;
  auto add = [&](const char* name, ScoreMod::Fn fn) { mods.emplace_back(name, fn); };
  add("add", [](Expr s, Expr b, Expr h, Expr q, Expr kv) { return s + toFloat(q + kv); });
  add("sub", [](Expr s, Expr, Expr, Expr q, Expr kv) { return s - toFloat(q - kv); });
  add("mul", [](Expr s, Expr, Expr, Expr q, Expr kv) { return s * toFloat(q * kv); });
  add("div", [](Expr s, Expr, Expr, Expr q, Expr kv) { return s / toFloat(q - kv) + q / (kv + 1); });
  add("floordiv", [](Expr s, Expr, Expr, Expr q, Expr kv) { return floordiv(s, 0.75f) + toFloat(floordiv(q - 20, kv - 3)); });
  add("mod", [](Expr s, Expr, Expr, Expr q, Expr kv) { return s % -0.75f + toFloat((q - 20) % (kv - 3)); });
  add("minmax", [](Expr s, Expr, Expr, Expr q, Expr kv) { return minimum(s, 0.5f) + maximum(s, -0.5f) + toFloat(minimum(q, kv) - maximum(q, kv)); });
  add("neg_abs", [](Expr s, Expr, Expr, Expr q, Expr kv) { return -abs(s) + toFloat(abs(q - kv) - (-q)); });
  add("exp", [](Expr s, Expr, Expr, Expr, Expr) { return exp(s) + exp2(s); });
  add("log", [](Expr s, Expr, Expr, Expr, Expr) { return log(s) + log2(s); });
  add("sqrt", [](Expr s, Expr, Expr, Expr, Expr) { return sqrt(s) + rsqrt(s); });
  add("tanh", [](Expr s, Expr, Expr, Expr, Expr) { return tanh(s) + sigmoid(s); });
  add("floor", [](Expr s, Expr, Expr, Expr, Expr) { return floor(s) + ceil(s); });
  add("round", [](Expr s, Expr, Expr, Expr, Expr) { return round(s * 2.5f) + trunc(s * 1.5f); });
  add("trig", [](Expr s, Expr, Expr, Expr, Expr) { return sin(s * 3.0f) + cos(s) + tan(s) + atan(s * 7.0f); });
  add("erf_log1p", [](Expr s, Expr, Expr, Expr, Expr) { return erf(s) + log1p(s) + expm1(s); });
  add("pow", [](Expr s, Expr, Expr, Expr q, Expr kv) { return pow(s, 1.5f) + pow(abs(s), s) + pow(-2.0f, toFloat(q % 5)); });
  add("fmod", [](Expr s, Expr, Expr, Expr q, Expr kv) { return fmod(s, -0.75f) + toFloat(fmod(q - 20, kv - 3)); });
  add("shifts", [](Expr s, Expr, Expr, Expr q, Expr kv) { return toFloat((q << (kv - 40)) + ((q - 150) >> (kv % 40))); });
  add("casts", [](Expr s, Expr, Expr, Expr q, Expr kv) { return toFloat(toInt(s * 1e9f)) + toFloat(toBool(q - kv)) + toFloat(q > kv); });
  add("compare", [](Expr s, Expr, Expr, Expr q, Expr kv) {
    return where((s == 0.5f) | (s != s) | (s < 0.0f) | (s <= 1.0f) | (s > 2.0f) | (s >= 3.0f), s, -s) +
           toFloat((q == kv) + (q != kv) + (q < kv) + (q <= kv) + (q > kv) + (q >= kv));
  });
  add("logic", [](Expr s, Expr, Expr, Expr q, Expr kv) {
    Expr a = q > 5, c = kv > 5;
    return where((a & c) | (a ^ c) | ~a | !(c), s, 0.0f) + toFloat((q & kv) | (q ^ kv) | ~q);
  });
  add("where", [](Expr s, Expr b, Expr h, Expr q, Expr kv) { return where(q >= kv, s, -INFINITY) + toFloat(where(b > h, q, kv)); });
  add("wrap", [](Expr s, Expr, Expr, Expr q, Expr kv) { return toFloat(q * 2147483 + kv * 1000003 - 2147483647); });
  add("consts", [](Expr s, Expr, Expr, Expr, Expr) { return s * 1e-30f + NAN * 0.0f + INFINITY - INFINITY + 3.0f; });
  return mods;
}

}  // namespace

TEST(CodegenHost, EveryOpMatchesTheInterpreterBitForBit) {
  TestTensors tt(false);
  RandomExprGen gen(kSeed, tt.options(false));
  std::vector<ScoreMod> mods = perOpMods();
  for (int i = 0; i < 300; ++i) mods.push_back(ScoreMod::fromBody(fmt::format("random{}", i), gen.floatExpr()));
  RandomExprOptions maskOptions = tt.options(false);
  maskOptions.allowScore = false;
  RandomExprGen maskGen(kSeed + 3, maskOptions);
  std::vector<MaskMod> masks;
  for (int i = 0; i < 200; ++i) masks.push_back(MaskMod::fromBody(fmt::format("rmask{}", i), maskGen.boolExpr()));

  std::vector<Variant> variants;
  for (size_t k = 0; k < std::max(mods.size(), masks.size()); ++k)
    variants.push_back(generateVariant(mods[k % mods.size()], masks[k % masks.size()], {false}));
  HostLibrary lib(variants, "ops");
  ASSERT_TRUE(lib.ok());

  const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 3.0f, 1e-3f, -7.25f, 40.0f, INFINITY, -INFINITY, NAN};
  int checked = 0;
  for (size_t k = 0; k < variants.size(); ++k) {
    Program ps(mods[k % mods.size()]), pm(masks[k % masks.size()]);
    ps.bindCaptures();
    pm.bindCaptures();
    fj::CaptureArgs cap = hostCaptures(variants[k]);
    auto score = lib.get<ScoreFn>("score", k);
    auto mask = lib.get<MaskFn>("mask", k);
    ASSERT_TRUE(score && mask);
    for (int t = 0; t < 40; ++t) {
      Position p{gen.pick(3), gen.pick(5), gen.pick(300), gen.pick(300)};
      float s = t < 12 ? specials[t] : gen.uniform(-5, 5);
      float want = ps.scoreF32(s, p), got = score(s, p.b, p.h, p.q, p.kv, &cap);
      ASSERT_TRUE(sameFloat(want, got)) << mods[k % mods.size()].canonicalForm() << "score=" << s << " q=" << p.q
                                        << " kv=" << p.kv << ": interpreter " << want << ", generated " << got;
      ASSERT_EQ(pm.mask(p), mask(p.b, p.h, p.q, p.kv, &cap)) << masks[k % masks.size()].canonicalForm();
      ++checked;
    }
  }
  EXPECT_GT(checked, 10000);
}

TEST(CodegenHost, RowColumnSplitsComputeTheSameMod) {
  // Random mods whose parts depend on the row or the column alone (tensor reads at q or kv, integer
  // arithmetic on one index) get split (SplitEmitter.h); reassembled, each split must equal the unsplit mod
  // bit for bit at random positions, and enough of them must be split for the check to mean something.
  TestTensors tt(false);
  RandomExprGen gen(kSeed + 11, tt.options(false));
  RandomExprOptions maskOptions = tt.options(false);
  maskOptions.allowScore = false;
  RandomExprGen maskGen(kSeed + 13, maskOptions);
  std::vector<ScoreMod> mods = perOpMods();
  std::vector<MaskMod> masks;
  for (int i = 0; i < 300; ++i) mods.push_back(ScoreMod::fromBody(fmt::format("srandom{}", i), gen.floatExpr()));
  for (int i = 0; i < 300; ++i) masks.push_back(MaskMod::fromBody(fmt::format("smask{}", i), maskGen.boolExpr()));
  std::vector<Variant> variants;
  for (size_t k = 0; k < mods.size(); ++k) variants.push_back(generateVariant(mods[k], masks[k % masks.size()], {false}));
  HostLibrary lib(variants, "split");
  ASSERT_TRUE(lib.ok());
  int splitScores = 0, splitMasks = 0, checked = 0;
  for (size_t k = 0; k < variants.size(); ++k) {
    fj::CaptureArgs cap = hostCaptures(variants[k]);
    auto score = lib.get<ScoreFn>("score", k), scoreSplit = lib.get<ScoreFn>("score_split", k);
    auto mask = lib.get<MaskFn>("mask", k), maskSplit = lib.get<MaskFn>("mask_split", k);
    splitScores += scoreSplit != nullptr;
    splitMasks += maskSplit != nullptr;
    for (int t = 0; t < 40 && (scoreSplit || maskSplit); ++t) {
      const int b = gen.pick(3), h = gen.pick(5), q = gen.pick(300) - 20, kv = gen.pick(300) - 20;
      const float s = gen.uniform(-5, 5);
      if (scoreSplit) {
        ASSERT_TRUE(sameFloat(score(s, b, h, q, kv, &cap), scoreSplit(s, b, h, q, kv, &cap)))
            << mods[k].canonicalForm() << " at q=" << q << " kv=" << kv;
      }
      if (maskSplit) {
        ASSERT_EQ(mask(b, h, q, kv, &cap), maskSplit(b, h, q, kv, &cap))
            << masks[k % masks.size()].canonicalForm() << " at q=" << q << " kv=" << kv;
      }
      ++checked;
    }
  }
  std::printf("[ split ] %d of %zu score_mods and %d masks split, %d positions checked\n", splitScores, mods.size(),
              splitMasks, checked);
  EXPECT_GT(splitScores, 30);
  EXPECT_GT(splitMasks, 30);
}

namespace {

/// Central difference of the float64 interpreter; nullopt where the function is not smooth at x
/// (two step sizes disagree), so kinks of clamp/abs do not produce false failures.
template <class F>
std::optional<double> centralDifference(F&& f, double x) {
  double h = 1e-3 * std::max(1.0, std::fabs(x));
  double d1 = (f(x + h) - f(x - h)) / (2 * h);
  double d2 = (f(x + h / 2) - f(x - h / 2)) / h;
  if (!std::isfinite(d1) || std::fabs(d1 - d2) > 1e-4 * std::max(1.0, std::fabs(d1))) return std::nullopt;
  return d2;
}

bool close(double got, double want) { return std::fabs(got - want) <= 2e-3 * std::max(1.0, std::fabs(want)); }

}  // namespace

TEST(CodegenHost, AutodiffMatchesFiniteDifferences) {
  TestTensors tt(/*requiresGrad=*/true);
  RandomExprGen gen(kSeed + 1, tt.options(true));
  std::vector<ScoreMod> mods;
  for (int i = 0; i < 300; ++i) mods.push_back(ScoreMod::fromBody(fmt::format("smooth{}", i), gen.floatExpr()));
  std::vector<Variant> variants;
  for (const ScoreMod& m : mods) variants.push_back(generateVariant(m, MaskMod::noop()));
  HostLibrary lib(variants, "grad");
  ASSERT_TRUE(lib.ok());

  int checkedScore = 0, checkedTensor = 0;
  for (size_t k = 0; k < mods.size(); ++k) {
    Program p(mods[k]);
    p.bindCaptures();
    fj::CaptureArgs cap = hostCaptures(variants[k]);
    auto grad = lib.get<GradFn>("grad", k);
    ASSERT_TRUE(grad) << "score_mod_grad missing for " << mods[k].canonicalForm();
    int slot = -1;  // the float tensor's capture slot, if the mod reads it
    for (size_t j = 0; j < mods[k].tensors().size(); ++j)
      if (mods[k].tensors()[j] == tt.ft.impl()) slot = static_cast<int>(j);
    bool readsTensor = slot >= 0;
    for (int t = 0; t < 4; ++t) {
      Position pos{gen.pick(2), gen.pick(4), gen.pick(100), gen.pick(100)};
      float s = gen.uniform(-2, 2);
      std::vector<float> gbuf(kTensorLen, 0.0f);
      fj::GradArgs ga{};
      if (readsTensor) {
        ga.grad[slot] = gbuf.data();
        ga.stride[slot][0] = 1;
      }
      float dscore = grad(s, pos.b, pos.h, pos.q, pos.kv, 1.0f, &cap, &ga);
      auto fd = centralDifference([&](double x) { return p.scoreF64(x, pos); }, s);
      ScoreGrad ref = p.scoreGrad(s, pos, 1.0);
      if (fd) {
        ASSERT_TRUE(close(dscore, *fd)) << mods[k].canonicalForm() << "d/dscore: generated " << dscore << ", fd " << *fd;
        ASSERT_TRUE(close(ref.dscore, *fd)) << "interpreter reverse mode " << ref.dscore << ", fd " << *fd;
        ++checkedScore;
      }
      if (!readsTensor) continue;
      for (int e = 0; e < kTensorLen; ++e) {
        float saved = tt.f[e];
        auto fdt = centralDifference([&](double x) {
          tt.f[e] = static_cast<float>(x);
          double v = p.scoreF64(s, pos);
          tt.f[e] = saved;
          return v;
        }, saved);
        if (!fdt) continue;
        ASSERT_TRUE(close(gbuf[e], *fdt)) << mods[k].canonicalForm() << "d/dft[" << e << "]: generated " << gbuf[e]
                                          << ", fd " << *fdt;
        if (*fdt != 0.0) ++checkedTensor;
      }
    }
  }
  EXPECT_GT(checkedScore, 800);
  EXPECT_GT(checkedTensor, 200) << "random expressions should read the gradient tensor often";
}

TEST(CodegenHost, IntervalFormsAreNeverWrong) {
  TestTensors tt(false);
  RandomExprOptions options = tt.options(false);
  options.allowScore = false;
  RandomExprGen gen(kSeed + 2, options);
  std::vector<MaskMod> masks;
  for (int i = 0; i < 300; ++i) masks.push_back(MaskMod::fromBody(fmt::format("imask{}", i), gen.boolExpr()));
  std::vector<Variant> variants;
  for (const MaskMod& m : masks) variants.push_back(generateVariant(ScoreMod::noop(), m, {false}));
  HostLibrary lib(variants, "interval");
  ASSERT_TRUE(lib.ok());

  int decided = 0, boxes = 0;
  for (size_t k = 0; k < masks.size(); ++k) {
    Program p(masks[k]);
    p.bindCaptures();
    fj::CaptureArgs cap = hostCaptures(variants[k]);
    auto interval = lib.get<MaskIntervalFn>("mask_interval", k);
    for (int t = 0; t < 20; ++t) {
      int b0 = gen.pick(2), h0 = gen.pick(4), q0 = gen.pick(200), kv0 = gen.pick(200);
      Box box{fj::ivInt(b0, b0 + gen.pick(2)), fj::ivInt(h0, h0 + gen.pick(3)), fj::ivInt(q0, q0 + gen.pick(8)),
              fj::ivInt(kv0, kv0 + gen.pick(8))};
      bool anyTrue = false, anyFalse = false;
      for (long long b = box.b.lo; b <= box.b.hi; ++b)
        for (long long h = box.h.lo; h <= box.h.hi; ++h)
          for (long long q = box.q.lo; q <= box.q.hi; ++q)
            for (long long kv = box.kv.lo; kv <= box.kv.hi; ++kv)
              (p.mask({int(b), int(h), int(q), int(kv)}) ? anyTrue : anyFalse) = true;
      const long long x[8] = {box.b.lo, box.b.hi, box.h.lo, box.h.hi, box.q.lo, box.q.hi, box.kv.lo, box.kv.hi};
      int out[2];
      interval(x, &cap, out);
      fj::IvBool ref = p.maskInterval(box);
      for (fj::IvBool r : {fj::IvBool{out[0] != 0, out[1] != 0}, ref}) {
        ASSERT_TRUE(!anyTrue || r.canTrue) << masks[k].canonicalForm() << "claimed never true";
        ASSERT_TRUE(!anyFalse || r.canFalse) << masks[k].canonicalForm() << "claimed never false";
      }
      // The two may differ in precision (the generated code runs on simplified IR); both must be sound.
      decided += !(out[0] && out[1]);
      ++boxes;
    }
  }
  EXPECT_GT(decided, boxes / 5) << "the analysis should decide a good share of small boxes";
}

TEST(CodegenHost, GradWindowsContainEveryGradientWrite) {
  // score_mod_grad_windows bounds, per accumulation site, the gradient-buffer offsets the site writes over
  // a box; the dK/dV kernel relies on it (an offset outside its window goes to global memory, but a wrong
  // window with a wrong slot would not). Random gradients (rank-1 tensor, index % 64) and structured ones
  // (ranks 2 and 3, strided gradient buffers, an index read from an int tensor, an index made from the
  // score, a tensor read twice), every position of random boxes.
  TestTensors tt(/*requiresGrad=*/true);
  RandomExprGen gen(kSeed + 3, tt.options(false));
  constexpr int kB = 2, kH = 3, kL = 40;
  std::vector<float> bias(kH * kL), gate(kB * kH * kL);
  CapturedTensor bias2("bias2", TensorView(bias.data(), DType::F32, Device::cpu(), {kH, kL}), true);
  CapturedTensor gate3("gate3", TensorView(gate.data(), DType::F32, Device::cpu(), {kB, kH, kL}), true);
  CapturedTensor ids = tt.it;
  std::vector<ScoreMod> mods;
  for (int i = 0; i < 150; ++i) mods.push_back(ScoreMod::fromBody(fmt::format("gw{}", i), gen.floatExpr()));
  mods.emplace_back("relative", [bias2](Expr s, Expr, Expr h, Expr q, Expr kv) {
    return s + bias2[h][clamp(q - kv, 0, kL - 1)];
  });
  mods.emplace_back("gated", [gate3](Expr s, Expr b, Expr h, Expr q, Expr kv) {
    return s + gate3[b][h][q] - gate3[b][h][kv];
  });
  mods.emplace_back("bucketed", [bias2, ids](Expr s, Expr, Expr h, Expr q, Expr kv) {
    return s + bias2[h % 2][floordiv(q, 8) + ids[kv % kTensorLen] % 4];
  });
  mods.emplace_back("score_index", [bias2](Expr s, Expr, Expr h, Expr, Expr) {
    return s * bias2[h][clamp(toInt(s * 4.0f) + 8, 0, 15)];
  });
  std::vector<Variant> variants;
  for (const ScoreMod& m : mods) variants.push_back(generateVariant(m, MaskMod::noop()));
  HostLibrary lib(variants, "gradwindows");
  ASSERT_TRUE(lib.ok());

  constexpr int kMaxWrites = 64;
  int writes = 0, tight = 0, withSites = 0;
  for (size_t k = 0; k < mods.size(); ++k) {
    const Variant& v = variants[k];
    if (v.gradSites == 0) continue;
    ++withSites;
    auto record = lib.get<GradWritesFn>("grad_writes", k);
    auto windows = lib.get<GradWindowsFn>("grad_windows", k);
    ASSERT_TRUE(record && windows) << mods[k].canonicalForm();
    fj::CaptureArgs cap = hostCaptures(v);
    // Gradient buffers padded like a strided view: every stride 3x the contiguous one, the last one 2.
    fj::GradArgs ga{};
    for (size_t j = 0; j < v.captures.tensors.size(); ++j) {
      const auto& t = v.captures.tensors[j];
      long long contiguous = 1;
      for (int d = t->rank - 1; d >= 0; --d) {
        ga.stride[j][d] = d == t->rank - 1 ? 2 : 3 * contiguous;
        contiguous *= t->view->shape[d];
      }
    }
    for (int t = 0; t < 12; ++t) {
      int b0 = gen.pick(kB), h0 = gen.pick(kH), q0 = gen.pick(70), kv0 = gen.pick(70);
      const long long box[8] = {b0, b0 + gen.pick(2), h0, h0 + gen.pick(2), q0, q0 + gen.pick(12), kv0, kv0 + gen.pick(12)};
      std::vector<fj::IvOffset> offsets(v.gradSites);
      std::vector<int> slots(v.gradSites, -1);
      windows(box, &cap, &ga, offsets.data(), slots.data());
      for (const fj::IvOffset& o : offsets) tight += !fj::ivEmpty(o) && o.hi - o.lo < 64;
      for (long long b = box[0]; b <= box[1]; ++b)
        for (long long h = box[2]; h <= box[3]; ++h)
          for (long long q = box[4]; q <= box[5]; ++q)
            for (long long kv = box[6]; kv <= box[7]; ++kv) {
              long long out[3 * kMaxWrites];
              const float s = gen.uniform(-3, 3);
              int n = record(s, int(b), int(h), int(q), int(kv), &cap, &ga, out, kMaxWrites);
              for (int w = 0; w < n; ++w) {
                const long long site = out[3 * w], slot = out[3 * w + 1], off = out[3 * w + 2];
                ASSERT_LT(site, v.gradSites);
                const fj::IvOffset o = offsets[site];
                ASSERT_EQ(slot, slots[site]) << mods[k].canonicalForm() << " site " << site;
                ASSERT_TRUE(o.lo <= off && off <= o.hi)
                    << mods[k].canonicalForm() << " site " << site << " writes offset " << off << " outside ["
                    << o.lo << ", " << o.hi << "] at b=" << b << " h=" << h << " q=" << q << " kv=" << kv;
                ++writes;
              }
            }
    }
  }
  EXPECT_GE(withSites, 50) << "random expressions should often read the gradient tensor";
  EXPECT_GT(writes, 10000);
  EXPECT_GT(tight, 100) << "windows should often be much smaller than the tensors";
}

TEST(CodegenHost, DivisionsThatReachADiscreteResultAreExact) {
  // A quotient that reaches a floor, a cast or a comparison is computed correctly rounded on the GPU
  // (fj::exactDiv): the approximate division is 2 ulp off, and floor(33 / 3.0) would be 10 (the GPU
  // differential fuzzer found q / q truncating to 0). One that only feeds smooth ops (softcap's
  // score / cap into tanh) keeps the fast one.
  ScoreMod softcap("softcap_div", [](Expr s, Expr, Expr, Expr, Expr) { return tanh(s / 30.0f) * 30.0f; });
  MaskMod bucket("bucket_div", [](Expr, Expr, Expr q, Expr kv) {
    return floor(toFloat(q) / 3.0f) >= floor(toFloat(kv) / 3.0f);
  });
  ScoreMod viaCast("cast_div", [](Expr s, Expr, Expr, Expr q, Expr) {
    return s + toFloat(toInt(toFloat(q) / 7.0f + 1.0f));
  });
  const Variant smooth = generateVariant(softcap, MaskMod::noop());
  const Variant masked = generateVariant(ScoreMod::noop(), bucket);
  const Variant cast = generateVariant(viaCast, MaskMod::noop());
  EXPECT_NE(smooth.prelude.find("fj::fastDiv("), std::string::npos);
  EXPECT_EQ(smooth.prelude.find("fj::exactDiv("), std::string::npos);
  EXPECT_NE(masked.prelude.find("fj::exactDiv("), std::string::npos);
  EXPECT_EQ(masked.prelude.find("fj::fastDiv("), std::string::npos);
  EXPECT_NE(cast.prelude.find("fj::exactDiv("), std::string::npos);
}
