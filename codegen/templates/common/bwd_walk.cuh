// The block-sparse walk of the backward kernels, shared by every family: BlockWalk steps through the
// tiles a BlockMask's lists give one kv block (the transposed lists: dK/dV kernels) or one q block (the
// forward lists: the deterministic dQ kernel), per query head of a GQA group, partial blocks first.
#pragma once

#include "codegen/templates/common/attention_bwd_params.h"

namespace fjk {

/// One tile of a block-sparse walk.
struct BwdTile {
  int h;        ///< query head; -1 once the walk is over
  int start;    ///< first q row (dK/dV kernel) or kv row (dQ kernel) of the tile
  int partial;  ///< 1 when the tile lies in a partial mask block: mask_mod applies
};

/// Walks the tiles of one BlockMask row (a q block's kv list, or a kv block's transposed q list) for the
/// query heads [h, h_end): per head its partial blocks, then its full ones; each mask block of
/// `mask_block` positions expands into mask_block / tile tiles, and tiles starting at or past the
/// sequence length are dropped (the last mask block may stick out of the sequence).
struct BlockWalk {
  const int* partial_idx;
  const int* full_idx;
  long long partial_step;
  long long full_step;
  int h;          ///< head whose lists are being walked (h_begin - 1 before the first call)
  int h_end;
  int entry;      ///< next entry of head h's partial list followed by its full list
  int sub;        ///< next tile inside that entry's mask block
  int n_partial;
  int n_total;
};

/// Number of blocks in list `l` at (b, h, row); 0 when the list is absent.
__device__ __forceinline__ int bwd_block_count(const BlockList& l, int b, int h, int row) {
  if (l.num_blocks == nullptr) return 0;
  return __ldg(l.num_blocks + b * l.num_stride_b + h * l.num_stride_h + row * l.num_stride_q);
}

__device__ __forceinline__ const int* bwd_block_row(const BlockList& l, int b, int h, int row) {
  return l.indices + b * l.idx_stride_b + h * l.idx_stride_h + row * l.idx_stride_q;
}

__device__ __forceinline__ void walk_begin(BlockWalk& w, int h_begin, int h_end) {
  w.h = h_begin - 1;
  w.h_end = h_end;
  w.entry = 0;
  w.sub = 0;
  w.n_partial = 0;
  w.n_total = 0;
}

/// The next tile, or h = -1 at the end. `row` is the q block (kv lists) or kv block (transposed lists).
__device__ __forceinline__ BwdTile walk_next(BlockWalk& w, const BlockList& partial, const BlockList& full, int b,
                                             int row, int mask_block, int tile, int len) {
  const int tiles_per_block = mask_block / tile;
  for (;;) {
    if (w.entry >= w.n_total) {
      if (w.h + 1 >= w.h_end) return BwdTile{-1, 0, 0};
      ++w.h;
      w.entry = 0;
      w.sub = 0;
      w.n_partial = bwd_block_count(partial, b, w.h, row);
      w.n_total = w.n_partial + bwd_block_count(full, b, w.h, row);
      w.partial_idx = w.n_partial > 0 ? bwd_block_row(partial, b, w.h, row) : nullptr;
      w.full_idx = w.n_total > w.n_partial ? bwd_block_row(full, b, w.h, row) : nullptr;
      w.partial_step = partial.idx_stride_kv;
      w.full_step = full.idx_stride_kv;
      continue;
    }
    const bool is_partial = w.entry < w.n_partial;
    const int block = is_partial ? __ldg(w.partial_idx + w.entry * w.partial_step)
                                 : __ldg(w.full_idx + (w.entry - w.n_partial) * w.full_step);
    const int start = block * mask_block + w.sub * tile;
    if (++w.sub == tiles_per_block) {
      w.sub = 0;
      ++w.entry;
    }
    if (start < len) return BwdTile{w.h, start, is_partial ? 1 : 0};
  }
}

}  // namespace fjk
