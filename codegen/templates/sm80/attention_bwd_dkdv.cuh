// The block-sparse attention backward's main kernel (FlashAttention-2 style, mma.sync, sm_80 and newer):
// dK and dV of kBlockN kv rows of one (batch, kv head), and, in the default mode, dQ contributions added
// into a float32 accumulator with atomics.
//
// attention_bwd_dkdv<Traits, Variant> is the whole kernel body; the generated instantiation (see
// codegen/BackwardConfig.cpp) wraps it in an extern "C" __global__ function. One CTA:
//
//   load K, V (cp.async); thread 0 starts walking the transposed BlockMask lists of every query head of
//   the kv head's group (each head's own lists: a per-head mask keeps heads apart)
//   for each q tile (head h, rows q0..q0 + kBlockM) of the walk:
//     barrier; start loading the next q tile's Q, dO, LSE2, Delta      -- overlaps everything below
//     S = Q K^T; P = exp(score_mod(scale S) - LSE), masked -> P to shared memory
//     dP = dO V^T; dS = score_mod_grad(scale S, P (dP - Delta)) -> dS to shared memory
//       (captured-tensor gradients: into the tile's shared-memory windows, attention_bwd_grad_window.cuh)
//     barrier; [flush the gradient windows]; dV += P^T dO; dK += dS^T Q; dQ_accum[h, q0..] += dS K (atomics)
//   dK *= scale; dK, dV staged through shared memory and written with 16-byte stores
//
// GQA needs no reduction: the CTA walks all of its kv head's query heads, so dK / dV are summed in
// registers and written once, in a fixed order.
#pragma once

#include "codegen/templates/common/sink_grad.cuh"
#include "codegen/templates/sm80/attention_bwd_grad_window.cuh"

namespace fjk {

/// The next q tile of the dK/dV walk: the transposed lists of kv block `kv_block`.
template <class Tr>
__device__ __forceinline__ BwdTile next_q_tile(BlockWalk& w, const BwdParams& p, int b, int kv_block) {
  return walk_next(w, p.q_partial, p.q_full, b, kv_block, p.mask_block_q, Tr::kBlockM, p.len_q);
}

/// Starts the copies of one q tile's Q and dO rows and its LSE2 / Delta values into ring stage `stage`.
template <class Tr>
__device__ __forceinline__ void load_q_tile(unsigned s_base, int stage, const BwdTile& t, const BwdParams& p, int b,
                                            int tid) {
  const unsigned short* q_ptr = static_cast<const unsigned short*>(p.q) + b * p.q_stride.b + t.h * p.q_stride.h;
  const unsigned short* do_ptr = static_cast<const unsigned short*>(p.dout) + b * p.do_stride.b + t.h * p.do_stride.h;
  bwd_load_rows_async<Tr::kBlockM, Tr::kHeadDim, Tr::kQPitch, Tr::kNThreads>(
      s_base + Tr::kQOffset + stage * Tr::kQStageBytes, q_ptr, p.q_stride.l, t.start, p.len_q, tid);
  bwd_load_rows_async<Tr::kBlockM, Tr::kHeadDimV, Tr::kDoPitch, Tr::kNThreads>(
      s_base + Tr::kDoOffset + stage * Tr::kDoStageBytes, do_ptr, p.do_stride.l, t.start, p.len_q, tid);
  const long long row = ((long long)b * p.heads_q + t.h) * p.len_q_pad + t.start;
  bwd_load_stats_async<Tr::kBlockM>(s_base + Tr::kLseOffset + stage * Tr::kRowStatBytes,
                                    s_base + Tr::kDeltaOffset + stage * Tr::kRowStatBytes, p.lse2 + row,
                                    p.delta + row, tid);
}

/// Reads LSE2 or Delta of this lane's S rows (rows row0 + 16 i + g + 8 half of the tile) from shared memory.
template <int kTM>
__device__ __forceinline__ void read_row_stats(float (&out)[kTM][2], const float* stats, int row0, int lane) {
#pragma unroll
  for (int i = 0; i < kTM; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      out[i][half] = stats[row0 + i * kMmaRows + (lane >> 2) + half * (kMmaRows / 2)];
    }
}

/// dP = dO V^T for the warp's S tile (q rows row0.., kv columns col0..).
template <class Tr>
__device__ __forceinline__ void dkdv_compute_dp(float (&dp)[Tr::kSdpTM][Tr::kSdpTN][4], unsigned s_do,
                                                unsigned s_base, int row0, int col0, int lane) {
  zero_acc(dp);
  warp_gemm_ss<Tr::kIsBf16, Tr::kSdpTM, Tr::kSdpTN, Tr::kHeadDimV / kMmaK, false, Tr::kDoPitch, false, Tr::kVPitch,
               Tr::kGemmUnroll>(dp, s_do + smem_offset<Tr::kDoPitch>(row0, 0),
                                s_base + Tr::kVOffset + smem_offset<Tr::kVPitch>(col0, 0), lane);
}

/// S = Q K^T (raw dot products) for the warp's tile.
template <class Tr>
__device__ __forceinline__ void dkdv_compute_s(float (&s)[Tr::kSdpTM][Tr::kSdpTN][4], unsigned s_q, unsigned s_base,
                                               int row0, int col0, int lane) {
  zero_acc(s);
  warp_gemm_ss<Tr::kIsBf16, Tr::kSdpTM, Tr::kSdpTN, Tr::kHeadDim / kMmaK, false, Tr::kQPitch, false, Tr::kKPitch,
               Tr::kGemmUnroll>(s, s_q + smem_offset<Tr::kQPitch>(row0, 0),
                                s_base + Tr::kKOffset + smem_offset<Tr::kKPitch>(col0, 0), lane);
}

/// First half of a q tile: S, dP, P (to shared memory), dS (to shared memory). kMode: whether the tile
/// needs masking (all branches here are CTA-uniform).
///
/// Registers decide the order. Next to the 128-odd dK / dV accumulator registers only two S-shaped tiles
/// fit. Without a score_mod those are dP and P (P replaces S: the gradient never needs the raw score), and
/// dP is computed first so that the element-wise work runs with no product in flight. With a score_mod
/// the raw S must survive until score_mod_grad: P goes to shared memory before dP exists, and compute_ds
/// recomputes it from S.
template <class Tr, class Var, int kMode>
__device__ __forceinline__ void dkdv_probs_and_ds(unsigned s_base, unsigned char* smem, const BwdTile* tile_s,
                                                  int ring_slot, int stage, const BwdParams& p,
                                                  const SiteCachedGrads<kProbGradSitesOf<Var>>& prob_grads) {
  const BwdTile tile = *tile_s;
  const int b = block_z_in_loop();
  const int n0 = block_x_in_loop() * Tr::kBlockN;
  const int warp = thread_in_loop() / kWarpSize;
  const int lane = thread_in_loop() % kWarpSize;
  const int row0 = (warp / Tr::kSdpWarpsN) * Tr::kSdpTM * kMmaRows;  // q row of the warp tile
  const int col0 = (warp % Tr::kSdpWarpsN) * Tr::kSdpTN * kMmaCols;  // kv column of the warp tile
  const unsigned s_q = s_base + Tr::kQOffset + stage * Tr::kQStageBytes;
  const unsigned s_do = s_base + Tr::kDoOffset + stage * Tr::kDoStageBytes;
  const float* lse_s = reinterpret_cast<const float*>(smem + Tr::kLseOffset + stage * Tr::kRowStatBytes);
  const float* delta_s = reinterpret_cast<const float*>(smem + Tr::kDeltaOffset + stage * Tr::kRowStatBytes);
  unsigned short* p_s = reinterpret_cast<unsigned short*>(smem + Tr::kPOffset) + row0 * Tr::kPPitch + col0;
  unsigned short* ds_s = reinterpret_cast<unsigned short*>(smem + Tr::kDsOffset) + row0 * Tr::kPPitch + col0;
  const int q_first = tile.start + row0 + (lane >> 2);
  const int kv_first = n0 + col0 + 2 * (lane & 3);

  float s[Tr::kSdpTM][Tr::kSdpTN][4];
  float dp[Tr::kSdpTM][Tr::kSdpTN][4];
  float lse2[Tr::kSdpTM][2], delta[Tr::kSdpTM][2];
  TileBits<Tr::kSdpTM * Tr::kSdpTN * 4> bits;
  int visible[Tr::kSdpTM][2];
  read_row_visible<Var>(visible, p, b, tile.h, q_first);
  if constexpr (!kBwdKeepsRawScores<Var>) {
    dkdv_compute_dp<Tr>(dp, s_do, s_base, row0, col0, lane);
    dkdv_compute_s<Tr>(s, s_q, s_base, row0, col0, lane);
    read_row_stats(lse2, lse_s, row0, lane);
    compute_probs<Var, Tr::kSdpTM, Tr::kSdpTN, kMode>(s, s, bits, lse2, visible, p, b, tile.h, q_first, kv_first,
                                                      tile.partial);
    store_acc_smem<Tr::kIsBf16, Tr::kPPitch>(p_s, s, 1.0f, lane);
  } else {
    dkdv_compute_s<Tr>(s, s_q, s_base, row0, col0, lane);
    read_row_stats(lse2, lse_s, row0, lane);
    float pr[Tr::kSdpTM][Tr::kSdpTN][4];
    compute_probs<Var, Tr::kSdpTM, Tr::kSdpTN, kMode>(s, pr, bits, lse2, visible, p, b, tile.h, q_first, kv_first,
                                                      tile.partial);
    store_acc_smem<Tr::kIsBf16, Tr::kPPitch>(p_s, pr, 1.0f, lane);
    dkdv_compute_dp<Tr>(dp, s_do, s_base, row0, col0, lane);
    read_row_stats(lse2, lse_s, row0, lane);
  }
  read_row_stats(delta, delta_s, row0, lane);
  if constexpr (Tr::kGradWindows > 0) {
    compute_ds<Var, Tr::kSdpTM, Tr::kSdpTN, kMode>(s, dp, bits, lse2, delta, visible, p,
                                                   grad_window_sink<Tr>(smem, ring_slot, p), prob_grads, b, tile.h,
                                                   q_first, kv_first);
  } else {
    compute_ds<Var, Tr::kSdpTM, Tr::kSdpTN, kMode>(s, dp, bits, lse2, delta, visible, p, p.grads, prob_grads, b,
                                                   tile.h, q_first, kv_first);
  }
  store_acc_smem<Tr::kIsBf16, Tr::kPPitch>(ds_s, dp, 1.0f, lane);
}

/// dQ_accum[h, q0..] += dS K for one q tile (unscaled; the convert kernel applies the scale). Rows past Lq
/// have dS = 0 and lie inside the padded accumulator, so they need no bound.
template <class Tr>
__device__ __forceinline__ void dkdv_add_dq(unsigned s_base, const BwdTile& tile, const BwdParams& p, int b, int warp,
                                            int lane) {
  const int row0 = (warp / Tr::kDqWarpsD) * Tr::kDqTM * kMmaRows;
  const int col0 = (warp % Tr::kDqWarpsD) * Tr::kDqTN * kMmaCols;
  float dq[Tr::kDqTM][Tr::kDqTN][4];
  zero_acc(dq);
  // A = dS stored [q][kv] (row-major m x k); B = K stored [kv][d] (k-major).
  warp_gemm_ss<Tr::kIsBf16, Tr::kDqTM, Tr::kDqTN, Tr::kBlockN / kMmaK, false, Tr::kPPitch, true, Tr::kKPitch,
               Tr::kGemmUnroll>(
      dq, s_base + Tr::kDsOffset + smem_offset<Tr::kPPitch>(row0, 0),
      s_base + Tr::kKOffset + smem_offset<Tr::kKPitch>(0, col0), lane);
  float* dst = p.dq_accum +
               (((long long)b * p.heads_q + tile.h) * p.len_q_pad + tile.start + row0 + (lane >> 2)) * Tr::kHeadDim +
               col0 + 2 * (lane & 3);
#pragma unroll
  for (int i = 0; i < Tr::kDqTM; ++i) {
#pragma unroll
    for (int j = 0; j < Tr::kDqTN; ++j) {
      float* at = dst + (i * kMmaRows) * Tr::kHeadDim + j * kMmaCols;
      red_add_f32x2(at, dq[i][j][0], dq[i][j][1]);
      red_add_f32x2(at + (kMmaRows / 2) * Tr::kHeadDim, dq[i][j][2], dq[i][j][3]);
    }
  }
}

/// Second half of a q tile, after the barrier that publishes P and dS: dV += P^T dO, dK += dS^T Q and,
/// in the atomic mode, the tile's dQ.
template <class Tr>
__device__ __forceinline__ void dkdv_accumulate(float (&dv)[Tr::kDkvTM][Tr::kDvTN][4],
                                                float (&dk)[Tr::kDkvTM][Tr::kDkTN][4], unsigned s_base,
                                                const BwdTile* tile_s, int stage, const BwdParams& p) {
  const int b = block_z_in_loop();
  const int warp = thread_in_loop() / kWarpSize;
  const int lane = thread_in_loop() % kWarpSize;
  const int row0 = (warp / Tr::kDkvWarpsD) * Tr::kDkvTM * kMmaRows;  // kv row of the warp's dK / dV tile
  const int wd = warp % Tr::kDkvWarpsD;
  const unsigned s_q = s_base + Tr::kQOffset + stage * Tr::kQStageBytes;
  const unsigned s_do = s_base + Tr::kDoOffset + stage * Tr::kDoStageBytes;
  if constexpr (Tr::kAtomicDq && Tr::kDqFirst) dkdv_add_dq<Tr>(s_base, *tile_s, p, b, warp, lane);
  // A = P^T and dS^T: P / dS are stored [q][kv], i.e. transposed for an A whose rows are kv. B = dO / Q
  // stored [q][d]: k-major.
  warp_gemm_ss<Tr::kIsBf16, Tr::kDkvTM, Tr::kDvTN, Tr::kBlockM / kMmaK, true, Tr::kPPitch, true, Tr::kDoPitch,
               Tr::kGemmUnroll>(
      dv, s_base + Tr::kPOffset + smem_offset<Tr::kPPitch>(0, row0),
      s_do + smem_offset<Tr::kDoPitch>(0, wd * Tr::kDvTN * kMmaCols), lane);
  warp_gemm_ss<Tr::kIsBf16, Tr::kDkvTM, Tr::kDkTN, Tr::kBlockM / kMmaK, true, Tr::kPPitch, true, Tr::kQPitch,
               Tr::kGemmUnroll>(
      dk, s_base + Tr::kDsOffset + smem_offset<Tr::kPPitch>(0, row0),
      s_q + smem_offset<Tr::kQPitch>(0, wd * Tr::kDkTN * kMmaCols), lane);
  if constexpr (Tr::kAtomicDq && !Tr::kDqFirst) dkdv_add_dq<Tr>(s_base, *tile_s, p, b, warp, lane);
}

/// Writes dV and scale * dK (s = scale * q.k, so dK = scale * dS^T Q; the scale is applied once here
/// rather than per tile) through the K / V shared-memory regions, which every warp has finished with.
template <class Tr>
__device__ __forceinline__ void dkdv_epilogue(const float (&dv)[Tr::kDkvTM][Tr::kDvTN][4],
                                              const float (&dk)[Tr::kDkvTM][Tr::kDkTN][4], unsigned char* smem,
                                              const BwdParams& p, int b, int h_kv, int n0, int warp, int lane,
                                              int tid) {
  const int row0 = (warp / Tr::kDkvWarpsD) * Tr::kDkvTM * kMmaRows;
  const int wd = warp % Tr::kDkvWarpsD;
  unsigned short* v_s = reinterpret_cast<unsigned short*>(smem + Tr::kVOffset);
  unsigned short* k_s = reinterpret_cast<unsigned short*>(smem + Tr::kKOffset);
  store_acc_smem<Tr::kIsBf16, Tr::kVPitch>(v_s + row0 * Tr::kVPitch + wd * Tr::kDvTN * kMmaCols, dv, 1.0f, lane);
  store_acc_smem<Tr::kIsBf16, Tr::kKPitch>(k_s + row0 * Tr::kKPitch + wd * Tr::kDkTN * kMmaCols, dk, p.scale, lane);
  __syncthreads();
  unsigned short* dv_ptr = static_cast<unsigned short*>(p.dv) + b * p.dv_stride.b + h_kv * p.dv_stride.h;
  unsigned short* dk_ptr = static_cast<unsigned short*>(p.dk) + b * p.dk_stride.b + h_kv * p.dk_stride.h;
  // Rows at or past Lkv belong to no key: they are computed (from zero-filled K / V) but not stored.
  bwd_store_rows<Tr::kBlockN, Tr::kHeadDimV, Tr::kVPitch, Tr::kNThreads>(dv_ptr, p.dv_stride.l, n0, p.len_kv, v_s, tid);
  bwd_store_rows<Tr::kBlockN, Tr::kHeadDim, Tr::kKPitch, Tr::kNThreads>(dk_ptr, p.dk_stride.l, n0, p.len_kv, k_s, tid);
}

/// The kernel body. Launch with BwdTraits::kNThreads threads, kSmemBytes of dynamic shared memory and the
/// grid (kv blocks, Hkv, B) of codegen/BackwardConfig.h's bwdDkDvLaunch().
template <class Tr, class Var>
__device__ __forceinline__ void attention_bwd_dkdv(const BwdParams& p) {
  const int h_kv = blockIdx.y;
  const int b = blockIdx.z;
  const int n0 = blockIdx.x * Tr::kBlockN;
  // The kernel requires mask_block_kv % kBlockN == 0, so all kBlockN rows lie in one mask kv block.
  const int kv_block = n0 / p.mask_block_kv;
  const int tid = threadIdx.x;
  unsigned char* smem = reinterpret_cast<unsigned char*>(fjk_bwd_smem);
  const unsigned s_base = smem_addr(smem);
  BwdTileRing& ring = *reinterpret_cast<BwdTileRing*>(smem + Tr::kRingOffset);

  const unsigned short* k_ptr = static_cast<const unsigned short*>(p.k) + b * p.k_stride.b + h_kv * p.k_stride.h;
  const unsigned short* v_ptr = static_cast<const unsigned short*>(p.v) + b * p.v_stride.b + h_kv * p.v_stride.h;
  bwd_load_rows_async<Tr::kBlockN, Tr::kHeadDim, Tr::kKPitch, Tr::kNThreads>(s_base + Tr::kKOffset, k_ptr,
                                                                             p.k_stride.l, n0, p.len_kv, tid);
  bwd_load_rows_async<Tr::kBlockN, Tr::kHeadDimV, Tr::kVPitch, Tr::kNThreads>(s_base + Tr::kVOffset, v_ptr,
                                                                              p.v_stride.l, n0, p.len_kv, tid);
  cp_async_commit();
  if (tid == 0) {
    walk_begin(ring.walk, h_kv * p.q_per_kv, (h_kv + 1) * p.q_per_kv);
    ring.slot[0] = next_q_tile<Tr>(ring.walk, p, b, kv_block);
    ring.slot[1] = next_q_tile<Tr>(ring.walk, p, b, kv_block);
    if constexpr (Tr::kGradWindows > 0) {
      fill_grad_windows<Tr, Var>(grad_window_slots<Tr>(smem, 0), ring.slot[0], p, b, n0);
      fill_grad_windows<Tr, Var>(grad_window_slots<Tr>(smem, 1), ring.slot[1], p, b, n0);
    }
  }
  if constexpr (Tr::kGradWindows > 0) zero_grad_windows<Tr>(smem, tid);
  __syncthreads();
  if constexpr (Tr::kStages == 2) {
    const BwdTile first = ring.slot[0];
    if (first.h >= 0) load_q_tile<Tr>(s_base, 0, first, p, b, tid);
    cp_async_commit();
  }

  float dv[Tr::kDkvTM][Tr::kDvTN][4];
  float dk[Tr::kDkvTM][Tr::kDkTN][4];
  zero_acc(dv);
  zero_acc(dk);
  // A prob_mod's captured-tensor gradients, summed in registers over the whole kernel (grad_cache.cuh).
  const SiteCachedGrads<kProbGradSitesOf<Var>> prob_grads(p.grads);

#pragma unroll 1
  for (int it = 0;; ++it) {
    // Only `it` and the accumulators are carried through the loop: the tile is re-read from its slot and
    // the thread / block indices through the *_in_loop() reads, so that nothing derived from them stays in
    // registers across the loop or from one phase to the next.
    const BwdTile tile = ring.slot[it % BwdTileRing::kSlots];
    if (tile.h < 0) break;  // uniform: every thread reads the same slot
    const int stage = Tr::kStages == 2 ? (it & 1) : 0;
    if constexpr (Tr::kStages == 2) {
      cp_async_wait<0>();
      // Tile `it` has landed and is visible; every warp has finished tile it - 1, so the other stage, P and
      // dS are free.
      __syncthreads();
      const BwdTile next = ring.slot[(it + 1) % BwdTileRing::kSlots];
      if (next.h >= 0) load_q_tile<Tr>(s_base, stage ^ 1, next, p, block_z_in_loop(), thread_in_loop());
      cp_async_commit();
    } else {
      __syncthreads();  // every warp has finished tile it - 1: its stage may be overwritten
      load_q_tile<Tr>(s_base, 0, tile, p, block_z_in_loop(), thread_in_loop());
      cp_async_commit();
      cp_async_wait<0>();
      __syncthreads();
    }
    const bool check =
        tile.partial || tile.start + Tr::kBlockM > p.len_q || (block_x_in_loop() + 1) * Tr::kBlockN > p.len_kv;
    const int ring_slot = it % BwdTileRing::kSlots;
    if (check) {
      dkdv_probs_and_ds<Tr, Var, kCheck>(s_base, smem, &ring.slot[ring_slot], ring_slot, stage, p, prob_grads);
    } else {
      dkdv_probs_and_ds<Tr, Var, kNoCheck>(s_base, smem, &ring.slot[ring_slot], ring_slot, stage, p, prob_grads);
    }
    __syncthreads();  // P and dS of this tile are complete, and so are its gradient windows
    if constexpr (Tr::kGradWindows > 0) flush_grad_windows<Tr>(smem, ring_slot, thread_in_loop());
    // Thread 0 fetches tile it + 2 (see BwdTileRing) while the CTA runs the second half.
    if (thread_in_loop() == 0) {
      ring.slot[(it + 2) % BwdTileRing::kSlots] =
          next_q_tile<Tr>(ring.walk, p, block_z_in_loop(), block_x_in_loop() * Tr::kBlockN / p.mask_block_kv);
      if constexpr (Tr::kGradWindows > 0) {
        const int next_slot = (it + 2) % BwdTileRing::kSlots;
        fill_grad_windows<Tr, Var>(grad_window_slots<Tr>(smem, next_slot), ring.slot[next_slot], p, block_z_in_loop(),
                                   block_x_in_loop() * Tr::kBlockN);
      }
    }
    dkdv_accumulate<Tr>(dv, dk, s_base, &ring.slot[it % BwdTileRing::kSlots], stage, p);
  }

  if constexpr (kProbGradSitesOf<Var> > 0) prob_grads.flush_all();
  cp_async_wait<0>();  // with no tiles the K / V copies may still be landing in the staging regions
  __syncthreads();
  dkdv_epilogue<Tr>(dv, dk, smem, p, b, h_kv, n0, tid / kWarpSize, tid % kWarpSize, tid);
}

}  // namespace fjk
