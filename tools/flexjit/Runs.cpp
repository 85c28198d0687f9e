#include "Runs.h"

#include <cmath>
#include <random>

#include "Cli.h"
#include "examples/SeedVariants.h"
#include "runtime/Attention.h"
#include "runtime/AttentionBackward.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/HostFloat.h"
#include "runtime/Reference.h"

namespace flexjit::cli {

namespace {

const Device kGpu = Device::cuda(0);
/// Backward FLOPs over forward FLOPs (ANCHORS.md: 2.5x).
constexpr double kBackwardFlopsFactor = 2.5;

/// Random normal values on the GPU. Large tensors repeat a 4M-element random block (generating 10^8
/// normals on the host would dominate a benchmark run; the values only need to be realistic, not unique).
Tensor randomDevice(DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  constexpr int64_t kBlock = int64_t{1} << 22;
  Tensor t = Tensor::empty(dtype, shape, kGpu);
  const int64_t n = t.numel(), chunk = std::min(n, kBlock);
  Tensor host = Tensor::empty(dtype, {chunk}, Device::cpu());
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int64_t i = 0; i < chunk; ++i) writeFloat(host.data(), dtype, i, dist(gen));
  const size_t elem = dtypeSize(dtype);
  for (int64_t at = 0; at < n; at += chunk)
    copyBytes(static_cast<char*>(t.data()) + at * elem, kGpu, host.data(), Device::cpu(),
              static_cast<size_t>(std::min(chunk, n - at)) * elem);
  return t;
}

double maxAbsDiff(const Tensor& a, const Tensor& b) {
  Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  double worst = 0;
  for (int64_t i = 0; i < ha.numel(); ++i) {
    double x = readFloat(ha.data(), ha.dtype(), i), y = readFloat(hb.data(), hb.dtype(), i);
    if (std::isinf(x) && x == y) continue;
    double d = std::fabs(x - y);
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return worst;
}

/// Times flex_attention_backward from the forward's outputs (captured-tensor gradients included).
void timeBackward(const examples::SeedVariant& v, const RunShape& s, const Tensor& q, const Tensor& k, const Tensor& vv,
                  const Tensor& out, const Tensor& lse, const BlockMask& mask, int reps, RunResult& r) {
  Tensor dout = randomDevice(s.dtype, {s.B, s.H, s.Lq, s.D}, 4);
  Tensor dq = Tensor::empty(s.dtype, q.shape(), kGpu), dk = Tensor::empty(s.dtype, k.shape(), kGpu),
         dv = Tensor::empty(s.dtype, vv.shape(), kGpu);
  std::vector<Tensor> grads;
  std::vector<TensorView> gradViews;
  for (const auto& t : gradientCaptures(v.score)) {
    grads.push_back(Tensor::zeros(DType::F32, t->view->shape, kGpu));
    gradViews.push_back(grads.back().view());
  }
  auto run = [&] {
    flex_attention_backward_into(q.view(), k.view(), vv.view(), out.view(), lse.view(), dout.view(), v.score, &mask,
                                 dq.view(), dk.view(), dv.view(), gradViews);
  };
  r.bwdMs = medianMs(run, 2, reps);
  r.bwdTflops = kBackwardFlopsFactor * attentionFlops(s.B, s.H, s.Lq, s.Lkv, s.D, r.density) / (r.bwdMs * 1e-3) / 1e12;
}

}  // namespace

RunResult timeVariant(const std::string& name, const RunShape& s, int reps, bool backward) {
  ScopedContext context(kGpu.index);  // CUDA events need a current context
  examples::SeedVariant v = examples::makeSeedVariant(name, examples::Shape{s.B, s.H, s.Lq, s.Lkv});
  v.placeCaptures(kGpu);
  Tensor q = randomDevice(s.dtype, {s.B, s.H, s.Lq, s.D}, 1), k = randomDevice(s.dtype, {s.B, s.H, s.Lkv, s.D}, 2),
         vv = randomDevice(s.dtype, {s.B, s.H, s.Lkv, s.D}, 3);
  Tensor out = Tensor::empty(s.dtype, {s.B, s.H, s.Lq, s.D}, kGpu), lse = Tensor::empty(DType::F32, {s.B, s.H, s.Lq}, kGpu);
  RunResult r;
  BlockMask mask;
  r.maskMs = medianMs([&] { mask = createBlockMask(v.mask, s.B, s.H, s.Lq, s.Lkv, kGpu); }, 1, 5);
  r.density = 1.0 - mask.sparsity() / 100.0;
  auto run = [&] { flex_attention_into(q.view(), k.view(), vv.view(), v.score, &mask, out.view(), lse.view()); };
  r.firstCallMs = wallMs([&] {
    run();
    CudaDriver::get().contextSynchronize();
  });
  r.fwdMs = medianMs(run, 3, reps);
  r.tflops = attentionFlops(s.B, s.H, s.Lq, s.Lkv, s.D, r.density) / (r.fwdMs * 1e-3) / 1e12;
  if (backward) timeBackward(v, s, q, k, vv, out, lse, mask, reps, r);
  return r;
}

Accuracy checkVariant(const std::string& name, int64_t seq, int64_t headDim) {
  const int64_t B = 1, H = 2;
  // Two instances: captures on the CPU for the reference, on the GPU for the kernels.
  examples::SeedVariant cpu = examples::makeSeedVariant(name, examples::Shape{B, H, seq, seq});
  examples::SeedVariant v = examples::makeSeedVariant(name, examples::Shape{B, H, seq, seq});
  BlockMask cpuMask = createBlockMask(cpu.mask, B, H, seq, seq, Device::cpu());
  v.placeCaptures(kGpu);
  BlockMask gpuMask = createBlockMask(v.mask, B, H, seq, seq, kGpu);
  Tensor q = randomDevice(DType::BF16, {B, H, seq, headDim}, 4), k = randomDevice(DType::BF16, {B, H, seq, headDim}, 5),
         vv = randomDevice(DType::BF16, {B, H, seq, headDim}, 6);
  AttentionResult gpu = flex_attention(q.view(), k.view(), vv.view(), v.score, &gpuMask);
  Tensor qc = q.to(Device::cpu()), kc = k.to(Device::cpu()), vc = vv.to(Device::cpu());
  AttentionShape shape = checkAttentionInputs(qc.view(), kc.view(), vc.view(), &cpuMask, {});
  Tensor ro = Tensor::empty(DType::F32, {B, H, seq, headDim}, Device::cpu()), rl = Tensor::empty(DType::F32, {B, H, seq}, Device::cpu());
  Tensor lo = Tensor::empty(DType::BF16, {B, H, seq, headDim}, Device::cpu()), ll = Tensor::empty(DType::F32, {B, H, seq}, Device::cpu());
  referenceForward(qc.view(), kc.view(), vc.view(), cpu.score, &cpuMask, shape, ro.view(), rl.view());
  referenceForward(qc.view(), kc.view(), vc.view(), cpu.score, &cpuMask, shape, lo.view(), ll.view(), DType::BF16);
  return Accuracy{maxAbsDiff(gpu.out, ro), maxAbsDiff(lo, ro), maxAbsDiff(gpu.lse, rl)};
}

}  // namespace flexjit::cli
