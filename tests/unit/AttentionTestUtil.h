// Shared helpers for attention tests: random inputs in any dtype/device, poisoned outputs, and the
// FlashAttention-3 pass rule against the float64 reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "runtime/Attention.h"
#include "runtime/CudaDriver.h"
#include "runtime/HostFloat.h"
#include "runtime/Reference.h"

namespace flexjit::testing {

/// Whether a CUDA GPU is usable (GPU tests skip without one).
inline bool haveGpu() {
  try {
    return CudaDriver::available() && CudaDriver::get().deviceCount() > 0;
  } catch (const Error&) {
    return false;
  }
}

/// Random normal values rounded to `dtype`, as a tensor on `device`.
inline Tensor randomTensor(DType dtype, std::vector<int64_t> shape, Device device, uint32_t seed, float stddev = 1.0f) {
  Tensor host = Tensor::empty(dtype, shape, Device::cpu());
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < host.numel(); ++i) writeFloat(host.data(), dtype, i, dist(gen));
  return host.to(device);
}

/// A tensor filled with NaN, so unwritten outputs show.
inline Tensor poisoned(DType dtype, std::vector<int64_t> shape, Device device) {
  Tensor host = Tensor::empty(dtype, shape, Device::cpu());
  for (int64_t i = 0; i < host.numel(); ++i) writeFloat(host.data(), dtype, i, std::numeric_limits<double>::quiet_NaN());
  return host.to(device);
}

inline std::vector<double> asDoubles(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  std::vector<double> out(static_cast<size_t>(h.numel()));
  for (int64_t i = 0; i < h.numel(); ++i) out[i] = readFloat(h.data(), h.dtype(), i);
  return out;
}

/// max |a - b| with NaN counted as infinitely wrong; infinities must match exactly.
inline double maxError(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return std::numeric_limits<double>::infinity();
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  return worst;
}

struct ForwardCheck {
  double outError = 0, outLowPrecisionError = 0, lseError = 0;
  bool pass(double atol = 2e-3, double lseTol = 2e-3) const {
    return outError <= 2 * outLowPrecisionError + atol && lseError <= lseTol;
  }
};

/// Runs flex_attention on `device` and compares with the float64 reference on the CPU copies. The
/// reference runs `cpuScore` (the same mod with its captures on the CPU; `score` when omitted).
inline ForwardCheck checkForward(const Tensor& q, const Tensor& k, const Tensor& v, const ScoreMod& score,
                                 const BlockMask* gpuMask, const BlockMask* cpuMask, AttentionOptions options = {},
                                 const ScoreMod* cpuScore = nullptr) {
  const auto& qs = q.shape();
  const auto& vs = v.shape();
  Tensor out = poisoned(q.dtype(), {qs[0], qs[1], qs[2], vs[3]}, q.device());
  Tensor lse = poisoned(DType::F32, {qs[0], qs[1], qs[2]}, q.device());
  flex_attention_into(q.view(), k.view(), v.view(), score, gpuMask, out.view(), lse.view(), options);
  Tensor qc = q.to(Device::cpu()), kc = k.to(Device::cpu()), vc = v.to(Device::cpu());
  AttentionShape s = checkAttentionInputs(qc.view(), kc.view(), vc.view(), cpuMask, options);
  Tensor ro = Tensor::empty(DType::F32, {qs[0], qs[1], qs[2], vs[3]}, Device::cpu());
  Tensor rl = Tensor::empty(DType::F32, {qs[0], qs[1], qs[2]}, Device::cpu());
  const ScoreMod& ref = cpuScore ? *cpuScore : score;
  referenceForward(qc.view(), kc.view(), vc.view(), ref, cpuMask, s, ro.view(), rl.view());
  // The low-precision reference: probabilities and the output rounded to the inputs' dtype, as the kernel
  // rounds them (FlashAttention-3's rule compares the kernel's error with this one's).
  Tensor lo = Tensor::empty(q.dtype(), {qs[0], qs[1], qs[2], vs[3]}, Device::cpu());
  Tensor ll = Tensor::empty(DType::F32, {qs[0], qs[1], qs[2]}, Device::cpu());
  referenceForward(qc.view(), kc.view(), vc.view(), ref, cpuMask, s, lo.view(), ll.view(), q.dtype());
  ForwardCheck c;
  c.outError = maxError(asDoubles(out), asDoubles(ro));
  c.outLowPrecisionError = maxError(asDoubles(lo), asDoubles(ro));
  // LSE: relative to its magnitude (it grows like log(Lkv) + max score).
  std::vector<double> a = asDoubles(lse), b = asDoubles(rl);
  for (size_t i = 0; i < a.size(); ++i) {
    double e = (std::isinf(a[i]) || std::isinf(b[i]) || std::isnan(a[i])) ? (a[i] == b[i] ? 0.0 : INFINITY)
                                                                          : std::fabs(a[i] - b[i]) / std::max(1.0, std::fabs(b[i]));
    c.lseError = std::max(c.lseError, e);
  }
  return c;
}

}  // namespace flexjit::testing
