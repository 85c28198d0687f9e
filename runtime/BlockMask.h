// BlockMask: which (q block, kv block) tiles attention visits, in torch FlexAttention's layout.
//
// For each (b, h, q block) the kv blocks are split into *partial* blocks (kv_num_blocks / kv_indices: the
// kernel evaluates mask_mod element-wise) and *full* blocks (full_kv_num_blocks / full_kv_indices: every
// position kept, mask_mod skipped); blocks in neither list are skipped. The transposed lists (q_num_blocks,
// q_indices, full_q_*) serve the backward pass, which walks q blocks per kv block. Indices are ascending.
//
// A mask that does not read b (or h) is stored once and broadcast: its tensors have size 1 in that
// dimension while `batch` / `heads` keep the sizes it was made for (kernels read it with stride 0).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "dsl/Mods.h"
#include "runtime/Tensor.h"

namespace flexjit {

/// torch's default BLOCK_SIZE.
constexpr int kDefaultMaskBlock = 128;

/// The eight lists of a block mask as views of memory the caller owns, in BlockMask's layout (int32,
/// contiguous): counts [Bs, Hs, nQ] and indices [Bs, Hs, nQ, nKV] for the kv lists, [Bs, Hs, nKV] and
/// [Bs, Hs, nKV, nQ] for the q lists.
struct BlockMaskListViews {
  TensorView kvNum, kvIdx, fullKvNum, fullKvIdx, qNum, qIdx, fullQNum, fullQIdx;
};

/// The end of an asynchronous GPU build (createBlockMask without `wait`): an event recorded on its stream.
class BlockMaskBuildFence;

struct BlockMask {
  int64_t batch = 1, heads = 1;  ///< sizes the mask describes (stored dims may be 1: broadcast)
  int64_t lenQ = 0, lenKV = 0;
  int blockQ = kDefaultMaskBlock, blockKV = kDefaultMaskBlock;
  int64_t numQBlocks = 0, numKVBlocks = 0;
  Tensor kvNumBlocks, kvIndices, fullKvNumBlocks, fullKvIndices;  ///< int32 [Bs, Hs, nQ] / [Bs, Hs, nQ, nKV]
  Tensor qNumBlocks, qIndices, fullQNumBlocks, fullQIndices;      ///< int32 [Bs, Hs, nKV] / [Bs, Hs, nKV, nQ]
  std::optional<MaskMod> mask;  ///< the mask_mod it was made from (absent for fromKvBlocks without one)
  /// Set while the lists may still be being written by a build on another stream: every host read of the
  /// lists here (sparsity, toString, toDense, to, blockClasses) waits for it first, since their copies run
  /// on the legacy default stream, which a non-blocking stream's work does not precede.
  std::shared_ptr<const BlockMaskBuildFence> pendingBuild;
  /// Waits for pendingBuild (nothing when the lists are complete).
  void waitForLists() const;

  Device device() const { return kvNumBlocks.device(); }
  int64_t storedBatch() const { return kvNumBlocks.shape().at(0); }
  int64_t storedHeads() const { return kvNumBlocks.shape().at(1); }
  /// torch's BlockMask.sparsity(): the percentage of [B, H, Lq, Lkv] positions outside the visited blocks,
  /// 100 * (1 - visited blocks * blockQ * blockKV / (B * H * Lq * Lkv)).
  double sparsity() const;
  /// A picture of each (b, h) mask ('█' full, '░' partial, ' ' empty), blocks grouped to fit `maxWidth`.
  std::string toString(int maxWidth = 64, int maxHeads = 4) const;
  /// A copy on another device.
  BlockMask to(Device device) const;
  /// The dense boolean mask [Bs, Hs, Lq, Lkv] this block mask stands for (small sizes only: it evaluates
  /// mask_mod in partial blocks on the CPU; without a mask_mod partial blocks count as kept).
  Tensor toDense() const;

  /// A mask from user-chosen kv blocks (e.g. a top-k block selection), torch's BlockMask.from_kv_blocks.
  /// `kvNum` [B, H, nQ] and `kvIdx` [B, H, nQ, nKV] (int32, on any device) list the partial blocks, the
  /// optional `fullNum` / `fullIdx` the full ones. Lengths default to whole blocks.
  static BlockMask fromKvBlocks(const TensorView& kvNum, const TensorView& kvIdx, const TensorView* fullNum,
                                const TensorView* fullIdx, int blockQ = kDefaultMaskBlock,
                                int blockKV = kDefaultMaskBlock, int64_t lenQ = -1, int64_t lenKV = -1,
                                std::optional<MaskMod> mask = std::nullopt);

  /// A mask over lists built elsewhere (by torch operations on the GPU, which never wait for the host),
  /// neither copied nor read: only dtypes, shapes (Bs in {1, batch}, Hs in {1, heads}, block counts from the
  /// lengths), contiguity and the device are checked, so this never synchronises. The contents must be a valid
  /// mask (counts within the row, indices in range, ascending, no block twice): the kernels read them as they
  /// are. `owner` keeps the lists' memory alive for as long as the mask and its copies live.
  static BlockMask borrowLists(const BlockMaskListViews& lists, int64_t batch, int64_t heads, int64_t lenQ,
                               int64_t lenKV, int blockQ, int blockKV, std::optional<MaskMod> mask,
                               std::shared_ptr<void> owner);
};

/// Builds a block mask for `mask` over [B, H, Lq, Lkv]. On a CUDA device a generated kernel decides each
/// block pair from the mod's interval form (O(1) per block) and evaluates only undecided blocks
/// element-wise; the dense mask is never materialised. On the CPU the same algorithm runs in the
/// interpreter. Captured tensors of the mask must be on `device`.
///
/// On a GPU the kernels run on `stream` (a CUstream; nullptr is the legacy default stream). With `wait` the
/// call returns once the lists are complete; without, it returns at once and the lists are ready for work
/// enqueued after it on `stream` (or on a stream that waits for it), torch's behaviour, so that building a
/// mask never waits for the host (the Python API). The lists live in flexjit's own allocation, which is
/// not stream-ordered: build masks outside a CUDA-graph capture.
BlockMask createBlockMask(const MaskMod& mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv,
                          Device device = Device::cpu(), int blockQ = kDefaultMaskBlock,
                          int blockKV = kDefaultMaskBlock, void* stream = nullptr, bool wait = true);

/// The oracle: classifies every block by evaluating mask_mod at every position (CPU; small sizes).
BlockMask createBlockMaskReference(const MaskMod& mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv,
                                   int blockQ = kDefaultMaskBlock, int blockKV = kDefaultMaskBlock);

/// A mask that keeps everything (no mask_mod): all blocks full, broadcast over B and H.
BlockMask fullBlockMask(int64_t Lq, int64_t Lkv, Device device, int blockQ = kDefaultMaskBlock,
                        int blockKV = kDefaultMaskBlock);

/// Whether a mask reads b / h (if not, its block mask is stored once and broadcast).
bool maskReadsParam(const MaskMod& mask, Param p);

}  // namespace flexjit
