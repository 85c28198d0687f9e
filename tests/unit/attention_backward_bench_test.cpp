// Times the GPU backward (and the forward, for reference) on the benchmark shapes of shared/ANCHORS.md.
// Runs only with FLEXJIT_BWD_BENCH=1 and a GPU: it allocates a few GiB and takes seconds.
//
//   FLEXJIT_BWD_BENCH=1 build/tests/flexjit_tests --gtest_filter='AttentionBackwardBench*'
//   FLEXJIT_BWD_BENCH_CONFIGS="unroll1:unroll=1;unroll4:unroll=4" also times tile configurations (each
//   entry "label:FLEXJIT_BWD_CONFIG value") on every shape; labels starting with "det" time the
//   deterministic mode.
//
// Method: inputs are random (a random block repeated, never zeros), 3 warm-up calls (module load and
// NVRTC stay out), then the median of 10 calls timed with CUDA events on the default stream. FLOPs follow
// ANCHORS.md: backward = 2.5 x forward = 2.5 * 4 * B * H * S^2 * D * density, density = the fraction of
// mask blocks computed.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <sstream>

#include "AttentionTestUtil.h"
#include "examples/SeedVariants.h"
#include "runtime/AttentionBackward.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/KernelBuild.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

const Device kGpu = Device::cuda(0);
constexpr int kWarmup = 3;
constexpr int kReps = 10;
constexpr double kSlowMs = 500;
constexpr int kSlowReps = 3;
/// LSE of the stand-in forward output: larger than any row's log-sum-exp here, so P stays finite.
constexpr float kStandInLse = 30.0f;
constexpr int64_t kBlockElems = int64_t(1) << 22;  // the random block repeated through a big tensor

bool benchEnabled() {
  const char* e = std::getenv("FLEXJIT_BWD_BENCH");
  return e && *e && std::string(e) != "0";
}

/// A big device tensor of random values: one random block copied over and over.
Tensor bigRandom(DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  Tensor t = Tensor::empty(dtype, shape, kGpu);
  const int64_t n = t.numel(), block = std::min(n, kBlockElems);
  Tensor host = randomTensor(dtype, {block}, Device::cpu(), seed);
  const size_t elem = static_cast<size_t>(dtypeSize(dtype));
  for (int64_t off = 0; off < n; off += block) {
    const int64_t len = std::min(block, n - off);
    copyBytes(static_cast<char*>(t.data()) + off * elem, kGpu, host.data(), Device::cpu(),
              static_cast<size_t>(len) * elem);
  }
  return t;
}

/// Median milliseconds of fn() over kReps timed calls after kWarmup untimed ones (kSlowReps after one
/// warm-up call when a call takes longer than kSlowMs).
template <class F>
double medianMs(F&& fn) {
  CudaDriver& cu = CudaDriver::get();
  CUevent start = cu.eventCreate(), stop = cu.eventCreate();
  fn();  // warm-up 1: module load and NVRTC
  cu.eventRecord(start, nullptr);
  fn();
  cu.eventRecord(stop, nullptr);
  cu.eventSynchronize(stop);
  const bool slow = cu.eventElapsedMs(start, stop) > kSlowMs;
  for (int i = 2; i < kWarmup && !slow; ++i) fn();
  std::vector<double> ms;
  for (int i = 0; i < (slow ? kSlowReps : kReps); ++i) {
    cu.eventRecord(start, nullptr);
    fn();
    cu.eventRecord(stop, nullptr);
    cu.eventSynchronize(stop);
    ms.push_back(cu.eventElapsedMs(start, stop));
  }
  cu.eventDestroy(start);
  cu.eventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Shape {
  std::string variant;
  int64_t B, H, S, D;
  DType dtype;
};

struct Problem {
  Tensor q, k, v, out, lse, dout, dq, dk, dv;
  std::vector<Tensor> captureGrads;  ///< zero-filled float32 buffers of the score_mod's learned tensors
  std::vector<TensorView> captureGradViews;
  examples::SeedVariant sv;
  BlockMask mask;
  double density = 1;
};

Problem makeProblem(const Shape& s) {
  Problem p;
  p.sv = examples::makeSeedVariant(s.variant, {s.B, s.H, s.S, s.S});
  p.sv.placeCaptures(kGpu);
  p.mask = createBlockMask(p.sv.mask, s.B, s.H, s.S, s.S, kGpu);
  p.density = 1.0 - p.mask.sparsity() / 100.0;
  p.q = bigRandom(s.dtype, {s.B, s.H, s.S, s.D}, 1);
  p.k = bigRandom(s.dtype, {s.B, s.H, s.S, s.D}, 2);
  p.v = bigRandom(s.dtype, {s.B, s.H, s.S, s.D}, 3);
  p.dout = bigRandom(s.dtype, {s.B, s.H, s.S, s.D}, 4);
  p.out = Tensor::empty(s.dtype, {s.B, s.H, s.S, s.D}, kGpu);
  p.lse = Tensor::empty(DType::F32, {s.B, s.H, s.S}, kGpu);
  p.dq = Tensor::empty(s.dtype, {s.B, s.H, s.S, s.D}, kGpu);
  p.dk = Tensor::empty(s.dtype, {s.B, s.H, s.S, s.D}, kGpu);
  p.dv = Tensor::empty(s.dtype, {s.B, s.H, s.S, s.D}, kGpu);
  for (const auto& t : gradientCaptures(p.sv.score)) {
    p.captureGrads.push_back(Tensor::zeros(DType::F32, t->view->shape, kGpu));
    p.captureGradViews.push_back(p.captureGrads.back().view());
  }
  return p;
}

double backwardMs(Problem& p, bool deterministic) {
  BackwardOptions o;
  o.deterministic = deterministic;
  return medianMs([&] {
    flex_attention_backward_into(p.q.view(), p.k.view(), p.v.view(), p.out.view(), p.lse.view(), p.dout.view(),
                                 p.sv.score, &p.mask, p.dq.view(), p.dk.view(), p.dv.view(), p.captureGradViews, o);
  });
}

/// NaN-free and not all zero in the first elements of each gradient (the accuracy tests do the rest).
void sanityCheck(const Problem& p, const std::string& what) {
  for (const Tensor* t : {&p.dq, &p.dk, &p.dv}) {
    const int64_t n = std::min<int64_t>(t->numel(), 1 << 16);
    std::vector<uint16_t> h(static_cast<size_t>(n));
    copyBytes(h.data(), Device::cpu(), t->data(), kGpu, h.size() * 2);
    bool nonzero = false, nan = false;
    for (uint16_t x : h) {
      const double d = t->dtype() == DType::BF16 ? fj::bf16ToFloat(x) : fj::halfToFloat(x);
      nan |= std::isnan(d);
      nonzero |= d != 0;
    }
    EXPECT_TRUE(nonzero && !nan) << what << ": gradients are NaN or all zero";
  }
}

}  // namespace

TEST(AttentionBackwardBench, AnchorShapes) {
  if (!benchEnabled()) GTEST_SKIP() << "set FLEXJIT_BWD_BENCH=1 to time the backward";
  if (!CudaDriver::available() || CudaDriver::get().deviceCount() == 0) GTEST_SKIP() << "no CUDA GPU";
  ScopedContext ctx(0);
  std::printf("[ bench ] device: %s\n", cachedDeviceInfo(0).name.c_str());
  const Shape shapes[] = {{"causal", 8, 16, 8192, 128, DType::BF16},
                          {"noop", 8, 16, 8192, 128, DType::BF16},
                          {"causal", 16, 16, 8192, 64, DType::F16},
                          {"softcap", 8, 16, 8192, 128, DType::BF16},
                          {"relative_bias", 8, 16, 8192, 128, DType::BF16}};
  // FLEXJIT_BWD_BENCH_SHAPES=n times only the first n shapes.
  const char* limit = std::getenv("FLEXJIT_BWD_BENCH_SHAPES");
  const size_t count =
      limit ? std::min<size_t>(std::strtoul(limit, nullptr, 10), std::size(shapes)) : std::size(shapes);
  for (size_t i = 0; i < count; ++i) {
    const Shape& s = shapes[i];
    Problem p = makeProblem(s);
    const double fwdFlops = 4.0 * double(s.B) * double(s.H) * double(s.S) * double(s.S) * double(s.D) * p.density;
    // The forward provides O and LSE (and its time, for comparison); if it cannot run, random O and a
    // constant LSE still give the backward its full work (its cost does not depend on the values).
    double fwdMs = 0;
    try {
      fwdMs = medianMs([&] {
        flex_attention_into(p.q.view(), p.k.view(), p.v.view(), p.sv.score, &p.mask, p.out.view(), p.lse.view());
      });
    } catch (const Error& e) {
      std::printf("[ bench ] forward failed (%s); timing the backward on stand-in O and LSE\n", e.what());
      p.out = bigRandom(s.dtype, {s.B, s.H, s.S, s.D}, 5);
      std::vector<float> lse(static_cast<size_t>(s.B * s.H * s.S), kStandInLse);
      p.lse = Tensor::fromVector(lse, DType::F32, {s.B, s.H, s.S}, kGpu);
    }
    const std::string name = fmt::format("{} B{} H{} S{} D{} {}", s.variant, s.B, s.H, s.S, s.D, dtypeName(s.dtype));
    auto report = [&](const std::string& label, double ms) {
      std::printf("[ bench ] %-40s %-22s %8.3f ms %7.1f TFLOP/s\n", name.c_str(), label.c_str(), ms,
                  2.5 * fwdFlops / (ms * 1e-3) / 1e12);
    };
    if (fwdMs > 0)
      std::printf("[ bench ] %-40s %-22s %8.3f ms %7.1f TFLOP/s (density %.4f)\n", name.c_str(), "forward", fwdMs,
                  fwdFlops / (fwdMs * 1e-3) / 1e12, p.density);
    const char* configs = std::getenv("FLEXJIT_BWD_BENCH_CONFIGS");
    const double bwdMs = backwardMs(p, false);
    report("backward", bwdMs);
    sanityCheck(p, name);
    report("backward deterministic", backwardMs(p, true));
    sanityCheck(p, name + " deterministic");
    if (configs && bwdMs < kSlowMs) {
      std::stringstream ss(configs);
      for (std::string item; std::getline(ss, item, ';');) {
        const size_t colon = item.find(':');
        if (colon == std::string::npos) continue;
        setenv("FLEXJIT_BWD_CONFIG", item.substr(colon + 1).c_str(), 1);
        const std::string label = item.substr(0, colon);
        try {
          // Labels starting with "det" time the deterministic mode.
          report("backward " + label, backwardMs(p, label.rfind("det", 0) == 0));
        } catch (const Error& e) {
          std::printf("[ bench ] %-40s %-22s failed: %s\n", name.c_str(), label.c_str(), e.what());
        }
        unsetenv("FLEXJIT_BWD_CONFIG");
      }
    }
  }
}
