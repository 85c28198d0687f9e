// The GPU backward of flex_attention: validates what the kernels need beyond the API checks (alignment),
// fills fjk::BwdParams (captured-tensor gradients included), and launches, in order on options.stream:
//
//   atomic dQ (default):  zero the dQ accumulator, preprocess, dK/dV (+ dQ atomics), dQ convert
//   deterministic:        preprocess, dK/dV, dQ kernel
//
// FLEXJIT_BWD_CONFIG="unroll=4,stages=1,..." overrides fields of the default tile configuration (a tuning
// knob for benchmarks; invalid values are reported as errors).
//
// The float32 scratch arrays (LSE2, Delta, the dQ accumulator) live in a per-(context, stream) workspace
// that only grows (runtime/Workspace.h).
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>

#include "codegen/BackwardConfig.h"
#include "codegen/templates/common/attention_bwd_params.h"
#include "codegen/templates/sm90/bwd_params.h"
#include "runtime/AttentionGpu.h"
#include "runtime/BackwardBuild.h"
#include "runtime/Captures.h"
#include "runtime/ConfigOverrides.h"
#include "runtime/CudaDriver.h"
#include "runtime/KernelArgs.h"
#include "runtime/KernelBuild.h"
#include "runtime/Module.h"
#include "runtime/Planner.h"
#include "runtime/TmaMaps.h"
#include "runtime/Workspace.h"

namespace flexjit {

namespace {

/// Gradient buffers by capture slot: slot k of fj::CaptureArgs is the k-th tensor of captureLayout (the
/// score_mod's first, then the mask_mod's, then the sink_mod's); captureGrads[w] belongs to
/// gradientCaptures(score, extra)[w]. A tensor read by two hooks has two slots sharing one buffer (masks
/// never read tensors that require a gradient: lowerMods refuses them).
fj::GradArgs gradArgs(const ScoreMod& score, const ExtraHooks& extra, const CaptureLayout& layout,
                      const std::vector<TensorView>& captureGrads) {
  fj::GradArgs g{};
  std::vector<std::shared_ptr<TensorCapture>> wanted = gradientCaptures(score, extra);
  for (size_t k = 0; k < layout.tensors.size(); ++k)
    for (size_t w = 0; w < wanted.size(); ++w) {
      if (layout.tensors[k] != wanted[w]) continue;
      g.grad[k] = static_cast<float*>(captureGrads[w].data);
      for (int d = 0; d < captureGrads[w].rank() && d < fj::kMaxRank; ++d) g.stride[k][d] = captureGrads[w].strides[d];
    }
  return g;
}

/// Launches entry `name` with one parameter struct (BwdParams, or the sm90 family's Sm90BwdParams).
template <class Params>
void launch(const CompiledKernel& kernel, const char* name, const BwdLaunch& l, CUstream stream, Params& p) {
  if (l.grid[0] == 0 || l.grid[1] == 0 || l.grid[2] == 0) return;
  LoadedKernel fn = ModuleCache::global().load(kernel, static_cast<size_t>(l.sharedMemoryBytes), name);
  void* args[] = {&p};
  CudaDriver::get().launchKernel(fn.function, Dim3{l.grid[0], l.grid[1], l.grid[2]},
                                 Dim3{l.block[0], l.block[1], l.block[2]}, static_cast<unsigned>(l.sharedMemoryBytes),
                                 stream, args);
}

/// Applies FLEXJIT_BWD_CONFIG's "key=value,..." overrides to a default configuration.
void applyBwdOverrides(BwdKernelConfig& c) {
  int family = 0;  // read by the planner (requestedBackwardFamily)
  if (c.family == KernelFamily::Sm90) {
    applyConfigOverrides("FLEXJIT_BWD_CONFIG", {{"family", &family}, {"stages", &c.stages}});
    return;
  }
  applyConfigOverrides("FLEXJIT_BWD_CONFIG",
                       {{"family", &family},           {"blockM", &c.blockM},       {"blockN", &c.blockN},       {"warps", &c.numWarps},
                        {"sdpWarpsM", &c.sdpWarpsM}, {"dkvWarpsN", &c.dkvWarpsN}, {"dqWarpsM", &c.dqWarpsM},
                        {"stages", &c.stages},       {"unroll", &c.gemmUnroll},   {"dqBlockM", &c.dqBlockM},
                        {"dqBlockN", &c.dqBlockN},   {"dqWarps", &c.dqNumWarps},  {"dqFirst", &c.dqFirst},
                        {"gradWindows", &c.gradWindows}, {"gradWindowFloats", &c.gradWindowFloats}});
}

/// A configuration FLEXJIT_BWD_CONFIG made impossible is the override's fault: the advice for a default
/// configuration (another BLOCK_SIZE) would not help.
void requireOverridesRun(const BwdKernelConfig& config, const BlockMask& blockMask) {
  BwdConfigCheck check = checkBwdConfig(config);
  if (check.ok) check = checkBwdMaskBlocks(config, blockMask.blockQ, blockMask.blockKV);
  if (!check.ok)
    throw Error(fmt::format("FLEXJIT_BWD_CONFIG={}: the overridden configuration cannot run: {}; change or unset "
                            "FLEXJIT_BWD_CONFIG (docs/kernels-backward.md)", std::getenv("FLEXJIT_BWD_CONFIG"),
                            check.message));
}

constexpr size_t kFloatBytes = 4;

/// Runs a prob_mod variant's forward again into scratch memory for a backward that was not given its
/// saved state (BackwardOptions::probDelta / rowVisible): views[0..3] = O, LSE, probDelta, rowVisible.
/// The lease keeps the memory until the caller has enqueued its kernels.
Workspace::Lease recomputeProbState(const TensorView& q, const TensorView& k, const TensorView& v,
                                    const ScoreMod& scoreMod, const BlockMask& blockMask, const AttentionShape& s,
                                    const BackwardOptions& options, CUcontext context, CUstream stream,
                                    TensorView (&views)[4]) {
  const std::vector<int64_t> rows{s.B, s.Hq, s.Lq}, rowsDv{s.B, s.Hq, s.Lq, s.Dv};
  const size_t outBytes = workspaceAlign(static_cast<size_t>(s.B * s.Hq * s.Lq * s.Dv) * dtypeSize(q.dtype));
  const size_t rowBytes = workspaceAlign(static_cast<size_t>(s.B * s.Hq * s.Lq) * kFloatBytes);
  Workspace::Lease lease = Workspace::recompute().acquire(context, stream, 2 * outBytes + 2 * rowBytes);
  char* base = reinterpret_cast<char*>(lease.base);
  views[0] = TensorView(base, q.dtype, q.device, rowsDv);
  views[1] = TensorView(base + outBytes, DType::F32, q.device, rows);
  views[2] = TensorView(base + outBytes + rowBytes, q.dtype, q.device, rowsDv);
  views[3] = TensorView(base + 2 * outBytes + rowBytes, DType::I32, q.device, rows);
  AttentionOptions forward = options;
  forward.compileBackwardAhead = false;
  forward.returnMaxScores = false;
  gpuForward(q, k, v, scoreMod, blockMask, s, ForwardOutputs{views[0], views[1], nullptr, &views[2], &views[3]},
             forward);
  return lease;
}

}  // namespace

BwdKernelConfig backwardConfigFor(DType dtype, const AttentionShape& s, const DeviceInfo& info,
                                  const BlockMask& blockMask, bool deterministic, const Variant& variant,
                                  bool tmaDescribable, bool driverHasTensorMaps) {
  BackwardProblem problem;
  static_cast<KernelProblem&>(problem) = kernelProblem(dtype, s, info, blockMask);
  problem.deterministic = deterministic;
  problem.tmaDescribable = tmaDescribable;
  problem.driverHasTensorMaps = driverHasTensorMaps;
  problem.gradSites = variant.gradSites;
  problem.gradSitesMixQAndKv = variant.gradSitesMixQAndKv;
  problem.accumRows = s.B * s.Hq * bwdPaddedLenQ(static_cast<int>(s.Lq));
  if (planSm90Backward(problem)) {
    BwdKernelConfig config = defaultSm90BwdConfig(dtype, problem.headDim, problem.headDimV, info.computeMajor,
                                                  info.computeMinor, deterministic);
    config.sinkGrads = variant.facts.sinkHasTensorGrads;
    const BwdKernelConfig defaults = config;
    applyBwdOverrides(config);
    if (!(config == defaults)) requireOverridesRun(config, blockMask);
    requireBwdSupported(config, blockMask.blockQ, blockMask.blockKV);
    return config;
  }
  BwdKernelConfig config =
      defaultBwdConfig(dtype, static_cast<int>(s.D), static_cast<int>(s.Dv), info.computeMajor, info.computeMinor,
                       blockMask.blockQ, blockMask.blockKV, deterministic, variant.gradSites);
  // Windows only where a site's index mixes q and kv (relative bias: 4 -> 70 TFLOP/s on H100). Sites indexed
  // by q alone or kv alone (gated decay's G[q], G[kv]) send the lanes of an mma row or column to one shared
  // element, whose float atomics are compare-and-swap loops: 48 -> 28 TFLOP/s, so they keep global atomics
  // (an override gradWindows=N still turns windows on).
  if (!variant.gradSitesMixQAndKv) config.gradWindows = 0;
  config.sinkGrads = variant.facts.sinkHasTensorGrads;
  const BwdKernelConfig defaults = config;
  applyBwdOverrides(config);
  // An override may ask for fewer windows (0: global atomics only, as before windows), never for more
  // than the variant has sites.
  config.gradWindows = std::min(config.gradWindows, variant.gradSites);
  if (config.gradWindows == 0 || config.gradWindowFloats <= 0) config.gradWindows = config.gradWindowFloats = 0;
  if (!(config == defaults)) requireOverridesRun(config, blockMask);
  requireBwdSupported(config, blockMask.blockQ, blockMask.blockKV);
  return config;
}

void gpuBackward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                 const TensorView& lse, const TensorView& dout, const ScoreMod& scoreMod, const BlockMask& blockMask,
                 const AttentionShape& s, const TensorView& dq, const TensorView& dk, const TensorView& dv,
                 const std::vector<TensorView>& captureGrads, const BackwardOptions& options) {
  for (auto [t, name] : {std::pair{&q, "query"}, {&k, "key"}, {&v, "value"}, {&out, "out"}, {&dout, "grad_out"},
                         {&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}})
    checkKernelLayout(*t, "flex_attention_backward", name);
  ScopedContext context(q.device.index);
  const DeviceInfo& info = cachedDeviceInfo(q.device.index);
  MaskMod mask = blockMask.mask ? *blockMask.mask : MaskMod::noop();
  const ExtraHooks extra = options.extraHooks();
  std::shared_ptr<const Variant> variant = cachedVariant(scoreMod, mask, /*withGradient=*/true, extra);
  const bool tma = tmaDescribable(q) && tmaDescribable(k) && tmaDescribable(v) && tmaDescribable(dout) &&
                   tmaDescribable(dk) && tmaDescribable(dv);
  BwdKernelConfig config = backwardConfigFor(q.dtype, s, info, blockMask, options.deterministic, *variant, tma,
                                             CudaDriver::get().hasTensorMaps());
  const std::string tag = variantTag(scoreMod, mask);
  const CompiledKernel& aux = backwardKernel(nullptr, config, BwdKernelKind::Aux, tag);
  const CompiledKernel& main = backwardKernel(variant.get(), config, BwdKernelKind::DkDv, tag);
  const CompiledKernel* dqKernel =
      config.atomicDq ? nullptr : &backwardKernel(variant.get(), config, BwdKernelKind::Dq, tag);

  CUstream stream = static_cast<CUstream>(options.stream);
  // A prob_mod's backward reads the forward's delta weights instead of O (the preprocess's
  // rowsum(dO * probDelta) is D' = sum_j p g'(p) dP) and, when its prob_mod reads num_visible, the counts.
  Workspace::Lease recomputed;
  TensorView recomputedViews[4];
  const TensorView* probDelta = options.probDelta;
  const TensorView* rowVisible = options.rowVisible;
  if (extra.prob && (!probDelta || (variant->facts.probReadsVisible && !rowVisible))) {
    recomputed = recomputeProbState(q, k, v, scoreMod, blockMask, s, options, context.context(), stream,
                                    recomputedViews);
    probDelta = &recomputedViews[2];
    rowVisible = &recomputedViews[3];
  }

  fjk::BwdParams p{};
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.o = probDelta ? probDelta->data : out.data;
  p.dout = dout.data;
  p.lse = static_cast<const float*>(lse.data);
  if (options.dlse) {
    p.dlse = static_cast<const float*>(options.dlse->data);
    const auto& st = options.dlse->strides;
    p.dlse_stride = fjk::BhlStrides{st[0], st[1], st[2]};
  }
  p.dq = dq.data;
  p.dk = dk.data;
  p.dv = dv.data;
  p.q_stride = bhlStrides(q);
  p.k_stride = bhlStrides(k);
  p.v_stride = bhlStrides(v);
  p.o_stride = bhlStrides(probDelta ? *probDelta : out);
  p.row_visible = rowVisible ? static_cast<const int*>(rowVisible->data) : nullptr;
  p.do_stride = bhlStrides(dout);
  p.dq_stride = bhlStrides(dq);
  p.dk_stride = bhlStrides(dk);
  p.dv_stride = bhlStrides(dv);
  setProblemSizes(p, s, blockMask, lse);
  p.len_q_pad = bwdPaddedLenQ(p.len_q);
  p.kv_partial = kernelBlockList(blockMask.kvNumBlocks, blockMask.kvIndices);
  p.kv_full = kernelBlockList(blockMask.fullKvNumBlocks, blockMask.fullKvIndices);
  p.q_partial = kernelBlockList(blockMask.qNumBlocks, blockMask.qIndices);
  p.q_full = kernelBlockList(blockMask.fullQNumBlocks, blockMask.fullQIndices);
  const CaptureLayout layout = captureLayout(scoreMod, mask, extra);
  p.cap = packCaptures(layout, q.device, "flex_attention_backward");
  p.grads = gradArgs(scoreMod, extra, layout, captureGrads);

  // Workspace: LSE2 and Delta [B, Hq, len_q_pad], then (atomic mode) the dQ accumulator [.., D].
  const size_t rows = static_cast<size_t>(s.B) * static_cast<size_t>(s.Hq) * static_cast<size_t>(p.len_q_pad);
  const size_t statBytes = workspaceAlign(rows * kFloatBytes);
  const size_t accumElems = config.atomicDq ? rows * static_cast<size_t>(s.D) : 0;
  const size_t bytes = 2 * statBytes + accumElems * kFloatBytes;
  // With no query rows (bytes == 0) nothing reads the workspace, but dK / dV must still be written (zeros).
  Workspace::Lease ws = bytes > 0 ? Workspace::backward().acquire(context.context(), stream, bytes) : Workspace::Lease{};
  if (bytes > 0) {
    p.lse2 = reinterpret_cast<float*>(ws.base);
    p.delta = reinterpret_cast<float*>(ws.base + statBytes);
  }
  if (config.atomicDq && accumElems > 0) {
    p.dq_accum = reinterpret_cast<float*>(ws.base + 2 * statBytes);
    CudaDriver::get().memsetD32Async(ws.base + 2 * statBytes, 0u, accumElems, stream);
  }

  launch(aux, kBwdPreprocessKernelName, bwdPreprocessLaunch(p.batch, p.heads_q, p.len_q), stream, p);
  // The sink's gradient needs Delta (the preprocess) and nothing the other kernels write.
  if (config.sinkGrads) launch(main, kBwdSinkKernelName, bwdSinkLaunch(p.batch, p.heads_q, p.len_q), stream, p);
  if (config.family == KernelFamily::Sm90) {
    fjk::Sm90BwdParams P{};
    P.p = p;
    const CudaDriver& driver = CudaDriver::get();
    driver.check(encodeSm90BwdMaps(driver.api().cuTensorMapEncodeTiled, P, config), "cuTensorMapEncodeTiled");
    launch(main, kBwdDkDvKernelName, bwdDkDvLaunch(config, p.batch, p.heads_kv, p.len_kv), stream, P);
  } else {
    launch(main, kBwdDkDvKernelName, bwdDkDvLaunch(config, p.batch, p.heads_kv, p.len_kv), stream, p);
  }
  if (config.atomicDq) {
    launch(aux, kBwdConvertKernelName, bwdConvertLaunch(p.batch, p.heads_q, p.len_q), stream, p);
  } else {
    launch(*dqKernel, kBwdDqKernelName, bwdDqLaunch(config, p.batch, p.heads_q, p.len_q), stream, p);
  }
}

}  // namespace flexjit
