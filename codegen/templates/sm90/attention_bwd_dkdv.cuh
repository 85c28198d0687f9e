// The block-sparse attention backward's dK/dV kernel of the sm90 family (Hopper, sm_90a): TMA loads into
// an mbarrier ring, wgmma, warp specialisation; dQ added into the float32 accumulator by TMA reductions.
//
// attention_bwd_dkdv_sm90<Traits, Variant> is the kernel body; the generated instantiation (codegen's
// BackwardConfig.cpp) wraps it in an extern "C" __global__ function. One CTA owns kBlockN = 128 kv rows of
// one (batch, kv head) and walks the q tiles (64 rows) of the transposed BlockMask lists of every query
// head of its GQA group, with three warpgroups:
//
//   producer (registers given back with setmaxnreg): one thread loads K and V once, then walks the lists
//     and, per q tile, loads Q, dO (TMA) and the tile's LSE2 and Delta (bulk copies) into a kStages ring,
//     with the tile's (head, first row, partial) beside them; a tile of head -1 ends the walk;
//   consumer warpgroup w (w = 0, 1) owns kv rows 64 w .. 64 w + 63 of the CTA. Per q tile:
//       S  = Q K_w^T, dP = dO V_w^T        (wgmma, both operands in shared memory; 64 x 64 each)
//       P  = exp(score_mod(S) - LSE), dS = P (dP - Delta) through score_mod_grad  (common/bwd_tile_math.cuh)
//       P, dS -> the warpgroup's chunk of shared memory (16-bit, swizzled)
//       dV += P^T dO, dK += dS^T Q          (wgmma, A = the chunk read MN-major: the transposes are free)
//       dQ_w = dS K_w                      (wgmma, 64 x D over the warpgroup's 64 kv rows)
//     then the tile's Q / dO slot goes back to the producer and dQ_w goes through the warpgroup's staging
//     buffer to a TMA reduction into dq_accum (the two warpgroups' halves add up there, in L2);
//   epilogue: dK (times scale) and dV into the warpgroup's rows of the K / V regions, TMA stores.
// The two consumer warpgroups share nothing but K, V and the ring: one's element-wise work runs while
// the other's products occupy the tensor cores.
//
// GQA needs no reduction: the CTA walks all of its kv head's query heads, so dK / dV are summed in
// registers and written once, in a fixed order. dQ's order is that of the reductions, not deterministic:
// deterministic mode builds this kernel without dQ (kAtomicDq = false) and runs the sm80 family's dQ kernel
// (a fixed order) after it.
#pragma once

#include "codegen/templates/common/bwd_tile_math.cuh"
#include "codegen/templates/common/bwd_walk.cuh"
#include "codegen/templates/common/sink_grad.cuh"
#include "codegen/templates/sm90/bwd_layout.h"
#include "codegen/templates/sm90/bwd_params.h"
#include "codegen/templates/sm90/ptx.cuh"
#include "codegen/templates/sm90/wgmma.cuh"

namespace fjk {

template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kStages_, bool kAtomicDq_ = true>
struct Sm90BwdTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kStages = kStages_;
  /// dQ by TMA reductions here; false (deterministic mode): no dQ here, the sm80 family's dQ kernel runs
  /// after this one.
  static constexpr bool kAtomicDq = kAtomicDq_;
  static constexpr int kBlockM = kSm90BwdBlockM;
  static constexpr int kBlockN = kSm90BwdBlockN;
  static constexpr int kWgKv = kSm90BwdWgKv;
  static constexpr int kConsumers = 2;
  static constexpr int kNThreads = kWarpgroupThreads * (1 + kConsumers);
  static constexpr int kSTiles = kWgKv / kMmaCols;  ///< 8-column tiles of a warp's S / dP (16 x 64)
  static constexpr Sm90BwdLayout kLayout = sm90_bwd_layout(kHeadDim, kHeadDimV, kStages, kAtomicDq);
  static constexpr int kSmemBytes = kLayout.bytes;
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;

  static_assert(kHeadDim == 64 || kHeadDim == 128, "sm90 backward: D of 64 or 128 (one wgmma N for dK and dQ)");
  static_assert(kHeadDimV == 64 || kHeadDimV == 128, "sm90 backward: Dv of 64 or 128 (one wgmma N for dV)");
  static_assert(kStages >= 1 && kStages <= 3, "a Q / dO ring of one to three stages");
  static_assert(kBwdLenPad % kBlockM == 0, "the workspace padding must cover whole q tiles");
  static_assert(kProducerRegs * kWarpgroupThreads + kConsumerRegs * kConsumers * kWarpgroupThreads <= 65536,
                "the register split must fit the register file");
};

/// Shared-memory addresses of one CTA's buffers and barriers.
template <class Tr>
struct Sm90BwdSmem {
  unsigned base;
  __device__ __forceinline__ unsigned k() const { return base + Tr::kLayout.k_offset; }
  __device__ __forceinline__ unsigned v() const { return base + Tr::kLayout.v_offset; }
  __device__ __forceinline__ unsigned q(int s) const { return base + Tr::kLayout.q_offset + s * Tr::kLayout.q_stage_bytes; }
  __device__ __forceinline__ unsigned dout(int s) const {
    return base + Tr::kLayout.do_offset + s * Tr::kLayout.do_stage_bytes;
  }
  __device__ __forceinline__ unsigned p(int wg) const { return base + Tr::kLayout.p_offset + wg * Tr::kLayout.ps_chunk_bytes; }
  /// Warpgroup wg's chunk of dS.
  __device__ __forceinline__ unsigned ds(int wg) const { return base + Tr::kLayout.ds_offset + wg * Tr::kLayout.ps_chunk_bytes; }
  __device__ __forceinline__ unsigned dq(int wg) const { return base + Tr::kLayout.dq_offset + wg * Tr::kLayout.dq_wg_bytes; }
  __device__ __forceinline__ unsigned lse2(int s) const {
    return base + Tr::kLayout.stats_offset + s * Tr::kLayout.stats_stage_bytes;
  }
  __device__ __forceinline__ unsigned delta(int s) const { return lse2(s) + Tr::kBlockM * 4; }
  __device__ __forceinline__ unsigned tile(int s) const { return base + Tr::kLayout.tile_offset + s * kSm90BwdTileSlotBytes; }
  __device__ __forceinline__ unsigned kv_full() const { return base + Tr::kLayout.bar_offset; }
  __device__ __forceinline__ unsigned full(int s) const { return kv_full() + 8 * (1 + s); }
  __device__ __forceinline__ unsigned empty(int s) const { return kv_full() + 8 * (1 + Tr::kStages + s); }
};

__device__ __forceinline__ float ld_shared_f32(unsigned addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr) : "memory");
  return v;
}

/// The producer: one thread issues every load of the CTA.
template <class Tr>
__device__ __forceinline__ void bwd_produce(const Sm90BwdParams& P, const Sm90BwdSmem<Tr>& sm, int b, int h_kv,
                                            int n0) {
  constexpr Sm90BwdLayout L = Tr::kLayout;
  const BwdParams& p = P.p;
  mbar_arrive_expect_tx(sm.kv_full(), (Tr::kHeadDim + Tr::kHeadDimV) * Tr::kBlockN * kElemBytes);
#pragma unroll
  for (int c = 0; c < Tr::kHeadDim / kSm90ChunkCols; ++c)
    tma_load_4d(sm.k() + c * L.k_chunk_bytes, P.k, c * kSm90ChunkCols, n0, h_kv, b, sm.kv_full());
#pragma unroll
  for (int c = 0; c < Tr::kHeadDimV / kSm90ChunkCols; ++c)
    tma_load_4d(sm.v() + c * L.k_chunk_bytes, P.v, c * kSm90ChunkCols, n0, h_kv, b, sm.kv_full());
  // The kernel requires mask_block_kv % kBlockN == 0, so all kBlockN rows lie in one mask kv block.
  const int kv_block = n0 / p.mask_block_kv;
  BlockWalk walk;
  walk_begin(walk, h_kv * p.q_per_kv, (h_kv + 1) * p.q_per_kv);
#pragma unroll 1
  for (int it = 0;; ++it) {
    const int stage = it % Tr::kStages;
    const unsigned phase = (it / Tr::kStages) & 1u;
    const BwdTile t = walk_next(walk, p.q_partial, p.q_full, b, kv_block, p.mask_block_q, Tr::kBlockM, p.len_q);
    mbar_wait(sm.empty(stage), phase ^ 1u);
    // The tile's description travels with its data: the arrive below releases this store to the consumers
    // that wait on the same barrier.
    asm volatile("st.shared.v4.s32 [%0], {%1, %2, %3, %4};\n" ::"r"(sm.tile(stage)), "r"(t.h), "r"(t.start),
                 "r"(t.partial), "r"(0)
                 : "memory");
    if (t.h < 0) {
      mbar_arrive(sm.full(stage));
      return;
    }
    constexpr unsigned kStatBytes = Tr::kBlockM * 4;
    mbar_arrive_expect_tx(sm.full(stage), L.q_stage_bytes + L.do_stage_bytes + 2 * kStatBytes);
#pragma unroll
    for (int c = 0; c < Tr::kHeadDim / kSm90ChunkCols; ++c)
      tma_load_4d(sm.q(stage) + c * L.q_chunk_bytes, P.q, c * kSm90ChunkCols, t.start, t.h, b, sm.full(stage));
#pragma unroll
    for (int c = 0; c < Tr::kHeadDimV / kSm90ChunkCols; ++c)
      tma_load_4d(sm.dout(stage) + c * L.q_chunk_bytes, P.dout, c * kSm90ChunkCols, t.start, t.h, b, sm.full(stage));
    // LSE2 and Delta have len_q_pad rows per head (a multiple of 64): a tile's 64 floats are inside and
    // 256-byte aligned.
    const long long row = ((long long)b * p.heads_q + t.h) * p.len_q_pad + t.start;
    bulk_load(sm.lse2(stage), p.lse2 + row, kStatBytes, sm.full(stage));
    bulk_load(sm.delta(stage), p.delta + row, kStatBytes, sm.full(stage));
  }
}

/// Named barrier of consumer warpgroup wg (its four warps only).
constexpr int kBwdWgBarrier = 1;

/// What a consumer thread needs to find its elements: its warpgroup, its first accumulator row inside
/// the 64 (warp * 16 + g) and column pair (2 t).
struct Sm90BwdThread {
  int wg;
  int tid;   ///< inside the warpgroup
  int lane;
  int row;
  int t;
};

/// After the wait for this warpgroup's dV / dK products: pins their accumulators and gives the stage back,
/// whose Q, dO, LSE2 and Delta this thread no longer reads. Every consumer thread arrives (the barrier counts
/// them all): an arrive releases only its own thread's earlier reads, and each thread read the stage's tile
/// description and row statistics with ordinary loads (one lane's arrive after __syncwarp orders them too,
/// but compute-sanitizer's racecheck reported such reads as hazards, 2026-12-02).
template <class Tr>
__device__ __forceinline__ void dkdv_done_release_stage(float (&dk)[Tr::kHeadDim / 2], float (&dv)[Tr::kHeadDimV / 2],
                                                        const Sm90BwdSmem<Tr>& sm, int stage) {
  wgmma_fence_operands(dk);
  wgmma_fence_operands(dv);
  mbar_arrive(sm.empty(stage));
}

/// acc += A^T B over the tile's 64 q rows, A = a warpgroup's [q][kv] chunk of P or dS read MN-major (M = kv:
/// the transpose for free), B = a stage tile [q][d] (dO or Q) read MN-major (N = d); k-step kk covers q
/// rows 16 kk .. 16 kk + 15.
template <class Tr, int kN>
__device__ __forceinline__ void sm90_bwd_dot_transposed(float (&acc)[kN / 2], unsigned s_chunk, unsigned s_stage) {
#pragma unroll
  for (int kk = 0; kk < Tr::kBlockM / kMmaK; ++kk) {
    const unsigned rows = kk * kKStepBytesMnMajor;
    wgmma_ss<kN, Tr::kIsBf16, 1, 1>(acc, desc_mn_major(s_chunk + rows, Tr::kLayout.ps_chunk_bytes),
                                    desc_mn_major(s_stage + rows, Tr::kLayout.q_chunk_bytes), 1);
  }
}

/// acc = A B^T over kDim columns for a 64-row stage tile A (Q or dO) and this warpgroup's 64 rows B of K
/// or V: both K-major; k-step kk lies in chunk kk / 4 of both, 32 * (kk % 4) bytes into their rows.
template <class Tr, int kDim>
__device__ __forceinline__ void sm90_bwd_dot(float (&acc)[Tr::kWgKv / 2], unsigned s_a, unsigned s_b) {
  constexpr int kStepsPerChunk = kSm90ChunkCols / kMmaK;
#pragma unroll
  for (int kk = 0; kk < kDim / kMmaK; ++kk) {
    const unsigned off = (kk % kStepsPerChunk) * kKStepBytesKMajor;
    wgmma_ss<Tr::kWgKv, Tr::kIsBf16>(acc, desc_k_major(s_a + (kk / kStepsPerChunk) * Tr::kLayout.q_chunk_bytes + off),
                                     desc_k_major(s_b + (kk / kStepsPerChunk) * Tr::kLayout.k_chunk_bytes + off), kk > 0);
  }
}

/// dQ_w = dS_w K_w of one tile into warpgroup w's staging buffer, 64 columns at a time
/// (a whole 64 x 128 accumulator beside dK and dV would spill): A = the warpgroup's dS chunk K-major (K =
/// kv), B = its rows of K (s_k), MN-major (N = d). Waits for this warpgroup's products and releases the stage.
template <class Tr>
__device__ __forceinline__ void sm90_dq_by_rows(float (&dk)[Tr::kHeadDim / 2], float (&dv)[Tr::kHeadDimV / 2],
                                                const Sm90BwdSmem<Tr>& sm, const Sm90BwdThread& th, int stage,
                                                unsigned s_k) {
  constexpr Sm90BwdLayout L = Tr::kLayout;
  constexpr int kParts = Tr::kHeadDim / kSm90ChunkCols;
#pragma unroll
  for (int part = 0; part < kParts; ++part) {
    float dq[kSm90ChunkCols / 2];
    wgmma_fence();  // the last part's registers were read by the staging stores
#pragma unroll
    for (int kk = 0; kk < Tr::kWgKv / kMmaK; ++kk)
      wgmma_ss<kSm90ChunkCols, Tr::kIsBf16, 0, 1>(
          dq, desc_k_major(sm.ds(th.wg) + kk * kKStepBytesKMajor),
          desc_mn_major(s_k + part * L.k_chunk_bytes + kk * kKStepBytesMnMajor, L.k_chunk_bytes), kk > 0);
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_operands(dq);
    if (part == kParts - 1) dkdv_done_release_stage<Tr>(dk, dv, sm, stage);
    constexpr int kBoxesPerPart = kSm90ChunkCols / kSwizzleRowFloats;
    st_acc_swizzled_f32<kSm90ChunkCols / kMmaCols>(sm.dq(th.wg) + part * kBoxesPerPart * L.dq_box_bytes,
                                                   L.dq_box_bytes, dq, th.row, th.t);
  }
}

/// One q tile of consumer warpgroup `th.wg`. kMode: whether the tile needs per-element masking (a partial
/// mask block, or a tile crossing Lq or Lkv): uniform over the warpgroup.
template <class Tr, class Var, int kMode>
__device__ __forceinline__ void bwd_consume_tile(float (&dk)[Tr::kHeadDim / 2], float (&dv)[Tr::kHeadDimV / 2],
                                                 const SiteCachedGrads<kProbGradSitesOf<Var>>& prob_grads,
                                                 const Sm90BwdParams& P, const Sm90BwdSmem<Tr>& sm,
                                                 const Sm90BwdThread& th, const BwdTile& tile, int it, int b,
                                                 int n0) {
  const int stage = it % Tr::kStages;
  constexpr Sm90BwdLayout L = Tr::kLayout;
  constexpr int kN = Tr::kSTiles;
  const BwdParams& p = P.p;
  const unsigned s_q = sm.q(stage), s_do = sm.dout(stage);
  const unsigned s_k = sm.k() + th.wg * Tr::kWgKv * kSwizzleRowBytes;  // this warpgroup's 64 kv rows
  const unsigned s_v = sm.v() + th.wg * Tr::kWgKv * kSwizzleRowBytes;
  const int q_first = tile.start + th.row;
  const int kv_first = n0 + th.wg * Tr::kWgKv + 2 * th.t;

  float s[kN * 4], dp[kN * 4];
  // This thread's rows' LSE2, Delta and (for a prob_mod) visible counts.
  float lse2[1][2], delta[1][2];
  int visible[1][2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    lse2[0][half] = ld_shared_f32(sm.lse2(stage) + (th.row + half * (kMmaRows / 2)) * 4);
    delta[0][half] = ld_shared_f32(sm.delta(stage) + (th.row + half * (kMmaRows / 2)) * 4);
  }
  read_row_visible<Var>(visible, p, b, tile.h, q_first);
  TileBits<kN * 4> bits;
  const float ones[2] = {1.0f, 1.0f};
  wgmma_fence();
  sm90_bwd_dot<Tr, Tr::kHeadDim>(s, s_q, s_k);
  wgmma_commit();
  if constexpr (!kBwdKeepsRawScores<Var>) {
    // Without a score_mod or prob_mod, P replaces S (the gradient never needs the raw score), so both
    // products can be in flight at once.
    sm90_bwd_dot<Tr, Tr::kHeadDimV>(dp, s_do, s_v);
    wgmma_commit();
    wgmma_wait<1>();
    wgmma_fence_operands(s);
    compute_probs<Var, 1, kN, kMode>(as_tile<kN>(s), as_tile<kN>(s), bits, lse2, visible, p, b, tile.h, q_first,
                                     kv_first, tile.partial);
    st_acc_swizzled_16<Tr::kIsBf16, kN>(sm.p(th.wg), L.ps_chunk_bytes, s, th.row, th.t, ones);
    wgmma_wait<0>();
    wgmma_fence_operands(dp);
  } else {
    // The raw S must survive until score_mod_grad, and S, P and dP do not fit beside dK and dV: P goes to
    // shared memory before dP is computed, and compute_ds recomputes it from S.
    wgmma_wait<0>();
    wgmma_fence_operands(s);
    {
      float pr[kN * 4];
      compute_probs<Var, 1, kN, kMode>(as_tile<kN>(s), as_tile<kN>(pr), bits, lse2, visible, p, b, tile.h, q_first,
                                       kv_first, tile.partial);
      st_acc_swizzled_16<Tr::kIsBf16, kN>(sm.p(th.wg), L.ps_chunk_bytes, pr, th.row, th.t, ones);
    }
    wgmma_fence();
    sm90_bwd_dot<Tr, Tr::kHeadDimV>(dp, s_do, s_v);
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_operands(dp);
  }
  // Captured-tensor gradients of score_mod_grad: global atomics (fj::GradArgs; the planner sends sites
  // indexed by q and kv together to the sm80 family's windows); a prob_mod's: summed per thread first.
  compute_ds<Var, 1, kN, kMode>(as_tile<kN>(s), as_tile<kN>(dp), bits, lse2, delta, visible, p, p.grads,
                                prob_grads, b, tile.h, q_first, kv_first);
  st_acc_swizzled_16<Tr::kIsBf16, kN>(sm.ds(th.wg), L.ps_chunk_bytes, dp, th.row, th.t, ones);
  // The staging buffer of dQ is reused below: the previous tile's reduction must have read it.
  if (th.tid == 0) tma_store_wait_read();
  fence_proxy_async_smem();  // P and dS were written by ordinary stores; wgmma reads them asynchronously
  named_barrier_sync(kBwdWgBarrier + th.wg, kWarpgroupThreads);

  // dV += P^T dO and dK += dS^T Q.
  wgmma_fence();
  sm90_bwd_dot_transposed<Tr, Tr::kHeadDimV>(dv, sm.p(th.wg), s_do);
  sm90_bwd_dot_transposed<Tr, Tr::kHeadDim>(dk, sm.ds(th.wg), s_q);
  wgmma_commit();
  if constexpr (!Tr::kAtomicDq) {
    // Deterministic mode: dQ is the sm80 family's dQ kernel's (a fixed order), after this kernel.
    wgmma_wait<0>();
    dkdv_done_release_stage<Tr>(dk, dv, sm, stage);
    return;
  } else {
    sm90_dq_by_rows<Tr>(dk, dv, sm, th, stage, s_k);
    fence_proxy_async_smem();
    named_barrier_sync(kBwdWgBarrier + th.wg, kWarpgroupThreads);
    if (th.tid == 0) {
      const int row0 = (b * p.heads_q + tile.h) * p.len_q_pad + tile.start;
#pragma unroll
      for (int box = 0; box < Tr::kHeadDim / kSwizzleRowFloats; ++box)
        tma_reduce_add_2d(P.dq_accum, sm.dq(th.wg) + box * L.dq_box_bytes, box * kSwizzleRowFloats, row0);
      tma_store_commit();
    }
  }
}

/// One consumer warpgroup: the q-tile loop and the epilogue for its 64 kv rows.
template <class Tr, class Var>
__device__ __forceinline__ void bwd_consume(const Sm90BwdParams& P, const Sm90BwdSmem<Tr>& sm, int wg, int b,
                                            int h_kv, int n0) {
  constexpr Sm90BwdLayout L = Tr::kLayout;
  const BwdParams& p = P.p;
  Sm90BwdThread th;
  th.wg = wg;
  th.tid = threadIdx.x % kWarpgroupThreads;
  th.lane = th.tid % kWarpSize;
  th.row = (th.tid / kWarpSize) * kMmaRows + (th.lane >> 2);
  th.t = th.lane & 3;
  float dk[Tr::kHeadDim / 2], dv[Tr::kHeadDimV / 2];
#pragma unroll
  for (int i = 0; i < Tr::kHeadDim / 2; ++i) dk[i] = 0.0f;
#pragma unroll
  for (int i = 0; i < Tr::kHeadDimV / 2; ++i) dv[i] = 0.0f;
  // A prob_mod's captured-tensor gradients, summed in registers over the whole kernel (grad_cache.cuh).
  const SiteCachedGrads<kProbGradSitesOf<Var>> prob_grads(p.grads);
  // Columns at or past Lkv hold zero-filled K / V rows; they are masked like mask_mod's (bwd_keep).
  const bool crosses_kv = n0 + (wg + 1) * Tr::kWgKv > p.len_kv;
  mbar_wait(sm.kv_full(), 0);
#pragma unroll 1
  for (int it = 0;; ++it) {
    const int stage = it % Tr::kStages;
    mbar_wait(sm.full(stage), (it / Tr::kStages) & 1u);
    BwdTile tile;
    {
      int pad;
      asm volatile("ld.shared.v4.s32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(tile.h), "=r"(tile.start), "=r"(tile.partial), "=r"(pad)
                   : "r"(sm.tile(stage))
                   : "memory");
    }
    if (tile.h < 0) break;  // uniform: every thread reads the same slot
    if (tile.partial || tile.start + Tr::kBlockM > p.len_q || crosses_kv) {
      bwd_consume_tile<Tr, Var, kCheck>(dk, dv, prob_grads, P, sm, th, tile, it, b, n0);
    } else {
      bwd_consume_tile<Tr, Var, kNoCheck>(dk, dv, prob_grads, P, sm, th, tile, it, b, n0);
    }
  }
  if constexpr (kProbGradSitesOf<Var> > 0) prob_grads.flush_all();  // every lane of every warp is here
  // dK = scale * dS^T Q (s = scale * q.k; the scale is applied once here) and dV into this warpgroup's rows
  // of the K and V regions, which only its own (completed) wgmmas read; TMA stores clip the rows at or
  // past Lkv, which belong to no key.
  const float scale[2] = {p.scale, p.scale};
  const float ones[2] = {1.0f, 1.0f};
  const unsigned s_k = sm.k() + wg * Tr::kWgKv * kSwizzleRowBytes;
  const unsigned s_v = sm.v() + wg * Tr::kWgKv * kSwizzleRowBytes;
  st_acc_swizzled_16<Tr::kIsBf16, Tr::kHeadDim / kMmaCols>(s_k, L.k_chunk_bytes, dk, th.row, th.t, scale);
  st_acc_swizzled_16<Tr::kIsBf16, Tr::kHeadDimV / kMmaCols>(s_v, L.k_chunk_bytes, dv, th.row, th.t, ones);
  fence_proxy_async_smem();
  named_barrier_sync(kBwdWgBarrier + wg, kWarpgroupThreads);
  if (th.tid == 0) {
    const int r0 = n0 + wg * Tr::kWgKv;
#pragma unroll
    for (int c = 0; c < Tr::kHeadDim / kSm90ChunkCols; ++c)
      tma_store_4d(P.dk, s_k + c * L.k_chunk_bytes, c * kSm90ChunkCols, r0, h_kv, b);
#pragma unroll
    for (int c = 0; c < Tr::kHeadDimV / kSm90ChunkCols; ++c)
      tma_store_4d(P.dv, s_v + c * L.k_chunk_bytes, c * kSm90ChunkCols, r0, h_kv, b);
    tma_store_commit();
    tma_store_wait_read();  // also covers the last tile's dQ reduction
  }
}

/// The kernel body. Launch with Tr::kNThreads threads, Tr::kSmemBytes of dynamic shared memory and the
/// grid (kv blocks, Hkv, B) of codegen/BackwardConfig.h's bwdDkDvLaunch().
template <class Tr, class Var>
__device__ __forceinline__ void attention_bwd_dkdv_sm90(const Sm90BwdParams& P) {
  const unsigned raw = smem_addr(fjk_dynamic_smem);
  const Sm90BwdSmem<Tr> sm{(raw + kSm90TileAlign - 1) & ~unsigned(kSm90TileAlign - 1)};
  const int h_kv = blockIdx.y;
  const int b = blockIdx.z;
  const int n0 = blockIdx.x * Tr::kBlockN;
  const int wg = threadIdx.x / kWarpgroupThreads;
  if (threadIdx.x == 0) {
    mbar_init(sm.kv_full(), 1);
#pragma unroll
    for (int s = 0; s < Tr::kStages; ++s) {
      mbar_init(sm.full(s), 1);
      mbar_init(sm.empty(s), Tr::kConsumers * kWarpgroupThreads);
    }
    fence_barrier_init();
  }
  __syncthreads();
  if (wg == 0) {
    setmaxnreg_dec<Tr::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(P.q), tma_prefetch_map(P.k), tma_prefetch_map(P.v), tma_prefetch_map(P.dout);
      bwd_produce<Tr>(P, sm, b, h_kv, n0);
    }
  } else {
    setmaxnreg_inc<Tr::kConsumerRegs>();
    bwd_consume<Tr, Var>(P, sm, wg - 1, b, h_kv, n0);
  }
}

}  // namespace fjk
