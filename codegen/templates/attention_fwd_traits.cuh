// Compile-time shape of one forward-kernel instantiation (FwdTraits: tiles, warps, shared-memory layout)
// and the block-sparse walk over the kv tiles of one row block (KvTileCursor).
//
// Tiling (FlashAttention-2): a CTA owns kBlockM query rows; each of its kNWarps warps owns kBlockM /
// kNWarps consecutive rows (kMmaM m-tiles of 16) and all columns of every S sub-tile, so row max / row
// sum never leave a quad. K and V tiles of kBlockN rows stream through a kStages-deep cp.async ring; each
// is computed in sub-tiles of kSubN columns.
#pragma once

#include "codegen/templates/attention_params.h"
#include "codegen/templates/tile_mma.cuh"

namespace fjk {

/// Bytes of one Q/K/V/O element (fp16 and bf16 alike).
constexpr int kElemBytes = 2;

template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kBlockM_, int kBlockN_, int kNWarps_, bool kQInRegs_,
          int kSubN_>
struct FwdTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  /// Q fragments live in registers for the whole kernel (instead of ldmatrix from shared memory per tile).
  static constexpr bool kQInRegs = kQInRegs_;
  /// Columns of S computed at once. A loaded kv tile of kBlockN rows is processed as kBlockN / kSubN
  /// sub-tiles: wide loads amortise barriers and index lookups, narrow S keeps registers for O.
  static constexpr int kSubN = kSubN_;
  static constexpr int kSubTiles = kBlockN / kSubN;

  static constexpr int kNThreads = kNWarps * kWarpSize;
  static constexpr int kWarpRows = kBlockM / kNWarps;
  static constexpr int kMmaM = kWarpRows / kMmaRows;
  static constexpr int kRowsPerThread = 2 * kMmaM;  // fragment rows g and g + 8 of each m-tile
  static constexpr int kTilesN = kSubN / kMmaCols;
  static constexpr int kTilesDv = kHeadDimV / kMmaCols;
  static constexpr int kStepsD = kHeadDim / kMmaK;
  static constexpr int kStepsN = kSubN / kMmaK;
  static constexpr int kQFragSteps = kQInRegs ? kStepsD : 1;
  /// Depth of the K/V ring: tile t + 1 loads while tile t is computed.
  static constexpr int kStages = 2;

  // Shared-memory rows are padded by 16 bytes. With D % 16 == 0 the row pitch is an odd number of
  // 16-byte units (D / 8 + 1), so the 8 row addresses of one ldmatrix phase, and the 8 rows written by
  // one quad-row of O fragments, fall into 8 different bank groups: no conflicts, no swizzle needed.
  static constexpr int kRowPad = kElemsPerCopy;
  static constexpr int kQPitch = kHeadDim + kRowPad;
  static constexpr int kKPitch = kHeadDim + kRowPad;
  static constexpr int kVPitch = kHeadDimV + kRowPad;
  static constexpr int kOPitch = kHeadDimV + kRowPad;
  /// O is staged for coalesced stores in the Q region, which is free once the last tile is done.
  static constexpr int kQRegionElems = kBlockM * (kQPitch > kOPitch ? kQPitch : kOPitch);
  static constexpr int kKStageElems = kBlockN * kKPitch;
  static constexpr int kVStageElems = kBlockN * kVPitch;
  static constexpr int kKOffsetBytes = kQRegionElems * kElemBytes;
  static constexpr int kVOffsetBytes = kKOffsetBytes + kStages * kKStageElems * kElemBytes;
  static constexpr int kSmemBytes = kVOffsetBytes + kStages * kVStageElems * kElemBytes;

  static_assert(kBlockM % (kNWarps * kMmaRows) == 0, "each warp needs whole 16-row m-tiles");
  static_assert(kSubN % kMmaK == 0, "kSubN must be a multiple of 16 (P is the A operand of PV)");
  static_assert(kBlockN % kSubN == 0, "a loaded kv tile splits into whole sub-tiles");
  static_assert(kHeadDim % kMmaK == 0 && kHeadDimV % kMmaK == 0, "head dims must be multiples of 16");
  static_assert(kTilesN % 2 == 0 && kTilesDv % 2 == 0, "ldmatrix.x4 loads two n-tiles at a time");
};

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
