// Launch parameters of the decode family (decode/attention_decode.cuh): the forward's FwdParams plus the
// packing of query heads into rows, the kv splits and the float32 partials the splits hand to the combine
// kernel. Plain C structs shared by the host and NVRTC (see common/attention_params.h).
#pragma once

#include "codegen/templates/common/attention_params.h"

namespace fjk {

/// Packed query rows of one row tile (one mma m-tile, one warp's rows). A CTA holds 1 to
/// kDecodeMaxRowTiles row tiles (FwdKernelConfig::blockM = 16 x row tiles): the warps of a CTA are row
/// tiles x kv slots, the row tiles of a slot sharing each K/V tile it loads.
constexpr int kDecodeRows = 16;
constexpr int kDecodeMaxRowTiles = 4;
/// Most kv splits of one row (the combine kernel's loops and the host's choice respect it).
constexpr int kDecodeMaxSplits = 64;

/// Dynamic shared memory of a decode CTA of `warps` warps and `row_tiles` row tiles (so warps / row_tiles
/// kv slots): the Q rows, then per kv slot `stages` K and V tiles (rows padded by 8 elements), the region
/// reused at the end for the slots' merge (float O and (m, l) per slot and row). Host and kernel both
/// compute it here (DecodeTraits::kSmemBytes). kDecodeStages is the default depth (2 to kDecodeMaxStages).
constexpr int kDecodeStages = 2;
constexpr int kDecodeMaxStages = 4;
constexpr int decode_kv_offset(int head_dim, int row_tiles) {
  return (row_tiles * kDecodeRows * (head_dim + 8) * 2 + 127) / 128 * 128;
}
constexpr int decode_smem_bytes(int head_dim, int head_dim_v, int block_n, int warps, int row_tiles, int stages) {
  const int slots = warps / row_tiles;
  const int rings = slots * stages * block_n * (head_dim + head_dim_v + 16) * 2;
  const int merge = slots * row_tiles * kDecodeRows * (head_dim_v + 2) * 4;
  return decode_kv_offset(head_dim, row_tiles) + (rings > merge ? rings : merge);
}

struct DecodeParams {
  FwdParams p;
  int pack_heads;  ///< query heads whose rows share a CTA: the GQA group size, or 1 (see the planner)
  int row_groups;  ///< CTAs along the packed rows: ceil(pack_heads * len_q / rows per CTA)
  int splits;      ///< kv ranges per (batch, head group), 1 .. kDecodeMaxSplits
  /// [B * Hq * Lq, splits, Dv]: each split's O normalised over its own keys (0 for a split with none).
  float* part_o;
  /// [B * Hq * Lq, splits]: each split's natural-log LSE (-inf: no kept key in the split).
  float* part_lse;
  /// [B * Hq * Lq, splits]: each split's max score (natural units), when FwdParams::max_score is wanted.
  float* part_max;
  /// A paged KV cache (null: K and V are contiguous per sequence): logical page j of sequence b is physical
  /// page page_table[b * page_table_stride_b + j * page_table_stride_j] of K / V's pool (their batch
  /// stride is 0), page_size keys each (a multiple of the kv tile), num_pages in the pool.
  const int* page_table;
  long long page_table_stride_b;
  long long page_table_stride_j;
  int page_size;
  int num_pages;
  /// Per-sequence key counts (null: every sequence has FwdParams::len_kv), kv_lengths[b * kv_lengths_stride],
  /// clamped to [0, len_kv].
  const int* kv_lengths;
  long long kv_lengths_stride;
};

}  // namespace fjk
