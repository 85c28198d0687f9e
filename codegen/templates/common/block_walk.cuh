// What every forward family shares about the work of one CTA: the order in which the 1-D grid visits
// (row block, head, batch) (schedule_cta) and the block-sparse walk over the kv tiles of one row block,
// partial BlockMask blocks first, then full ones (KvTileCursor).
#pragma once

#include "codegen/templates/common/attention_params.h"

namespace fjk {

/// (batch, head) pairs per scheduling group when FwdParams::sched_heads is not set; equals
/// flexjit::kFwdScheduleHeads on the host.
constexpr int kDefaultScheduleHeads = 8;

/// The (row block, head, batch) a CTA computes.
struct CtaCoord {
  int m_block;
  int h;
  int b;
};

/// Decodes the 1-D grid: (batch, head) pairs b * Hq + h form groups of sched_heads; groups run one after
/// the other, and within a group the row blocks go from the last (longest under a causal mask) to the
/// first, the group's heads innermost. Longest-first over a whole group keeps the last wave short (CTAs
/// start in grid order), and a group's K/V (sched_heads heads) stays in L2 while its row blocks run.
__device__ __forceinline__ CtaCoord schedule_cta(const FwdParams& p, int block_m) {
  const int n_m = (p.len_q + block_m - 1) / block_m;
  const int bh_total = p.batch * p.heads_q;
  // sched_heads <= 0 (a host that left it unset) must not divide by zero: take the default group.
  const int heads = p.sched_heads > 0 ? p.sched_heads : kDefaultScheduleHeads;
  const int group_ctas = heads * n_m;
  const int group = (int)blockIdx.x / group_ctas;
  const int r = (int)blockIdx.x - group * group_ctas;
  // The last group may hold fewer pairs.
  const int group_size = min(heads, bh_total - group * heads);
  const int bh = group * heads + r % group_size;
  CtaCoord c;
  c.m_block = n_m - 1 - r / group_size;
  c.h = bh % p.heads_q;
  c.b = bh / p.heads_q;
  return c;
}

/// Walks the kv tiles of one row block: the partial blocks' tiles first, then the full blocks'. Mask block
/// e of a list covers kv [idx[e] * mask_block_kv, + mask_block_kv) and expands into tiles_per_block
/// consecutive tiles of kBlockN columns. Tile t < partial_tiles needs mask_mod; later tiles do not.
struct KvTileCursor {
  const int* partial_idx;
  const int* full_idx;
  long long partial_step;
  long long full_step;
  int partial_tiles;
  int num_tiles;
  int tiles_per_block;
  int tiles_per_block_log2;  ///< log2(tiles_per_block) when it is a power of two (torch's sizes), else -1
  int mask_block_kv;
  int block_n;

  /// First kv index of tile t (0 <= t < num_tiles). One cached global load.
  __device__ __forceinline__ int kv_start(int t) const {
    const bool partial = t < partial_tiles;
    const int u = partial ? t : t - partial_tiles;
    const int entry = tiles_per_block_log2 >= 0 ? u >> tiles_per_block_log2 : u / tiles_per_block;
    const int sub = u - entry * tiles_per_block;
    const int* idx = partial ? partial_idx + entry * partial_step : full_idx + entry * full_step;
    return __ldg(idx) * mask_block_kv + sub * block_n;
  }
};

/// Number of blocks in list `l` for (b, h, q_block); 0 when the list is absent.
__device__ __forceinline__ int block_count(const BlockList& l, int b, int h, int q_block) {
  if (l.num_blocks == nullptr) return 0;
  return __ldg(l.num_blocks + b * l.num_stride_b + h * l.num_stride_h + q_block * l.num_stride_q);
}

/// The cursor of the row block starting at query row q0. The kernel requires mask_block_q % kBlockM == 0,
/// so the whole row block lies in mask row block q0 / mask_block_q.
__device__ __forceinline__ KvTileCursor make_kv_cursor(const FwdParams& p, int b, int h, int q0, int block_n) {
  const int q_block = q0 / p.mask_block_q;
  KvTileCursor c;
  c.tiles_per_block = p.mask_block_kv / block_n;
  c.tiles_per_block_log2 = -1;
  for (int k = 0; k < 31; ++k) c.tiles_per_block_log2 = (1 << k) == c.tiles_per_block ? k : c.tiles_per_block_log2;
  c.mask_block_kv = p.mask_block_kv;
  c.block_n = block_n;
  const int n_partial = block_count(p.partial, b, h, q_block);
  const int n_full = block_count(p.full, b, h, q_block);
  c.partial_idx = n_partial > 0 ? p.partial.indices + b * p.partial.idx_stride_b +
                                      h * p.partial.idx_stride_h + q_block * p.partial.idx_stride_q
                                : nullptr;
  c.full_idx = n_full > 0 ? p.full.indices + b * p.full.idx_stride_b + h * p.full.idx_stride_h +
                                q_block * p.full.idx_stride_q
                          : nullptr;
  c.partial_step = p.partial.idx_stride_kv;
  c.full_step = p.full.idx_stride_kv;
  c.partial_tiles = n_partial * c.tiles_per_block;
  c.num_tiles = (n_partial + n_full) * c.tiles_per_block;
  return c;
}

}  // namespace fjk
