// The deterministic dQ kernel of the attention backward: dQ of kBlockM query rows of one (batch, head),
// computed without atomics, so that BackwardOptions::deterministic gives bitwise-repeatable results.
//
// It walks the forward's kv lists like the forward kernel (partial blocks, then full ones) and recomputes
// S = Q K^T and dP = dO V^T per kv tile: two more products than the atomic path, in exchange for a fixed
// summation order. Every warp owns 16 query rows and whole kv tiles, so dS goes from the dP accumulator
// straight into the A fragments of dQ += dS K, never through shared memory:
//
//   load Q, dO (cp.async), K/V tile 0; LSE2 / Delta of the lane's rows into registers
//   for each kv tile: barrier; start loading tile t + 1 (two-stage ring)
//     S = Q K^T; P (masked); dP = dO V^T; dS; dQ += dS K
//   dQ *= scale, staged in the Q region, written with 16-byte stores
#pragma once

#include "codegen/templates/sm80/attention_bwd_phases.cuh"

namespace fjk {

/// The next kv tile of query row block q_block (the forward's lists).
template <class Tr>
__device__ __forceinline__ BwdTile next_kv_tile(BlockWalk& w, const BwdParams& p, int b, int q_block) {
  return walk_next(w, p.kv_partial, p.kv_full, b, q_block, p.mask_block_kv, Tr::kBlockN, p.len_kv);
}

/// Starts the copies of one kv tile's K and V rows into ring stage `stage`.
template <class Tr>
__device__ __forceinline__ void load_kv_tile(unsigned s_base, int stage, int kv0, const unsigned short* k_ptr,
                                             const unsigned short* v_ptr, const BwdParams& p, int tid) {
  bwd_load_rows_async<Tr::kBlockN, Tr::kHeadDim, Tr::kKPitch, Tr::kNThreads>(
      s_base + Tr::kKOffset + stage * Tr::kKStageBytes, k_ptr, p.k_stride.l, kv0, p.len_kv, tid);
  bwd_load_rows_async<Tr::kBlockN, Tr::kHeadDimV, Tr::kVPitch, Tr::kNThreads>(
      s_base + Tr::kVOffset + stage * Tr::kVStageBytes, v_ptr, p.v_stride.l, kv0, p.len_kv, tid);
}

/// One kv tile: S, P, dP, dS, dQ += dS K. `lse2` / `delta` are the lane's rows' statistics.
template <class Tr, class Var, int kMode>
__device__ __forceinline__ void dq_tile(float (&dq)[Tr::kTM][Tr::kDqTN][4], const float (&lse2)[Tr::kTM][2],
                                        const float (&delta)[Tr::kTM][2], const int (&visible)[Tr::kTM][2],
                                        unsigned s_base, const BwdTile& tile,
                                        int stage, const BwdParams& p, const fj::GradArgs& discard, int b, int h,
                                        int q0, int warp, int lane) {
  const int row0 = warp * Tr::kTM * kMmaRows;
  const unsigned s_k = s_base + Tr::kKOffset + stage * Tr::kKStageBytes;
  const unsigned s_v = s_base + Tr::kVOffset + stage * Tr::kVStageBytes;
  const int q_first = q0 + row0 + (lane >> 2);
  const int kv_first = tile.start + 2 * (lane & 3);

  float s[Tr::kTM][Tr::kTN][4];
  zero_acc(s);
  warp_gemm_ss<Tr::kIsBf16, Tr::kTM, Tr::kTN, Tr::kHeadDim / kMmaK, false, Tr::kQPitch, false, Tr::kKPitch,
               Tr::kHeadDim / kMmaK>(s, s_base + Tr::kQOffset + smem_offset<Tr::kQPitch>(row0, 0), s_k, lane);
  TileBits<Tr::kTM * Tr::kTN * 4> bits;
  if constexpr (!kBwdKeepsRawScores<Var>) {
    compute_probs<Var, Tr::kTM, Tr::kTN, kMode>(s, s, bits, lse2, visible, p, b, h, q_first, kv_first, tile.partial);
  } else {
    // Only the keep bits are needed here (compute_ds recomputes P from S); the probabilities are dead code.
    float unused[Tr::kTM][Tr::kTN][4];
    compute_probs<Var, Tr::kTM, Tr::kTN, kMode>(s, unused, bits, lse2, visible, p, b, h, q_first, kv_first,
                                                tile.partial);
  }
  float dp[Tr::kTM][Tr::kTN][4];
  zero_acc(dp);
  warp_gemm_ss<Tr::kIsBf16, Tr::kTM, Tr::kTN, Tr::kHeadDimV / kMmaK, false, Tr::kDoPitch, false, Tr::kVPitch,
               Tr::kHeadDimV / kMmaK>(dp, s_base + Tr::kDoOffset + smem_offset<Tr::kDoPitch>(row0, 0), s_v, lane);
  compute_ds<Var, Tr::kTM, Tr::kTN, kMode>(s, dp, bits, lse2, delta, visible, p, discard, DroppedGrads{}, b, h,
                                           q_first, kv_first);

  unsigned ds_a[Tr::kTM][Tr::kTN / 2][4];
  acc_to_a_frags<Tr::kIsBf16>(ds_a, dp);
  // B = K stored [kv][d]: k-major.
  warp_gemm_rs<Tr::kIsBf16, Tr::kTM, Tr::kDqTN, Tr::kTN / 2, true, Tr::kKPitch>(dq, ds_a, s_k, lane);
}

/// The kernel body. Launch with DqTraits::kNThreads threads, kSmemBytes of dynamic shared memory and the
/// grid (q blocks, Hq, B) of codegen/BackwardConfig.h's bwdDqLaunch().
template <class Tr, class Var>
__device__ __forceinline__ void attention_bwd_dq(const BwdParams& p) {
  // Causal-like masks give the last row blocks the most kv tiles: schedule them first.
  const int q0 = (gridDim.x - 1 - blockIdx.x) * Tr::kBlockM;
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int h_kv = h / p.q_per_kv;
  // The kernel requires mask_block_q % kBlockM == 0: the row block lies in one mask row block.
  const int q_block = q0 / p.mask_block_q;
  const int tid = threadIdx.x;
  const int warp = tid / kWarpSize;
  const int lane = tid % kWarpSize;
  unsigned char* smem = reinterpret_cast<unsigned char*>(fjk_bwd_smem);
  const unsigned s_base = smem_addr(smem);
  BwdTileRing& ring = *reinterpret_cast<BwdTileRing*>(smem + Tr::kRingOffset);

  const unsigned short* q_ptr = static_cast<const unsigned short*>(p.q) + b * p.q_stride.b + h * p.q_stride.h;
  const unsigned short* do_ptr = static_cast<const unsigned short*>(p.dout) + b * p.do_stride.b + h * p.do_stride.h;
  const unsigned short* k_ptr = static_cast<const unsigned short*>(p.k) + b * p.k_stride.b + h_kv * p.k_stride.h;
  const unsigned short* v_ptr = static_cast<const unsigned short*>(p.v) + b * p.v_stride.b + h_kv * p.v_stride.h;
  bwd_load_rows_async<Tr::kBlockM, Tr::kHeadDim, Tr::kQPitch, Tr::kNThreads>(s_base + Tr::kQOffset, q_ptr,
                                                                             p.q_stride.l, q0, p.len_q, tid);
  bwd_load_rows_async<Tr::kBlockM, Tr::kHeadDimV, Tr::kDoPitch, Tr::kNThreads>(s_base + Tr::kDoOffset, do_ptr,
                                                                               p.do_stride.l, q0, p.len_q, tid);
  cp_async_commit();
  if (tid == 0) {
    walk_begin(ring.walk, h, h + 1);
    ring.slot[0] = next_kv_tile<Tr>(ring.walk, p, b, q_block);
    ring.slot[1] = next_kv_tile<Tr>(ring.walk, p, b, q_block);
  }
  __syncthreads();
  const BwdTile first = ring.slot[0];
  if (first.h >= 0) load_kv_tile<Tr>(s_base, 0, first.start, k_ptr, v_ptr, p, tid);
  cp_async_commit();

  // The workspace holds len_q_pad rows per head, so the rows of a tile that crosses Lq are readable
  // (LSE2 = +inf, Delta = 0 there).
  float lse2[Tr::kTM][2], delta[Tr::kTM][2];
  const long long stat_row =
      ((long long)b * p.heads_q + h) * p.len_q_pad + q0 + warp * Tr::kTM * kMmaRows + (lane >> 2);
#pragma unroll
  for (int i = 0; i < Tr::kTM; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      lse2[i][half] = p.lse2[stat_row + i * kMmaRows + half * (kMmaRows / 2)];
      delta[i][half] = p.delta[stat_row + i * kMmaRows + half * (kMmaRows / 2)];
    }
  int visible[Tr::kTM][2];
  read_row_visible<Var>(visible, p, b, h, q0 + warp * Tr::kTM * kMmaRows + (lane >> 2));

  // The captured-tensor gradients come from the dK/dV kernel, which sees every (q, kv) pair too. This
  // kernel's score_mod_grad calls add theirs into one shared-memory float per thread instead (no
  // contention, never read): the generated gradient has no form without the additions.
  float* discard_slot = reinterpret_cast<float*>(smem + Tr::kDiscardOffset) + tid;
  fj::GradArgs discard;
#pragma unroll
  for (int k = 0; k < fj::kMaxCapturedTensors; ++k) {
    discard.grad[k] = discard_slot;
#pragma unroll
    for (int d = 0; d < fj::kMaxRank; ++d) discard.stride[k][d] = 0;
  }

  float dq[Tr::kTM][Tr::kDqTN][4];
  zero_acc(dq);
#pragma unroll 1
  for (int it = 0;; ++it) {
    const BwdTile tile = ring.slot[it % BwdTileRing::kSlots];
    if (tile.h < 0) break;  // uniform: every thread reads the same slot
    const int stage = it & 1;
    cp_async_wait<0>();
    // Tile `it` is visible to every warp, and every warp has finished tile it - 1, whose stage the next
    // load overwrites.
    __syncthreads();
    const BwdTile next = ring.slot[(it + 1) % BwdTileRing::kSlots];
    if (next.h >= 0) load_kv_tile<Tr>(s_base, stage ^ 1, next.start, k_ptr, v_ptr, p, tid);
    cp_async_commit();
    if (tid == 0) ring.slot[(it + 2) % BwdTileRing::kSlots] = next_kv_tile<Tr>(ring.walk, p, b, q_block);
    const bool check = tile.partial || q0 + Tr::kBlockM > p.len_q || tile.start + Tr::kBlockN > p.len_kv;
    if (check) {
      dq_tile<Tr, Var, kCheck>(dq, lse2, delta, visible, s_base, tile, stage, p, discard, b, h, q0, warp, lane);
    } else {
      dq_tile<Tr, Var, kNoCheck>(dq, lse2, delta, visible, s_base, tile, stage, p, discard, b, h, q0, warp, lane);
    }
  }

  cp_async_wait<0>();  // with no tiles the Q copy may still be landing in the region dQ reuses
  __syncthreads();
  // dQ = scale * dS K (s = scale * q.k). Each warp stages its own rows, then the CTA stores them.
  unsigned short* dq_s = reinterpret_cast<unsigned short*>(smem + Tr::kQOffset);
  store_acc_smem<Tr::kIsBf16, Tr::kQPitch>(dq_s + warp * Tr::kTM * kMmaRows * Tr::kQPitch, dq, p.scale, lane);
  __syncthreads();
  unsigned short* dq_ptr = static_cast<unsigned short*>(p.dq) + b * p.dq_stride.b + h * p.dq_stride.h;
  bwd_store_rows<Tr::kBlockM, Tr::kHeadDim, Tr::kQPitch, Tr::kNThreads>(dq_ptr, p.dq_stride.l, q0, p.len_q, dq_s, tid);
}

}  // namespace fjk
