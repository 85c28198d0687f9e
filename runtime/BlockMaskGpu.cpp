// The GPU block-mask builder: compiles codegen/templates/block_mask.cuh for the mask (cached) and runs
// its three kernels (classify, rows, cols).
#include <fmt/format.h>

#include "codegen/Variant.h"
#include "runtime/BlockMaskBuild.h"
#include "runtime/Captures.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/KernelCache.h"
#include "runtime/Module.h"

namespace flexjit {

namespace {

/// Mirrors fjk::BlockMaskParams in codegen/templates/block_mask.cuh.
struct BlockMaskParams {
  int batch, heads, len_q, len_kv, block_q, block_kv, num_q, num_kv;
  unsigned char* classes;
  int *kv_num, *kv_idx, *full_kv_num, *full_kv_idx, *q_num, *q_idx, *full_q_num, *full_q_idx;
  fj::CaptureArgs cap;
};

constexpr unsigned kClassifyThreads = 256;  // fjk::kClassifyThreads
constexpr unsigned kCompactThreads = 256;   // 8 warps, one line each
constexpr unsigned kLinesPerBlock = kCompactThreads / 32;
constexpr unsigned kMaxGridYZ = 65535;

int* ints(const Tensor& t) { return static_cast<int*>(t.data()); }

void launch(const CompiledKernel& kernel, const char* fn, Dim3 grid, Dim3 block, BlockMaskParams& p) {
  LoadedKernel k = ModuleCache::global().load(kernel, 0, fn);
  void* args[] = {&p};
  CudaDriver::get().launchKernel(k.function, grid, block, 0, nullptr, args);
}

}  // namespace

BlockMask buildBlockMaskOnGpu(const MaskMod& mask, const BlockMaskShape& s, Device device) {
  if (s.storedB > kMaxGridYZ || s.storedH > kMaxGridYZ)
    throw Error(fmt::format("create_block_mask: at most {} batches and heads per mask on the GPU", kMaxGridYZ));
  ScopedContext context(device.index);
  DeviceInfo info = deviceInfo(device.index);
  std::shared_ptr<const Variant> variant = cachedVariant(ScoreMod::noop(), mask, /*withGradient=*/false);
  const CompiledKernel& kernel = KernelCache::global().getOrCompile(
      KernelRequest{blockMaskSource(*variant), "flexjit_block_mask", CompileOptions{info.arch, {}, false}});

  BlockMask m;
  m.batch = s.batch;
  m.heads = s.heads;
  m.lenQ = s.lenQ;
  m.lenKV = s.lenKV;
  m.blockQ = s.blockQ;
  m.blockKV = s.blockKV;
  m.numQBlocks = s.numQ;
  m.numKVBlocks = s.numKV;
  std::vector<int64_t> rowShape{s.storedB, s.storedH, s.numQ}, rowIdx{s.storedB, s.storedH, s.numQ, s.numKV};
  std::vector<int64_t> colShape{s.storedB, s.storedH, s.numKV}, colIdx{s.storedB, s.storedH, s.numKV, s.numQ};
  m.kvNumBlocks = Tensor::empty(DType::I32, rowShape, device);
  m.fullKvNumBlocks = Tensor::empty(DType::I32, rowShape, device);
  m.qNumBlocks = Tensor::empty(DType::I32, colShape, device);
  m.fullQNumBlocks = Tensor::empty(DType::I32, colShape, device);
  m.kvIndices = Tensor::zeros(DType::I32, rowIdx, device);
  m.fullKvIndices = Tensor::zeros(DType::I32, rowIdx, device);
  m.qIndices = Tensor::zeros(DType::I32, colIdx, device);
  m.fullQIndices = Tensor::zeros(DType::I32, colIdx, device);
  Tensor classes = Tensor::empty(DType::Bool, rowIdx, device);

  BlockMaskParams p{};
  p.batch = static_cast<int>(s.storedB);
  p.heads = static_cast<int>(s.storedH);
  p.len_q = static_cast<int>(s.lenQ);
  p.len_kv = static_cast<int>(s.lenKV);
  p.block_q = s.blockQ;
  p.block_kv = s.blockKV;
  p.num_q = static_cast<int>(s.numQ);
  p.num_kv = static_cast<int>(s.numKV);
  p.classes = static_cast<unsigned char*>(classes.data());
  p.kv_num = ints(m.kvNumBlocks);
  p.kv_idx = ints(m.kvIndices);
  p.full_kv_num = ints(m.fullKvNumBlocks);
  p.full_kv_idx = ints(m.fullKvIndices);
  p.q_num = ints(m.qNumBlocks);
  p.q_idx = ints(m.qIndices);
  p.full_q_num = ints(m.fullQNumBlocks);
  p.full_q_idx = ints(m.fullQIndices);
  p.cap = packCaptures(captureLayout(ScoreMod::noop(), mask), device, "create_block_mask");

  launch(kernel, "flexjit_block_mask_classify",
         Dim3{static_cast<unsigned>(s.numQ), static_cast<unsigned>(s.storedH), static_cast<unsigned>(s.storedB)},
         Dim3{kClassifyThreads, 1, 1}, p);
  auto linesGrid = [](int64_t lines) { return Dim3{static_cast<unsigned>((lines + kLinesPerBlock - 1) / kLinesPerBlock), 1, 1}; };
  launch(kernel, "flexjit_block_mask_rows", linesGrid(s.storedB * s.storedH * s.numQ), Dim3{kCompactThreads, 1, 1}, p);
  launch(kernel, "flexjit_block_mask_cols", linesGrid(s.storedB * s.storedH * s.numKV), Dim3{kCompactThreads, 1, 1}, p);
  CudaDriver::get().streamSynchronize(nullptr);  // before `classes` is freed
  return m;
}

}  // namespace flexjit
