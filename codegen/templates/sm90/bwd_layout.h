// Shared-memory layout of the sm90 backward's dK/dV kernel, as plain constexpr C++ that the host
// (codegen's checks and launch geometry) and the kernel (NVRTC) both compile, so that the two can never
// disagree on a size.
//
//   [K][V][Q stage 0 .. S-1][dO stage 0 .. S-1][P][dS][dQ staging of consumer 0, 1]
//   [LSE2 + Delta per stage][tile of each stage][mbarriers]
// K and V (kBlockN = 128 rows) stay for the CTA's life and stage dK / dV in the epilogue; Q and dO
// (kBlockM = 64 rows) stream through an S-stage ring. P and dS are [64 q rows][128 kv] in two 64-column
// chunks, chunk w written by consumer warpgroup w. The dQ staging holds a warpgroup's float32 dQ
// contribution of one tile until its TMA reduction has read it: 64 rows x D in boxes of 32 columns (each
// warpgroup's dS_w K_w over its own kv rows).
// Every tile region is 128-byte swizzled (sm90/wgmma.cuh) and 1024-byte aligned.
#pragma once

#include "codegen/templates/sm90/fwd_layout.h"

namespace fjk {

/// Rows of a q tile and of a dK/dV CTA's kv block, and the kv rows of one consumer warpgroup.
constexpr int kSm90BwdBlockM = 64;
constexpr int kSm90BwdBlockN = 128;
constexpr int kSm90BwdWgKv = kSm90BwdBlockN / 2;

/// Byte offsets of one sm90 dK/dV configuration's shared memory.
struct Sm90BwdLayout {
  int q_chunk_bytes;   ///< one 64-column chunk of a Q / dO stage (64 rows of 128 bytes)
  int k_chunk_bytes;   ///< one 64-column chunk of K / V (128 rows of 128 bytes)
  int ps_chunk_bytes;  ///< one warpgroup's chunk of P or dS (64 q rows x its 64 kv columns)
  int dq_box_bytes;    ///< one 32-column float32 box of the dQ staging (64 rows of 128 bytes)
  int k_offset;
  int v_offset;
  int q_offset;
  int q_stage_bytes;
  int do_offset;
  int do_stage_bytes;
  int p_offset;
  int ds_offset;
  int dq_offset;
  int dq_wg_bytes;     ///< one warpgroup's dQ staging
  int stats_offset;    ///< per stage: kSm90BwdBlockM floats of LSE2, then as many of Delta
  int stats_stage_bytes;
  int tile_offset;     ///< per stage: the BwdTile the producer fetched into it (16 bytes each)
  int bar_offset;      ///< kv_full, then full and empty of each stage (8 bytes each)
  int bytes;           ///< dynamic shared memory to request, with the slack that aligns the base to 1024
};

constexpr int kSm90BwdTileSlotBytes = 16;
/// mbarriers: K / V full, and full / empty per stage.
constexpr int sm90_bwd_barriers(int stages) { return 1 + 2 * stages; }

constexpr Sm90BwdLayout sm90_bwd_layout(int head_dim, int head_dim_v, int stages, bool dq_here = true) {
  Sm90BwdLayout l{};
  l.q_chunk_bytes = kSm90BwdBlockM * 128;
  l.k_chunk_bytes = kSm90BwdBlockN * 128;
  l.ps_chunk_bytes = kSm90BwdBlockM * 128;
  l.dq_box_bytes = kSm90BwdBlockM * 128;
  l.k_offset = 0;
  l.v_offset = l.k_offset + (head_dim / kSm90ChunkCols) * l.k_chunk_bytes;
  l.q_offset = l.v_offset + (head_dim_v / kSm90ChunkCols) * l.k_chunk_bytes;
  l.q_stage_bytes = (head_dim / kSm90ChunkCols) * l.q_chunk_bytes;
  l.do_offset = l.q_offset + stages * l.q_stage_bytes;
  l.do_stage_bytes = (head_dim_v / kSm90ChunkCols) * l.q_chunk_bytes;
  l.p_offset = l.do_offset + stages * l.do_stage_bytes;
  l.ds_offset = l.p_offset + 2 * l.ps_chunk_bytes;
  l.dq_offset = l.ds_offset + 2 * l.ps_chunk_bytes;
  // No staging when dQ is not computed here (deterministic mode: the sm80 dQ kernel).
  l.dq_wg_bytes = dq_here ? (head_dim / 32) * l.dq_box_bytes : 0;
  l.stats_offset = l.dq_offset + 2 * l.dq_wg_bytes;
  l.stats_stage_bytes = 2 * kSm90BwdBlockM * 4;
  l.tile_offset = l.stats_offset + stages * l.stats_stage_bytes;
  l.bar_offset = l.tile_offset + stages * kSm90BwdTileSlotBytes;
  l.bytes = l.bar_offset + 8 * sm90_bwd_barriers(stages) + kSm90TileAlign;
  return l;
}

}  // namespace fjk
