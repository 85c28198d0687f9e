// The generated forward kernels on a GPU against the float64 reference (skipped without a GPU): every
// seed variant, odd sizes, GQA, Lq != Lkv, fully masked rows, strided inputs, fp16 and bf16, D 64/128.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "AttentionTestUtil.h"
#include "codegen/Variant.h"
#include "dsl/Interpreter.h"
#include "examples/SeedVariants.h"
#include "runtime/Captures.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/KernelCache.h"
#include "runtime/KernelBuild.h"
#include "runtime/Module.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

const Device kGpu = Device::cuda(0);

struct Case {
  int64_t B, Hq, Hkv, Lq, Lkv, D;
  DType dtype;
};

void runCase(const std::string& name, const Case& c, uint32_t seed) {
  // Two instances of the variant: captures on the CPU for the reference, on the GPU for the kernels.
  examples::SeedVariant cpu = examples::makeSeedVariant(name, examples::Shape{c.B, c.Hq, c.Lq, c.Lkv});
  examples::SeedVariant v = examples::makeSeedVariant(name, examples::Shape{c.B, c.Hq, c.Lq, c.Lkv});
  BlockMask cpuMask = createBlockMask(cpu.mask, c.B, c.Hq, c.Lq, c.Lkv, Device::cpu());
  v.placeCaptures(kGpu);
  BlockMask gpuMask = createBlockMask(v.mask, c.B, c.Hq, c.Lq, c.Lkv, kGpu);
  Tensor q = randomTensor(c.dtype, {c.B, c.Hq, c.Lq, c.D}, kGpu, seed);
  Tensor k = randomTensor(c.dtype, {c.B, c.Hkv, c.Lkv, c.D}, kGpu, seed + 1);
  Tensor vv = randomTensor(c.dtype, {c.B, c.Hkv, c.Lkv, c.D}, kGpu, seed + 2);
  // The reference reads CPU copies of the captures; the kernel the GPU ones.
  ForwardCheck r = checkForward(q, k, vv, v.score, &gpuMask, &cpuMask, {}, &cpu.score);
  EXPECT_TRUE(r.pass()) << fmt::format("{} B{} Hq{} Hkv{} Lq{} Lkv{} D{} {}: out error {:.3g} (low-precision reference "
                                       "{:.3g}), lse error {:.3g}", name, c.B, c.Hq, c.Hkv, c.Lq, c.Lkv, c.D,
                                       dtypeName(c.dtype), r.outError, r.outLowPrecisionError, r.lseError);
}

}  // namespace

TEST(AttentionGpu, EverySeedVariantMatchesTheReference) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const Case cases[] = {{1, 2, 2, 1, 1, 64, DType::BF16},      {2, 4, 2, 17, 17, 128, DType::F16},
                        {1, 4, 1, 127, 129, 64, DType::BF16},  {2, 2, 2, 129, 127, 128, DType::BF16},
                        {1, 2, 2, 1000, 300, 64, DType::F16},  {1, 2, 1, 300, 1000, 128, DType::BF16}};
  uint32_t seed = 100;
  for (const std::string& name : examples::seedVariantNames())
    for (const Case& c : cases) runCase(name, c, seed += 3);
}

TEST(AttentionGpu, FullyMaskedRowsAndOtherHeadDims) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  MaskMod late("late_rows", [](Expr, Expr, Expr q, Expr kv) { return (q >= 5) & (kv <= q); });
  for (int64_t D : {32, 64, 96, 128, 256}) {
    BlockMask cpu = createBlockMask(late, 1, 2, 200, 200, Device::cpu());
    BlockMask gpu = createBlockMask(late, 1, 2, 200, 200, kGpu);
    Tensor q = randomTensor(DType::BF16, {1, 2, 200, D}, kGpu, 7), k = randomTensor(DType::BF16, {1, 2, 200, D}, kGpu, 8),
           v = randomTensor(DType::BF16, {1, 2, 200, D}, kGpu, 9);
    ForwardCheck r = checkForward(q, k, v, ScoreMod::noop(), &gpu, &cpu);
    EXPECT_TRUE(r.pass()) << "D=" << D << " out " << r.outError << " lp " << r.outLowPrecisionError << " lse " << r.lseError;
  }
}

TEST(AttentionGpu, StridedInputsAndNoBlockMask) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  // Q is a [B, L, H, D] tensor viewed as [B, H, L, D] (the layout of a fused QKV projection).
  Tensor qblh = randomTensor(DType::BF16, {2, 77, 4, 64}, kGpu, 11);
  TensorView q = qblh.view();
  q.shape = {2, 4, 77, 64};
  q.strides = {77 * 4 * 64, 64, 4 * 64, 1};
  Tensor k = randomTensor(DType::BF16, {2, 4, 90, 64}, kGpu, 12), v = randomTensor(DType::BF16, {2, 4, 90, 64}, kGpu, 13);
  AttentionResult gpu = flex_attention(q, k.view(), v.view());
  Tensor qc = qblh.to(Device::cpu());
  TensorView qcv = qc.view();
  qcv.shape = q.shape;
  qcv.strides = q.strides;
  Tensor kc = k.to(Device::cpu()), vc = v.to(Device::cpu());
  AttentionResult ref = flex_attention(qcv, kc.view(), vc.view());
  EXPECT_LT(maxError(asDoubles(gpu.out), asDoubles(ref.out)), 2e-2);
  EXPECT_LT(maxError(asDoubles(gpu.lse), asDoubles(ref.lse)), 2e-3 * 8);
}

TEST(AttentionGpu, ChangingACapturedScalarDoesNotRecompile) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  CapturedScalar cap("cap", 20.0f);
  ScoreMod softcap("softcap_rt", [&](Expr s, Expr, Expr, Expr, Expr) { return cap * tanh(s / cap); });
  Tensor q = randomTensor(DType::BF16, {1, 1, 64, 64}, kGpu, 1, 4.0f), k = randomTensor(DType::BF16, {1, 1, 64, 64}, kGpu, 2, 4.0f),
         v = randomTensor(DType::BF16, {1, 1, 64, 64}, kGpu, 3);
  AttentionResult a = flex_attention(q.view(), k.view(), v.view(), softcap);
  auto before = KernelCache::global().stats();
  cap.set(2.0f);
  AttentionResult b = flex_attention(q.view(), k.view(), v.view(), softcap);
  auto after = KernelCache::global().stats();
  EXPECT_EQ(before.compilations, after.compilations) << "a scalar change must not recompile";
  EXPECT_GT(maxError(asDoubles(a.out), asDoubles(b.out)), 1e-3) << "the new scalar value must take effect";
}

TEST(AttentionGpu, HooksMatchTheInterpreter) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  ScopedContext ctx(0);
  const std::string arch = cachedDeviceInfo(0).arch;
  for (const std::string& name : examples::seedVariantNames()) {
    examples::SeedVariant sv = examples::makeSeedVariant(name, examples::Shape{2, 4, 300, 300});
    Program ps(sv.score), pm(sv.mask);
    ps.bindCaptures();
    pm.bindCaptures();
    Variant variant = generateVariant(sv.score, sv.mask);
    sv.placeCaptures(kGpu);
    const CompiledKernel& kernel = KernelCache::global().getOrCompile(
        KernelRequest{hookTestSource(variant), "hook_test_" + name, CompileOptions{arch, {}, false}});
    constexpr int n = 512;
    std::mt19937 gen(5);
    std::vector<int> pos(4 * n);
    std::vector<float> scores(n);
    std::vector<long long> boxes(8 * n);
    for (int i = 0; i < n; ++i) {
      pos[4 * i] = gen() % 2, pos[4 * i + 1] = gen() % 4, pos[4 * i + 2] = gen() % 300, pos[4 * i + 3] = gen() % 300;
      scores[i] = std::uniform_real_distribution<float>(-8, 8)(gen);
      long long lo = gen() % 250, lo2 = gen() % 250;
      long long box[8] = {pos[4 * i], pos[4 * i], pos[4 * i + 1], pos[4 * i + 1], lo, lo + 40, lo2, lo2 + 40};
      std::copy(box, box + 8, boxes.begin() + 8 * i);
    }
    Tensor dPos = Tensor::fromVector(pos, DType::I32, {4 * n}, kGpu), dScores = Tensor::fromVector(scores, DType::F32, {n}, kGpu);
    Tensor dBoxes = Tensor::fromVector(boxes, DType::I64, {8 * n}, kGpu);
    Tensor sOut = Tensor::zeros(DType::F32, {n}, kGpu), mOut = Tensor::zeros(DType::I32, {n}, kGpu),
           gOut = Tensor::zeros(DType::F32, {n}, kGpu), iOut = Tensor::zeros(DType::I32, {2 * n}, kGpu);
    Tensor gradBuf = Tensor::zeros(DType::F32, {1 << 16}, kGpu);
    struct {
      int n;
      const int* positions;
      const float* scores;
      float *scoreOut;
      int* maskOut;
      float* gradOut;
      const long long* boxes;
      int* intervalOut;
      fj::CaptureArgs cap;
      fj::GradArgs grads;
    } p{n, (const int*)dPos.data(), (const float*)dScores.data(), (float*)sOut.data(), (int*)mOut.data(),
        (float*)gOut.data(), (const long long*)dBoxes.data(), (int*)iOut.data(), {}, {}};
    p.cap = packCaptures(captureLayout(sv.score, sv.mask), kGpu, "hook test");
    for (int t = 0; t < fj::kMaxCapturedTensors; ++t) {
      p.grads.grad[t] = static_cast<float*>(gradBuf.data());
      for (int d = 0; d < fj::kMaxRank; ++d) p.grads.stride[t][d] = 0;  // all contributions land in element 0
    }
    LoadedKernel fn = ModuleCache::global().load(kernel, 0, "flexjit_hook_test");
    void* args[] = {&p};
    CudaDriver::get().launchKernel(fn.function, Dim3{(n + 127) / 128, 1, 1}, Dim3{128, 1, 1}, 0, nullptr, args);
    CudaDriver::get().contextSynchronize();
    std::vector<float> so = sOut.toVector<float>();
    std::vector<int32_t> mo = mOut.toVector<int32_t>(), io = iOut.toVector<int32_t>();
    for (int i = 0; i < n; ++i) {
      Position x{pos[4 * i], pos[4 * i + 1], pos[4 * i + 2], pos[4 * i + 3]};
      float want = ps.scoreF32(scores[i], x);
      // Fast-math transcendental instructions (tanh.approx: ~2^-11 relative) are the only difference.
      EXPECT_NEAR(so[i], want, 2e-3 * std::max(1.0f, std::fabs(want))) << name << " score at " << i;
      EXPECT_EQ(mo[i] != 0, pm.mask(x)) << name << " mask at " << i;
      Box box{fj::ivInt(boxes[8 * i], boxes[8 * i + 1]), fj::ivInt(boxes[8 * i + 2], boxes[8 * i + 3]),
              fj::ivInt(boxes[8 * i + 4], boxes[8 * i + 5]), fj::ivInt(boxes[8 * i + 6], boxes[8 * i + 7])};
      bool anyTrue = false, anyFalse = false;
      for (long long q = box.q.lo; q <= box.q.hi; q += 1)
        for (long long kv = box.kv.lo; kv <= box.kv.hi; kv += 1)
          (pm.mask({x.b, x.h, int(q), int(kv)}) ? anyTrue : anyFalse) = true;
      EXPECT_TRUE(!anyTrue || io[2 * i + 1]) << name << " interval form claimed never-true at " << i;
      EXPECT_TRUE(!anyFalse || io[2 * i]) << name << " interval form claimed never-false at " << i;
    }
  }
}

// The C++ API checks int64 captures on the GPU too (through a host copy): a value outside int32 is an error.
TEST(AttentionGpu, Int64CapturesOutsideInt32AreRefused) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  std::vector<int64_t> ids(300, 1);
  ids[257] = int64_t(3) << 31;
  Tensor dIds = Tensor::fromVector(ids, DType::I64, {300}, kGpu);
  CapturedTensor doc("doc", dIds.view());
  ScoreMod byDoc("by_doc", [&](Expr s, Expr, Expr, Expr q, Expr) { return s + toFloat(doc[q]); });
  Tensor q = randomTensor(DType::BF16, {1, 2, 300, 64}, kGpu, 5);
  try {
    flex_attention(q.view(), q.view(), q.view(), byDoc);
    FAIL() << "an int64 value of 2^32 + 2^31 was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("captured tensor 'doc' (int64[300] on cuda:0) holds 6442450944 at [257]"),
              std::string::npos) << e.what();
  }
}
