// The decode family: attention for a few query rows over a long KV (Q_LEN of 1 to 16 at decode time), where
// the prefill kernels waste their 128-row tiles and walk the whole KV in one CTA per (batch, head).
//
// Rows: the query heads of one GQA group share their K/V, so a CTA packs them: packed row r of head group y
// is head y * pack_heads + r / Q_LEN, query r % Q_LEN (pack_heads is the group size, or 1 when the block
// mask differs between heads). A CTA takes kRowTiles row tiles of kDecodeRows = 16 packed rows (one mma
// m-tile, one warp each); more rows take more CTAs (row groups). One CTA per (batch, head group) is what
// keeps the cache streamed from memory once: four CTAs of 16 rows each read all of it (measured 435 us
// against 152 for 16 rows on the H200, docs/performance.md 2026-12-02).
//
// KV: a (batch, head group)'s kv tiles (the block-sparse walk of its block mask, block_walk.cuh) are cut
// into `splits` contiguous ranges, one CTA each, so that B * H_kv is no limit on the parallelism. Inside a
// CTA the warps form kSlots kv slots of kRowTiles warps: slot s takes every kSlots-th tile of the range
// through its own ring of kStages cp.async stages, which its warps load together and each warp multiplies
// with its own 16 rows, keeping its own online softmax (common/). The slots then merge in shared memory and
// the CTA writes its split's float32 (O, LSE) per row. A second kernel of the program
// (attention_decode_combine) merges the splits of each row (common/split_merge.h), adds the sink, and
// writes O, LSE and max scores.
//
// The hooks are the shared tile hooks over PackedRows (each row its own head and query). The row / column
// split of the mods is turned off here (a column part may read h, which differs between packed rows).
//
// Inference layouts (DecodeParams): a paged cache, whose tiles are found through the page table (a tile of
// kBlockN keys lies in one page), and per-sequence key counts (kv_lengths), past which tiles are skipped
// and columns masked.
#pragma once

#include "codegen/templates/common/barrier.cuh"
#include "codegen/templates/common/online_softmax.cuh"
#include "codegen/templates/common/split_merge.h"
#include "codegen/templates/common/tile_hooks.cuh"
#include "codegen/templates/common/variant_traits.cuh"
#include "codegen/templates/decode/decode_params.h"
#include "codegen/templates/sm80/attention_fwd_phases.cuh"
#include "codegen/templates/sm80/bwd_warp_gemm.cuh"

namespace fjk {

template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kBlockN_, int kWarps_, int kRowTiles_, int kStages_>
struct DecodeTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kBlockN = kBlockN_;  ///< kv rows of one slot's tile
  static constexpr int kWarps = kWarps_;
  static constexpr int kNThreads = kWarps * kWarpSize;
  static constexpr int kRowTiles = kRowTiles_;          ///< warps per kv slot, 16 rows each
  static constexpr int kSlots = kWarps / kRowTiles;     ///< kv slots, each its own stream of tiles
  static constexpr int kSlotThreads = kRowTiles * kWarpSize;
  static constexpr int kRows = kRowTiles * kDecodeRows;  ///< packed rows of the CTA
  static constexpr int kStages = kStages_;  ///< the slot's ring of K/V tiles: kStages - 1 in flight
  static constexpr int kStepsD = kHeadDim / kMmaK;
  static constexpr int kTilesDv = kHeadDimV / kMmaCols;
  /// Row pitches padded by 16 bytes: an odd number of 16-byte units, so ldmatrix phases hit distinct banks.
  static constexpr int kQPitch = kHeadDim + kElemsPerCopy;
  static constexpr int kKPitch = kHeadDim + kElemsPerCopy;
  static constexpr int kVPitch = kHeadDimV + kElemsPerCopy;
  static constexpr int kQBytes = kRows * kQPitch * kElemBytes;
  static constexpr int kKStageBytes = kBlockN * kKPitch * kElemBytes;
  static constexpr int kVStageBytes = kBlockN * kVPitch * kElemBytes;
  static constexpr int kSlotBytes = kStages * (kKStageBytes + kVStageBytes);
  static constexpr int kKvOffset = decode_kv_offset(kHeadDim, kRowTiles);
  /// The slots' merge staging (reusing the K/V region): O [kSlots][kRows][Dv] and (m, l) [kSlots][kRows].
  static constexpr int kMergeBytes = kSlots * kRows * (kHeadDimV + 2) * 4;
  static constexpr int kSmemBytes = decode_smem_bytes(kHeadDim, kHeadDimV, kBlockN, kWarps, kRowTiles, kStages);
  static_assert(kStages >= 2 && kStages <= kDecodeMaxStages, "decode stages");
  static_assert(kKvOffset >= kQBytes && kSmemBytes >= kKvOffset + kSlots * kSlotBytes &&
                    kSmemBytes >= kKvOffset + kMergeBytes,
                "decode_smem_bytes must cover the layout");
  // Slot s synchronises its warps on named barrier 1 + s (0 is __syncthreads).
  static_assert(kRowTiles >= 1 && kRowTiles <= kDecodeMaxRowTiles && kWarps % kRowTiles == 0 && kSlots <= 15,
                "warps must be row tiles x kv slots");
  /// One warp's S tile (16 rows x kBlockN), in the shared accumulator layout.
  using STile = AccTile<kIsBf16, 1, kBlockN / kMmaCols>;

  static_assert(kBlockN % 16 == 0 && kHeadDim % 16 == 0 && kHeadDimV % 16 == 0, "mma tiles");
};

/// The (head, query) of a thread's two accumulator rows (fragment rows g and g + 8) in a CTA of the decode
/// family (tile_hooks.cuh's row policy). Rows past the packed rows (padding) repeat the last real row, so
/// that every hook reads valid coordinates; they are never stored.
struct PackedRows {
  int h[2];
  int q[2];
  int len_kv;  ///< the sequence's keys (DecodeParams::kv_lengths, else FwdParams::len_kv)
  __device__ __forceinline__ int head(int, int half) const { return h[half]; }
  __device__ __forceinline__ int query(int, int half) const { return q[half]; }
  __device__ __forceinline__ int kv_len(const FwdParams&) const { return len_kv; }
};

/// Keys of sequence b: DecodeParams::kv_lengths[b] clamped to [0, len_kv], or len_kv.
__device__ __forceinline__ int sequence_kv_len(const DecodeParams& P, int b) {
  if (P.kv_lengths == nullptr) return P.p.len_kv;
  const int n = __ldg(P.kv_lengths + b * P.kv_lengths_stride);
  return n < 0 ? 0 : (n > P.p.len_kv ? P.p.len_kv : n);
}

/// The first of the kBlockN rows of logical keys kv0.. of sequence b in a K or V whose row r sits at
/// base + r * stride: through the page table with a paged cache (a tile lies in one page), where a page id
/// outside the pool gives null.
__device__ __forceinline__ const unsigned short* kv_tile_rows(const DecodeParams& P, const unsigned short* base,
                                                              long long stride, int b, int kv0) {
  if (P.page_table == nullptr) return base + (long long)kv0 * stride;
  const int page = __ldg(P.page_table + b * P.page_table_stride_b + (long long)(kv0 / P.page_size) * P.page_table_stride_j);
  if (page < 0 || page >= P.num_pages) return nullptr;
  return base + ((long long)page * P.page_size + kv0 % P.page_size) * stride;
}

/// Copies one slot's tile of kRows rows x kCols elements from `rows` (row r at rows + r * stride) into
/// shared memory (row pitch kPitch) with the slot's kThreads threads (`idx` is this thread's index among
/// them); rows r >= valid are zero-filled: their copy reads nothing and is given `inside`, an address of
/// the tensor, instead of one past the sequence or the page.
template <int kRows, int kCols, int kPitch, int kThreads>
__device__ __forceinline__ void load_kv_rows(unsigned dst, const unsigned short* rows, long long stride, int valid,
                                             const unsigned short* inside, int idx) {
  constexpr int kChunksPerRow = kCols / kElemsPerCopy;
  if constexpr (kThreads % kChunksPerRow == 0) {
    // Each thread copies one fixed column of rows r, r + kRowStep, ...: one pointer bumped by a 64-bit step.
    constexpr int kRowStep = kThreads / kChunksPerRow;
    const int r0 = idx / kChunksPerRow, col = (idx % kChunksPerRow) * kElemsPerCopy;
    const unsigned short* g = rows + r0 * stride + col;
    const unsigned d = dst + (r0 * kPitch + col) * kElemBytes;
#pragma unroll
    for (int r = 0; r < kRows; r += kRowStep, g += kRowStep * stride) {
      const bool ok = r0 + r < valid;
      cp_async_16(d + r * kPitch * kElemBytes, ok ? g : inside, ok);
    }
  } else {
#pragma unroll 1
    for (int c = idx; c < kRows * kChunksPerRow; c += kThreads) {
      const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * kElemsPerCopy;
      const bool ok = r < valid;
      cp_async_16(dst + (r * kPitch + col) * kElemBytes, ok ? rows + r * stride + col : inside, ok);
    }
  }
}

/// The packed rows of a warp whose 16 rows start at packed row `first`.
__device__ __forceinline__ PackedRows packed_rows(const DecodeParams& P, int b, int group, int first, int lane) {
  const FwdParams& p = P.p;
  const int n_rows = P.pack_heads * p.len_q;
  PackedRows rows;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = first + (lane >> 2) + half * (kMmaRows / 2);
    const int rr = r < n_rows ? r : n_rows - 1;
    rows.h[half] = group * P.pack_heads + rr / p.len_q;
    rows.q[half] = rr % p.len_q;
  }
  rows.len_kv = sequence_kv_len(P, b);
  return rows;
}

/// Starts the copy of the CTA's kRows packed query rows (each from its own head) into shared memory; rows
/// past the packed rows are zero-filled.
template <class Tr>
__device__ __forceinline__ void load_packed_q(unsigned s_q, const DecodeParams& P, int b, int group, int row_group,
                                              int tid) {
  const FwdParams& p = P.p;
  constexpr int kChunksPerRow = Tr::kHeadDim / kElemsPerCopy;
  const int n_rows = P.pack_heads * p.len_q;
#pragma unroll 1
  for (int c = tid; c < Tr::kRows * kChunksPerRow; c += Tr::kNThreads) {
    const int row = c / kChunksPerRow, col = (c % kChunksPerRow) * kElemsPerCopy;
    const int r = row_group * Tr::kRows + row;
    const bool valid = r < n_rows;
    const int h = group * P.pack_heads + (valid ? r / p.len_q : 0), q = valid ? r % p.len_q : 0;
    const unsigned short* src = static_cast<const unsigned short*>(p.q) + b * p.q_stride.b + h * p.q_stride.h +
                                (long long)q * p.q_stride.l + col;
    cp_async_16(s_q + (row * Tr::kQPitch + col) * kElemBytes, valid ? src : p.q, valid);
  }
}

/// One warp's kv tile at kv0: S = Q K^T, the hooks, the online softmax and O += P V.
template <class Tr, class Var>
__device__ __forceinline__ void decode_tile(float (&o)[1][Tr::kTilesDv][4], RowStats<2>& st,
                                            const unsigned (&qf)[1][Tr::kStepsD][4], unsigned s_k, unsigned s_v,
                                            const FwdParams& p, int b, const PackedRows& rows, int kv0,
                                            bool partial, bool poisoned, float factor, int lane) {
  using ST = typename Tr::STile;
  const int kv_first = kv0 + 2 * (lane & 3);
  // A full block's tile that crosses the sequence's end needs the bound but never mask_mod.
  const bool masked = partial || kv0 + Tr::kBlockN > rows.len_kv;
  TileMaskBits<ST> bits;
  if (partial) {
    compute_mask_bits<ST, Var, true>(bits, p, b, rows, kv_first);
  } else if (masked) {
    compute_mask_bits<ST, Var, false>(bits, p, b, rows, kv_first);
  }
  float s[1][ST::kTilesN][4];
  zero_acc(s);
  // B = K stored [kv][d]: n-major.
  warp_gemm_rs<Tr::kIsBf16, 1, ST::kTilesN, Tr::kStepsD, false, Tr::kKPitch>(s, qf, s_k, lane);
  if (masked) {
    apply_mods<ST, Var, kMaskBits>(s, bits, p, b, rows, kv_first);
  } else {
    apply_mods<ST, Var, kMaskNone>(s, bits, p, b, rows, kv_first);
  }
  if (poisoned) {
    // A page id outside the pool: the scores this tile would have given are unknown, so every kept one is
    // NaN and so are the rows that read it (a wrong page table must not give a plausible result).
#pragma unroll
    for (int j = 0; j < ST::kTilesN; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[0][j][e] = s[0][j][e] == neg_inf() ? s[0][j][e] : fj::quietNaN();
  }
  float corr[2];
  update_row_stats<1, ST::kTilesN>(s, st, corr, factor);
  if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) rescale_o<1, Tr::kTilesDv>(o, corr);
  unsigned pa[1][ST::kStepsN][4];
  convert_p<ST>(pa, s);
  // B = V stored [kv][dv]: k-major.
  warp_gemm_rs<Tr::kIsBf16, 1, Tr::kTilesDv, ST::kStepsN, true, Tr::kVPitch>(o, pa, s_v, lane);
}

/// Merges the slots' (m, l, O) of the CTA's rows into this split's float32 partials. Every thread has
/// finished its tiles and the K/V region is free (the caller's barrier). This warp holds rows
/// row_tile * 16 .. + 15 of the CTA for kv slot `slot`.
template <class Tr>
__device__ __forceinline__ void decode_merge_slots(const float (&o)[1][Tr::kTilesDv][4], const RowStats<2>& st,
                                                   unsigned char* smem, const DecodeParams& P, int b, int group,
                                                   int row_group, int split, float factor, int slot, int row_tile,
                                                   int lane, int tid) {
  const FwdParams& p = P.p;
  float* o_s = reinterpret_cast<float*>(smem + Tr::kKvOffset);              // [kSlots][kRows][Dv]
  float* m_s = o_s + Tr::kSlots * Tr::kRows * Tr::kHeadDimV;                // [kSlots][kRows]
  float* l_s = m_s + Tr::kSlots * Tr::kRows;                                // [kSlots][kRows]
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row_tile * kDecodeRows + g + half * (kMmaRows / 2);
    const float l = quad_sum(st.sum[half]);  // every lane of the quad calls it
    if (t == 0) {
      m_s[slot * Tr::kRows + row] = st.max[half];
      l_s[slot * Tr::kRows + row] = l;
    }
#pragma unroll
    for (int j = 0; j < Tr::kTilesDv; ++j) {
      float* at = o_s + (slot * Tr::kRows + row) * Tr::kHeadDimV + j * kMmaCols + 2 * t;
      at[0] = o[0][j][2 * half];
      at[1] = o[0][j][2 * half + 1];
    }
  }
  __syncthreads();
  const int n_rows = P.pack_heads * p.len_q;
#pragma unroll 1
  for (int e = tid; e < Tr::kRows * Tr::kHeadDimV; e += Tr::kNThreads) {
    const int row = e / Tr::kHeadDimV, col = e % Tr::kHeadDimV;
    const int r = row_group * Tr::kRows + row;
    if (r >= n_rows) continue;
    float top = neg_inf();
#pragma unroll
    for (int w = 0; w < Tr::kSlots; ++w) top = fmaxf(top, m_s[w * Tr::kRows + row]);
    // Every slot's rows empty (top = -inf): 0 instead of (-inf) - (-inf) = NaN below, so that the split
    // comes out with l = 0 (no key). A NaN score reached l and O as NaN (fmaxf drops it from the max), and
    // stays NaN through the sums.
    const float top_ref = top == neg_inf() ? 0.0f : top;
    const float top_scaled = top_ref * factor;
    float l = 0.0f, acc = 0.0f;
#pragma unroll
    for (int w = 0; w < Tr::kSlots; ++w) {
      // (m - top) * factor: exact 0 for the top slot (see online_softmax.cuh on the FFMA's residual).
      const float c = fj::fastExp2((m_s[w * Tr::kRows + row] - top_ref) * factor);
      l += c * l_s[w * Tr::kRows + row];
      acc += c * o_s[(w * Tr::kRows + row) * Tr::kHeadDimV + col];
    }
    const int h = group * P.pack_heads + r / p.len_q, q = r % p.len_q;
    const long long slot = ((((long long)b * p.heads_q + h) * p.len_q + q) * P.splits + split);
    P.part_o[slot * Tr::kHeadDimV + col] = l == 0.0f ? 0.0f : acc / l;
    if (col == 0) {
      P.part_lse[slot] = l == 0.0f ? neg_inf() : (top_scaled + fj::fastLog2(l)) * fj::kLn2;
      if (P.part_max != nullptr) P.part_max[slot] = top == neg_inf() ? neg_inf() : top * factor * fj::kLn2;
    }
  }
}

/// The split kernel: grid (splits * row_groups, Hq / pack_heads, B), Tr::kNThreads threads, Tr::kSmemBytes
/// of dynamic shared memory.
template <class Tr, class Var>
__device__ __forceinline__ void attention_decode(const DecodeParams& P) {
  const FwdParams& p = P.p;
  const int split = blockIdx.x % P.splits, row_group = blockIdx.x / P.splits;
  const int group = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int row_tile = warp % Tr::kRowTiles, slot = warp / Tr::kRowTiles;
  const int slot_tid = row_tile * kWarpSize + lane;  // this thread among its slot's kSlotThreads
  unsigned char* smem = reinterpret_cast<unsigned char*>(fjk_dynamic_smem);
  const unsigned s_q = smem_addr(smem);
  const unsigned s_slot = s_q + Tr::kKvOffset + slot * Tr::kSlotBytes;
  // The slot's warps meet here before reading a stage they loaded together and before refilling it.
  auto slot_sync = [&]() {
    if constexpr (Tr::kRowTiles == 1) {
      __syncwarp();
    } else {
      named_barrier_sync(1 + slot, Tr::kSlotThreads);
    }
  };
  const int h0 = group * P.pack_heads;  // every packed head has this head's block lists (the planner's rule)
  const int h_kv = h0 / p.q_per_kv;
  const unsigned short* k_ptr = static_cast<const unsigned short*>(p.k) + b * p.k_stride.b + h_kv * p.k_stride.h;
  const unsigned short* v_ptr = static_cast<const unsigned short*>(p.v) + b * p.v_stride.b + h_kv * p.v_stride.h;

  load_packed_q<Tr>(s_q, P, b, group, row_group, tid);
  cp_async_commit();
  const KvTileCursor cursor = make_kv_cursor(p, b, h0, 0, Tr::kBlockN);
  const int t_begin = (int)((long long)split * cursor.num_tiles / P.splits);
  const int t_end = (int)((long long)(split + 1) * cursor.num_tiles / P.splits);
  // This slot's tiles: t_begin + slot, + kSlots, ... (slot-uniform).
  const int mine = t_end - t_begin > slot ? (t_end - t_begin - slot + Tr::kSlots - 1) / Tr::kSlots : 0;
  const int len_kv = sequence_kv_len(P, b);
  auto load_tile = [&](int j, int stage) {
    const int kv0 = cursor.kv_start(t_begin + slot + j * Tr::kSlots);
    const unsigned s_k = s_slot + stage * (Tr::kKStageBytes + Tr::kVStageBytes);
    // Rows past the sequence (or of a bad page) are zero-filled: no memory is read for them.
    const unsigned short* k_rows = kv_tile_rows(P, k_ptr, p.k_stride.l, b, kv0);
    const unsigned short* v_rows = kv_tile_rows(P, v_ptr, p.v_stride.l, b, kv0);
    const int left = len_kv - kv0;
    const int valid = k_rows == nullptr ? 0 : (left < 0 ? 0 : (left < Tr::kBlockN ? left : Tr::kBlockN));
    load_kv_rows<Tr::kBlockN, Tr::kHeadDim, Tr::kKPitch, Tr::kSlotThreads>(s_k, k_rows, p.k_stride.l, valid, k_ptr,
                                                                           slot_tid);
    load_kv_rows<Tr::kBlockN, Tr::kHeadDimV, Tr::kVPitch, Tr::kSlotThreads>(s_k + Tr::kKStageBytes, v_rows,
                                                                            p.v_stride.l, valid, v_ptr, slot_tid);
  };
  // Prologue: tiles 0 .. kStages - 2 in flight (one commit group each, empty past the slot's tiles).
#pragma unroll
  for (int j = 0; j < Tr::kStages - 1; ++j) {
    if (j < mine) load_tile(j, j);
    cp_async_commit();
  }
  cp_async_wait<Tr::kStages - 1>();  // the Q group; the tiles may still be in flight
  __syncthreads();
  unsigned qf[1][Tr::kStepsD][4];
  {
    const unsigned a = s_q + row_tile * kDecodeRows * Tr::kQPitch * kElemBytes + a_lane_offset<Tr::kQPitch, false>(lane);
#pragma unroll
    for (int kk = 0; kk < Tr::kStepsD; ++kk) load_a_frag<Tr::kQPitch, false>(qf[0][kk], a, 0, kk);
  }
  const PackedRows rows = packed_rows(P, b, group, row_group * Tr::kRows + row_tile * kDecodeRows, lane);
  const float factor = Var::kScoreModIsNoop ? p.scale * fj::kLog2e : fj::kLog2e;
  float o[1][Tr::kTilesDv][4];
  zero_acc(o);
  RowStats<2> st;
  init_row_stats(st);
#pragma unroll 1
  for (int j = 0; j < mine; ++j) {
    const int stage = j % Tr::kStages;
    // Into the stage tile j - 1 used: every warp of the slot left it at the end of the last iteration.
    if (j + Tr::kStages - 1 < mine) load_tile(j + Tr::kStages - 1, (j + Tr::kStages - 1) % Tr::kStages);
    cp_async_commit();
    cp_async_wait<Tr::kStages - 1>();  // tile j has landed (this thread's copies) ...
    slot_sync();         // ... and those of every thread of the slot
    const int t = t_begin + slot + j * Tr::kSlots;
    const int kv0 = cursor.kv_start(t);
    const unsigned s_k = s_slot + stage * (Tr::kKStageBytes + Tr::kVStageBytes);
    // A tile past the sequence's keys (a mask made for a longer cache, kv_lengths) has nothing to add.
    if (kv0 < len_kv) {
      const bool poisoned = P.page_table != nullptr && kv_tile_rows(P, k_ptr, 0, b, kv0) == nullptr;
      decode_tile<Tr, Var>(o, st, qf, s_k, s_k + Tr::kKStageBytes, p, b, rows, kv0, t < cursor.partial_tiles,
                           poisoned, factor, lane);
    }
    slot_sync();  // every warp of the slot is done with this stage before the next iteration refills it
  }
  cp_async_wait<0>();
  __syncthreads();  // the K/V region becomes the merge staging
  decode_merge_slots<Tr>(o, st, smem, P, b, group, row_group, split, factor, slot, row_tile, lane, tid);
}

/// The combine kernel: one warp per output row (b, h, q), kWarps rows per CTA over B * Hq * Q_LEN rows.
template <class Tr, class Var>
__device__ __forceinline__ void attention_decode_combine(const DecodeParams& P) {
  const FwdParams& p = P.p;
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const long long row = (long long)blockIdx.x * Tr::kWarps + warp;
  if (row >= (long long)p.batch * p.heads_q * p.len_q) return;  // warp-uniform
  const int q = (int)(row % p.len_q), h = (int)(row / p.len_q % p.heads_q), b = (int)(row / p.len_q / p.heads_q);
  float sink = 0.0f;
  if constexpr (kHasSinkOf<Var>) sink = Var::sink_mod(b, h, q, p.cap);
  const long long base = row * P.splits;
  const SplitMerge m = merge_splits(P.part_lse + base, 1, P.splits, kHasSinkOf<Var>, sink);
  unsigned short* o_row = static_cast<unsigned short*>(p.o) + b * p.o_stride.b + h * p.o_stride.h + q * p.o_stride.l;
  // Lane l writes columns 2 l, 2 l + 1, then 64 further on: pairs, so each store is one 32-bit word.
#pragma unroll 1
  for (int col = 2 * lane; col < Tr::kHeadDimV; col += 2 * kWarpSize) {
    float a = 0.0f, c = 0.0f;
#pragma unroll 1
    for (int s = 0; s < P.splits; ++s) {
      const float w = split_weight(m, P.part_lse[base + s]);
      const float* src = P.part_o + (base + s) * Tr::kHeadDimV + col;
      // An empty split has weight 0 and o = 0 (decode_merge_warps writes 0 where l = 0).
      a += w * src[0];
      c += w * src[1];
    }
    *reinterpret_cast<unsigned*>(o_row + col) = pack_half2<Tr::kIsBf16>(a, c);
  }
  if (lane == 0) {
    p.lse[b * p.lse_stride.b + h * p.lse_stride.h + q * p.lse_stride.l] = m.lse;
    if (p.max_score != nullptr) {
      float top = neg_inf();
      bool nan = false;
      for (int s = 0; s < P.splits; ++s) {
        const float x = P.part_max[base + s];
        nan = nan || x != x;
        top = fmaxf(top, x);
      }
      p.max_score[b * p.max_score_stride.b + h * p.max_score_stride.h + q * p.max_score_stride.l] =
          nan ? fj::quietNaN() : top;
    }
  }
}

}  // namespace fjk
