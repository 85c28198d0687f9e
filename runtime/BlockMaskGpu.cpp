// The GPU block-mask builder: compiles codegen/templates/block_mask.cuh for the mask (cached) and runs
// its three kernels (classify, rows, cols).
#include <fmt/format.h>

#include "codegen/Variant.h"
#include "codegen/templates/block_mask_params.h"
#include "runtime/BlockMaskBuild.h"
#include "runtime/Captures.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"
#include "runtime/KernelCache.h"
#include "runtime/Module.h"

namespace flexjit {

namespace {

using fjk::BlockMaskParams;

constexpr unsigned kCompactThreads = 256;   // 8 warps, one line each
constexpr unsigned kLinesPerBlock = kCompactThreads / 32;
constexpr unsigned kMaxGridYZ = 65535;

int* ints(const Tensor& t) { return static_cast<int*>(t.data()); }

void launch(const CompiledKernel& kernel, const char* fn, Dim3 grid, Dim3 block, BlockMaskParams& p, CUstream stream) {
  LoadedKernel k = ModuleCache::global().load(kernel, 0, fn);
  void* args[] = {&p};
  CudaDriver::get().launchKernel(k.function, grid, block, 0, stream, args);
}

}  // namespace

BlockMask buildBlockMaskOnGpu(const MaskMod& mask, const BlockMaskShape& s, Device device, void* streamHandle,
                              bool wait) {
  CUstream stream = static_cast<CUstream>(streamHandle);
  if (s.storedB > kMaxGridYZ || s.storedH > kMaxGridYZ)
    throw Error(fmt::format("create_block_mask: at most {} batches and heads per mask on the GPU", kMaxGridYZ));
  ScopedContext context(device.index);
  DeviceInfo info = deviceInfo(device.index);
  std::shared_ptr<const Variant> variant = cachedVariant(ScoreMod::noop(), mask, /*withGradient=*/false);
  const CompiledKernel& kernel = KernelCache::global().getOrCompile(
      KernelRequest{blockMaskSource(*variant), "flexjit_block_mask", CompileOptions{info.arch, {}, false}});

  BlockMask m = blockMaskWithShape(s);
  // One allocation and one memset for all eight index tensors and the scratch classes: the builder's
  // cost at long sequences is dominated by allocation and memory traffic, not by the kernels.
  const int64_t rows = s.storedB * s.storedH;
  std::vector<int64_t> rowShape{s.storedB, s.storedH, s.numQ}, rowIdx{s.storedB, s.storedH, s.numQ, s.numKV};
  std::vector<int64_t> colShape{s.storedB, s.storedH, s.numKV}, colIdx{s.storedB, s.storedH, s.numKV, s.numQ};
  const size_t countBytes = static_cast<size_t>(rows * (s.numQ + s.numKV) * 2) * sizeof(int32_t);
  const size_t indexBytes = static_cast<size_t>(rows * s.numQ * s.numKV * 4) * sizeof(int32_t);
  const size_t classBytes = static_cast<size_t>(rows * s.numQ * s.numKV);
  Tensor arena = Tensor::empty(DType::Bool, {static_cast<int64_t>(countBytes + indexBytes + classBytes)}, device);
  CudaDriver::get().memsetD8Async(reinterpret_cast<CUdeviceptr>(arena.data()), 0, countBytes + indexBytes, stream);
  size_t at = 0;
  auto take = [&](std::vector<int64_t> shape) {
    Tensor t = Tensor::viewInto(arena, at, DType::I32, std::move(shape));
    at += t.bytes();
    return t;
  };
  m.kvNumBlocks = take(rowShape);
  m.fullKvNumBlocks = take(rowShape);
  m.qNumBlocks = take(colShape);
  m.fullQNumBlocks = take(colShape);
  m.kvIndices = take(rowIdx);
  m.fullKvIndices = take(rowIdx);
  m.qIndices = take(colIdx);
  m.fullQIndices = take(colIdx);
  Tensor classes = Tensor::viewInto(arena, at, DType::Bool, rowIdx);

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
         Dim3{static_cast<unsigned>(fjk::kClassifyThreads), 1, 1}, p, stream);
  auto linesGrid = [](int64_t lines) { return Dim3{static_cast<unsigned>((lines + kLinesPerBlock - 1) / kLinesPerBlock), 1, 1}; };
  launch(kernel, "flexjit_block_mask_rows", linesGrid(s.storedB * s.storedH * s.numQ), Dim3{kCompactThreads, 1, 1}, p,
         stream);
  launch(kernel, "flexjit_block_mask_cols", linesGrid(s.storedB * s.storedH * s.numKV), Dim3{kCompactThreads, 1, 1}, p,
         stream);
  // Without `wait` the arena's lifetime needs no care: it is freed with cuMemFree, which waits for the
  // device's pending work. The captured tensors' packed table (p.cap) is passed by value in the launch.
  if (wait)
    CudaDriver::get().streamSynchronize(stream);
  else
    m.pendingBuild = std::make_shared<const BlockMaskBuildFence>(device.index, stream);
  return m;
}

}  // namespace flexjit
