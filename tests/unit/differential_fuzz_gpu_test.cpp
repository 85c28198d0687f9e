// The differential fuzzer's random mods through the GPU kernels (skipped without a GPU): 500 cases
// (FuzzGen.h: score_mod, mask_mod, sometimes a sink_mod and a prob_mod, captured tensors of every dtype)
// through both forward families against the float64 reference, by the FA3 rule on the rows that are not NaN;
// the NaN rows (a NaN score, a NaN sink) must be the reference's. FLEXJIT_FUZZ_GPU_CASES changes the count.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "AttentionTestUtil.h"
#include "FuzzGen.h"
#include "runtime/Reference.h"
#include "runtime_test_support.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

constexpr int64_t kB = 1, kH = 2, kLq = 67, kLkv = 131, kD = 64;

/// Binds every captured tensor of a case to a copy of its storage on `device` (the CPU: its own bytes).
struct PlacedCaptures {
  std::vector<Tensor> copies;
  void place(FuzzEnv& env, Device device) {
    copies.clear();
    for (auto& t : env.tensors) {
      if (device.kind == DeviceKind::CPU) {
        t->capture->bind(TensorView(t->bytes.data(), t->dtype, device, t->shape, t->strides));
        continue;
      }
      copies.push_back(Tensor::fromHost(t->bytes.data(), t->dtype, {t->storageElements()}, device));
      t->capture->bind(TensorView(copies.back().data(), t->dtype, device, t->shape, t->strides));
    }
  }
};

int fuzzGpuCases() {
  const char* env = std::getenv("FLEXJIT_FUZZ_GPU_CASES");
  return env ? std::atoi(env) : 500;
}

}  // namespace

TEST(DifferentialFuzzGpu, RandomModsThroughBothFamiliesMatchTheReference) {
  if (!haveGpu()) GTEST_SKIP() << "no CUDA GPU";
  const Device gpu = Device::cuda(0);
  Tensor qc = randomTensor(DType::BF16, {kB, kH, kLq, kD}, Device::cpu(), 1);
  Tensor kc = randomTensor(DType::BF16, {kB, kH, kLkv, kD}, Device::cpu(), 2);
  Tensor vc = randomTensor(DType::BF16, {kB, kH, kLkv, kD}, Device::cpu(), 3);
  Tensor q = qc.to(gpu), k = kc.to(gpu), v = vc.to(gpu);
  int checked = 0, nanRows = 0, failures = 0;
  for (int n = 0; n < fuzzGpuCases() && failures < 8; ++n) {
    FuzzCase c = makeFuzzCase(20261202 + static_cast<uint64_t>(n));
    AttentionOptions options;
    options.sink = c.sink;
    options.prob = c.prob;
    PlacedCaptures placed;
    placed.place(*c.env, Device::cpu());
    BlockMask cpuMask = createBlockMask(*c.mask, kB, kH, kLq, kLkv, Device::cpu());
    const AttentionShape s = checkAttentionInputs(qc.view(), kc.view(), vc.view(), &cpuMask, options);
    Tensor ro = Tensor::empty(DType::F32, {kB, kH, kLq, kD}, Device::cpu()), rl = Tensor::empty(DType::F32, {kB, kH, kLq}, Device::cpu());
    Tensor lo = Tensor::empty(DType::BF16, {kB, kH, kLq, kD}, Device::cpu()), ll = Tensor::empty(DType::F32, {kB, kH, kLq}, Device::cpu());
    referenceForward(qc.view(), kc.view(), vc.view(), *c.score, &cpuMask, s, ForwardOutputs{ro.view(), rl.view()},
                     c.extra());
    referenceForward(qc.view(), kc.view(), vc.view(), *c.score, &cpuMask, s, ForwardOutputs{lo.view(), ll.view()},
                     c.extra(), DType::BF16);
    const std::vector<double> refOut = asDoubles(ro), refLse = asDoubles(rl), lowOut = asDoubles(lo);
    for (const char* family : {"", "family=80"}) {
      ScopedEnv env("FLEXJIT_FWD_CONFIG", std::string(family));
      placed.place(*c.env, gpu);
      BlockMask gpuMask = createBlockMask(*c.mask, kB, kH, kLq, kLkv, gpu);
      AttentionResult r;
      try {
        r = flex_attention(q.view(), k.view(), v.view(), *c.score, &gpuMask, options);
      } catch (const Error& e) {
        ADD_FAILURE() << "case " << c.seed << " (" << (*family ? family : "planned") << "): " << e.what() << "\n" << c.describe();
        ++failures;
        continue;
      }
      const std::vector<double> out = asDoubles(r.out), lse = asDoubles(r.lse);
      double err = 0, lowErr = 0;
      bool nanMismatch = false;
      for (int64_t row = 0; row < kB * kH * kLq; ++row) {
        const bool refNaN = std::isnan(refLse[row]);
        nanRows += refNaN;
        if (std::isnan(lse[row]) != refNaN) nanMismatch = true;
        if (refNaN) continue;
        for (int64_t d = 0; d < kD; ++d) {
          const size_t i = static_cast<size_t>(row * kD + d);
          err = std::max(err, std::isnan(out[i]) ? INFINITY : std::fabs(out[i] - refOut[i]));
          lowErr = std::max(lowErr, std::fabs(lowOut[i] - refOut[i]));
        }
      }
      ++checked;
      if (nanMismatch || !(err <= 2 * lowErr + 2e-3)) {
        ADD_FAILURE() << fmt::format("case {} ({}): out error {:.3g} (low-precision reference {:.3g}){}\n{}", c.seed,
                                     *family ? family : "planned", err, lowErr, nanMismatch ? ", NaN rows differ" : "",
                                     c.describe());
        ++failures;
      }
    }
    placed.place(*c.env, Device::cpu());
  }
  std::printf("[ fuzz gpu ] %d kernel runs checked (%d NaN rows matched)\n", checked, nanRows);
}
