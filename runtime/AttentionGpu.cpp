// The GPU forward: validates what the kernel needs beyond the API checks (alignment), fills
// fjk::FwdParams and launches the generated kernel.
#include <fmt/format.h>

#include <map>
#include <mutex>

#include "codegen/AttentionConfig.h"
#include "codegen/templates/common/attention_params.h"
#include "codegen/templates/decode/decode_params.h"
#include "codegen/templates/sm90/fwd_params.h"
#include "runtime/AttentionGpu.h"
#include "runtime/Captures.h"
#include "runtime/CudaDriver.h"
#include "runtime/KernelArgs.h"
#include "runtime/KernelBuild.h"
#include "runtime/Module.h"
#include "runtime/Planner.h"
#include "runtime/TmaMaps.h"
#include "runtime/Workspace.h"

namespace flexjit {

const BlockMask& fullMaskFor(int64_t Lq, int64_t Lkv, Device device) {
  static std::mutex mutex;
  static std::map<std::tuple<int64_t, int64_t, int>, BlockMask> masks;
  std::lock_guard<std::mutex> lock(mutex);
  auto key = std::make_tuple(Lq, Lkv, device.index);
  auto it = masks.find(key);
  if (it == masks.end()) it = masks.emplace(key, fullBlockMask(Lq, Lkv, device)).first;
  return it->second;
}

KernelProblem kernelProblem(DType dtype, const AttentionShape& s, const DeviceInfo& info, const BlockMask& blockMask) {
  KernelProblem p;
  p.dtype = dtype;
  p.headDim = static_cast<int>(s.D);
  p.headDimV = static_cast<int>(s.Dv);
  p.archMajor = info.computeMajor;
  p.archMinor = info.computeMinor;
  p.maskBlockQ = blockMask.blockQ;
  p.maskBlockKV = blockMask.blockKV;
  return p;
}

bool tmaDescribable(const TensorView& t) {
  return tmaDescribable(t.data, bhlStrides(t), static_cast<int>(t.shape[0]), static_cast<int>(t.shape[1]),
                        static_cast<int>(t.shape[2]), static_cast<int>(t.shape[3]));
}

namespace {

/// The planner's view of a forward call on this device.
ForwardProblem forwardProblem(const TensorView& q, const TensorView& k, const TensorView& v,
                              const ForwardOutputs& outputs, const AttentionShape& s, const DeviceInfo& info,
                              const BlockMask& blockMask, const Variant& variant, const AttentionOptions& options) {
  const TensorView& out = outputs.out;
  ForwardProblem fp;
  static_cast<KernelProblem&>(fp) = kernelProblem(q.dtype, s, info, blockMask);
  // The delta-weights pass of a prob_mod stores its output through the same kind of map as O.
  fp.tmaDescribable = tmaDescribable(q) && tmaDescribable(k) && tmaDescribable(v) && tmaDescribable(out) &&
                      (!outputs.probDelta || tmaDescribable(*outputs.probDelta));

  fp.driverHasTensorMaps = CudaDriver::get().hasTensorMaps();
  describeVariant(fp, variant);
  fp.batch = static_cast<int>(s.B);
  fp.headsQ = static_cast<int>(s.Hq);
  fp.headsKV = static_cast<int>(s.Hkv);
  fp.lenQ = static_cast<int>(s.Lq);
  fp.lenKV = static_cast<int>(s.Lkv);
  fp.smCount = info.smCount;
  fp.maskSameForEveryHead = blockMask.storedHeads() == 1 &&
                            (!blockMask.fullKvNumBlocks.defined() || blockMask.fullKvNumBlocks.shape().at(1) == 1);
  fp.pageSize = options.paged ? static_cast<int>(options.paged->pageSize) : 0;
  fp.kvLengths = options.kvLengths.has_value();
  fp.probDelta = outputs.probDelta != nullptr;
  return fp;
}

/// Launches entry point `name` of a forward program: the sm90 family's with the TMA maps encoded over the
/// tensors of p, the sm80 family's with p alone.
void launchPass(const CompiledKernel& kernel, const char* name, const FwdKernelConfig& config, const fjk::FwdParams& p,
                const FwdLaunch& launch, CUstream stream) {
  LoadedKernel fn = ModuleCache::global().load(kernel, launch.sharedMemoryBytes, name);
  const CudaDriver& driver = CudaDriver::get();
  const Dim3 grid{launch.grid[0], launch.grid[1], launch.grid[2]}, block{launch.block[0], launch.block[1], launch.block[2]};
  if (config.family == KernelFamily::Sm90) {
    fjk::Sm90FwdParams P{};
    P.p = p;
    driver.check(encodeSm90FwdMaps(driver.api().cuTensorMapEncodeTiled, P, config), "cuTensorMapEncodeTiled");
    void* args[] = {&P};
    driver.launchKernel(fn.function, grid, block, static_cast<unsigned>(launch.sharedMemoryBytes), stream, args);
    return;
  }
  fjk::FwdParams copy = p;
  void* args[] = {&copy};
  driver.launchKernel(fn.function, grid, block, static_cast<unsigned>(launch.sharedMemoryBytes), stream, args);
}

/// A prob_mod variant's forward (codegen/templates/common/prob_pass.cuh): the statistics pass (LSE, max
/// scores, num_visible), the apply pass (O) and, when the backward's state is wanted, the delta-weights
/// pass into outputs.probDelta. Without a rowVisible output the counts go to scratch memory.
void launchProbPasses(const CompiledKernel& kernel, const FwdKernelConfig& config, fjk::FwdParams p,
                      const ForwardOutputs& outputs, const FwdLaunch& launch, bool readsVisible, CUstream stream,
                      CUcontext context) {
  const size_t visibleBytes = static_cast<size_t>(p.batch) * p.heads_q * p.len_q * sizeof(int);
  Workspace::Lease scratch = readsVisible && !outputs.rowVisible
                                 ? Workspace::forward().acquire(context, stream, visibleBytes)
                                 : Workspace::Lease{};
  p.row_visible = outputs.rowVisible ? static_cast<int*>(outputs.rowVisible->data) : reinterpret_cast<int*>(scratch.base);
  if (!readsVisible && outputs.rowVisible) {
    // The prob_mod never reads the counts, so no pass writes them; the output still gets them for the
    // record (the backward of this variant does not read them either).
    fillWords(*outputs.rowVisible, 0, stream, "flex_attention: row_visible");
  }
  launchPass(kernel, kFwdKernelName, config, p, launch, stream);
  launchPass(kernel, kFwdApplyKernelName, config, p, launch, stream);
  if (!outputs.probDelta) return;
  p.o = outputs.probDelta->data;
  p.o_stride = bhlStrides(*outputs.probDelta);
  launchPass(kernel, kFwdDeltaKernelName, config, p, launch, stream);
}

/// The decode family (codegen/templates/decode/attention_decode.cuh): the split kernel writes each (row,
/// split)'s float32 O, LSE and max score into the forward workspace, the combine kernel merges the splits
/// into O, LSE and max scores. Two launches on one stream, no host synchronisation.
void launchDecode(const CompiledKernel& kernel, const FwdKernelConfig& config, const fjk::FwdParams& p,
                  int packHeads, int smCount, const AttentionShape& s, const AttentionOptions& options,
                  CUstream stream, CUcontext context) {
  const DecodeLaunch l = decodeLaunch(config, p.batch, p.heads_q, packHeads, p.len_q, p.len_kv, smCount);
  const size_t slots = static_cast<size_t>(p.batch) * p.heads_q * p.len_q * l.splits;
  const size_t oBytes = workspaceAlign(slots * config.headDimV * sizeof(float));
  const size_t lseBytes = workspaceAlign(slots * sizeof(float));
  const size_t maxBytes = p.max_score ? lseBytes : 0;
  Workspace::Lease ws = Workspace::forward().acquire(context, stream, oBytes + lseBytes + maxBytes);
  fjk::DecodeParams P{};
  P.p = p;
  P.pack_heads = l.packHeads;
  P.row_groups = l.rowGroups;
  P.splits = l.splits;
  P.part_o = reinterpret_cast<float*>(ws.base);
  P.part_lse = reinterpret_cast<float*>(ws.base + oBytes);
  P.part_max = p.max_score ? reinterpret_cast<float*>(ws.base + oBytes + lseBytes) : nullptr;
  if (options.paged) {
    const TensorView& t = options.paged->pageTable;
    P.page_table = static_cast<const int*>(t.data);
    P.page_table_stride_b = t.strides[0];
    P.page_table_stride_j = t.strides[1];
    P.page_size = static_cast<int>(options.paged->pageSize);
    P.num_pages = static_cast<int>(s.numPages);
    // Every sequence reads the one pool: its batch index is 0.
    P.p.k_stride.b = P.p.v_stride.b = 0;
  }
  if (options.kvLengths) {
    P.kv_lengths = static_cast<const int*>(options.kvLengths->data);
    P.kv_lengths_stride = options.kvLengths->strides[0];
  }
  const CudaDriver& driver = CudaDriver::get();
  const Dim3 block{l.block[0], l.block[1], l.block[2]};
  void* args[] = {&P};
  LoadedKernel split = ModuleCache::global().load(kernel, l.sharedMemoryBytes, kFwdKernelName);
  driver.launchKernel(split.function, Dim3{l.grid[0], l.grid[1], l.grid[2]}, block,
                      static_cast<unsigned>(l.sharedMemoryBytes), stream, args);
  LoadedKernel combine = ModuleCache::global().load(kernel, 0, kDecodeCombineKernelName);
  driver.launchKernel(combine.function, Dim3{l.combineGrid, 1, 1}, block, 0, stream, args);
}

}  // namespace

void gpuForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                const BlockMask& blockMask, const AttentionShape& s, const ForwardOutputs& outputs,
                const AttentionOptions& options) {
  const TensorView& out = outputs.out;
  const TensorView& lse = outputs.lse;
  const ExtraHooks extra = options.extraHooks();
  for (auto [t, name] : {std::pair{&q, "query"}, {&k, "key"}, {&v, "value"}, {&out, "out"}}) checkKernelLayout(*t, "flex_attention", name);
  ScopedContext context(q.device.index);
  const DeviceInfo& info = cachedDeviceInfo(q.device.index);
  MaskMod mask = blockMask.mask ? *blockMask.mask : MaskMod::noop();
  std::shared_ptr<const Variant> variant = cachedVariant(scoreMod, mask, /*withGradient=*/false, extra);
  const ForwardPlan plan = planForward(forwardProblem(q, k, v, outputs, s, info, blockMask, *variant, options));
  if (options.compileBackwardAhead)  // before the forward's own compile, so the two run side by side
    compileBackwardAhead(scoreMod, mask, q.dtype, s, info, blockMask, extra);
  ForwardBuild build = forwardKernel(*variant, plan.config, variantTag(scoreMod, mask));
  const FwdKernelConfig& config = build.config;

  fjk::FwdParams p{};
  p.q = q.data;
  p.k = k.data;
  p.v = v.data;
  p.o = out.data;
  p.lse = static_cast<float*>(lse.data);
  if (outputs.maxScores) {
    p.max_score = static_cast<float*>(outputs.maxScores->data);
    const auto& st = outputs.maxScores->strides;
    p.max_score_stride = fjk::BhlStrides{st[0], st[1], st[2]};
  }
  p.q_stride = bhlStrides(q);
  p.k_stride = bhlStrides(k);
  p.v_stride = bhlStrides(v);
  p.o_stride = bhlStrides(out);
  setProblemSizes(p, s, blockMask, lse);
  p.partial = kernelBlockList(blockMask.kvNumBlocks, blockMask.kvIndices);
  p.full = kernelBlockList(blockMask.fullKvNumBlocks, blockMask.fullKvIndices);
  p.cap = packCaptures(captureLayout(scoreMod, mask, extra), q.device, "flex_attention");

  const CUstream stream = static_cast<CUstream>(options.stream);
  if (config.family == KernelFamily::Decode) {
    if (p.batch == 0 || p.heads_q == 0 || p.len_q == 0) return;
    return launchDecode(*build.kernel, config, p, plan.decodePackHeads, info.smCount, s, options, stream,
                        context.context());
  }
  FwdLaunch launch = fwdLaunch(config, p.batch, p.heads_q, p.len_q);
  if (launch.grid[0] == 0 || launch.grid[1] == 0 || launch.grid[2] == 0) return;
  p.sched_heads = launch.scheduleHeads;
  if (config.probPasses)
    return launchProbPasses(*build.kernel, config, p, outputs, launch, variant->facts.probReadsVisible, stream,
                            context.context());
  launchPass(*build.kernel, kFwdKernelName, config, p, launch, stream);
}

}  // namespace flexjit
