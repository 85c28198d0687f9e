// Shared-memory layout of the sm90 forward kernel, as plain constexpr C++ that the host (codegen's tile
// checks and launch geometry) and the kernel (NVRTC) both compile, so the two can never disagree on a size.
//
//   [Q / O region][K stage 0 .. kStages-1][V stage 0 .. kStages-1][mbarriers]
// Every region holds 128-byte-swizzled tiles (sm90/wgmma.cuh) and starts 1024-byte aligned. Q is staged
// for the kernel's whole life; after a consumer warpgroup's last S = Q K^T it writes its rows of O into its
// own rows of the same region for the TMA store, so the region is sized for the wider of Q and O.
#pragma once

namespace fjk {

/// Byte offsets of one sm90 forward configuration's shared memory.
struct Sm90FwdLayout {
  int q_chunk_bytes;  ///< one 64-column chunk of the Q / O region (block_m rows of 128 bytes)
  int k_chunk_bytes;  ///< one 64-column chunk of a K or V stage (block_n rows of 128 bytes)
  int q_region_bytes;
  int k_stage_bytes;
  int v_stage_bytes;
  int k_offset;
  int v_offset;
  int bar_offset;  ///< q_full, then k_full, k_empty, v_full, v_empty of each stage (8 bytes each)
  int bytes;       ///< dynamic shared memory to request, with the slack that aligns the base to 1024
};

/// Alignment of every tile (one 8-row swizzle atom).
constexpr int kSm90TileAlign = 1024;
/// Columns of one swizzled chunk (128 bytes of 16-bit elements).
constexpr int kSm90ChunkCols = 64;
/// mbarriers: Q full, and full / empty for K and V per stage.
constexpr int sm90_fwd_barriers(int stages) { return 1 + 4 * stages; }

constexpr int sm90_round_up(int x, int a) { return (x + a - 1) / a * a; }

constexpr Sm90FwdLayout sm90_fwd_layout(int head_dim, int head_dim_v, int block_m, int block_n, int stages) {
  Sm90FwdLayout l{};
  l.q_chunk_bytes = block_m * 128;
  l.k_chunk_bytes = block_n * 128;
  const int widest = head_dim > head_dim_v ? head_dim : head_dim_v;
  l.q_region_bytes = (widest / kSm90ChunkCols) * l.q_chunk_bytes;
  l.k_stage_bytes = (head_dim / kSm90ChunkCols) * l.k_chunk_bytes;
  l.v_stage_bytes = (head_dim_v / kSm90ChunkCols) * l.k_chunk_bytes;
  l.k_offset = sm90_round_up(l.q_region_bytes, kSm90TileAlign);
  l.v_offset = l.k_offset + stages * l.k_stage_bytes;
  l.bar_offset = l.v_offset + stages * l.v_stage_bytes;
  l.bytes = l.bar_offset + 8 * sm90_fwd_barriers(stages) + kSm90TileAlign;
  return l;
}

}  // namespace fjk
