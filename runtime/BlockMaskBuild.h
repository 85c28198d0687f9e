// Internals shared by the block-mask builders (CPU, GPU, from_kv_blocks).
#pragma once

#include <cuda.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "codegen/templates/block_mask_params.h"
#include "runtime/BlockMask.h"

namespace flexjit {

/// Block classes, as stored by the builders (and by the GPU classify kernel).
using fjk::kBlockEmpty;
using fjk::kBlockFull;
using fjk::kBlockPartial;

/// Sizes of a block mask; stored dims are 1 where the mask does not read b / h.
struct BlockMaskShape {
  int64_t batch = 1, heads = 1, storedB = 1, storedH = 1;
  int64_t lenQ = 0, lenKV = 0;
  int blockQ = kDefaultMaskBlock, blockKV = kDefaultMaskBlock;
  int64_t numQ = 0, numKV = 0;
};

/// Validates sizes and works out the block counts (mask may be null: then nothing is broadcast-detected).
BlockMaskShape blockMaskShape(const MaskMod* mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int blockQ,
                              int blockKV);
/// An event recorded on a build's stream, destroyed with the last mask that shares it.
class BlockMaskBuildFence {
 public:
  BlockMaskBuildFence(int deviceOrdinal, CUstream stream);
  ~BlockMaskBuildFence();
  BlockMaskBuildFence(const BlockMaskBuildFence&) = delete;
  BlockMaskBuildFence& operator=(const BlockMaskBuildFence&) = delete;
  void wait() const;

 private:
  int device_;
  CUevent event_ = nullptr;
};

/// A BlockMask with the sizes of `shape` and no tensors yet.
BlockMask blockMaskWithShape(const BlockMaskShape& shape);
/// Builds all eight index tensors from per-block classes [storedB, storedH, nQ, nKV] (host).
BlockMask blockMaskFromClasses(const std::vector<uint8_t>& classes, const BlockMaskShape& shape, Device device);
/// The per-block classes of a block mask (host copy).
std::vector<uint8_t> blockClasses(const BlockMask& mask);
/// The GPU builder (BlockMaskGpu.cpp), on `stream`, waiting for it when `wait` (createBlockMask).
BlockMask buildBlockMaskOnGpu(const MaskMod& mask, const BlockMaskShape& shape, Device device, void* stream,
                              bool wait);
/// from_kv_blocks: validates the user's lists (BlockMaskFromKv.cpp).
BlockMask blockMaskFromKvLists(const TensorView& kvNum, const TensorView& kvIdx, const TensorView* fullNum,
                               const TensorView* fullIdx, int blockQ, int blockKV, int64_t lenQ, int64_t lenKV,
                               std::optional<MaskMod> mask);

}  // namespace flexjit
