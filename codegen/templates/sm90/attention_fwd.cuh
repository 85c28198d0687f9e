// The block-sparse attention forward kernel of the sm90 family (Hopper, sm_90a): TMA loads into an mbarrier
// ring, wgmma, warp specialisation.
//
// attention_fwd_sm90<Traits, Variant> is the kernel body; the generated instantiation (codegen's sm90
// family) wraps it in an extern "C" __global__ function. One CTA computes kBlockM = 64 * kConsumers query
// rows of one (batch, head), with 1 + kConsumers warpgroups:
//
//   producer warpgroup (registers given back with setmaxnreg): one thread issues TMA loads, Q once, then
//     K and V of each kv tile of the block-sparse walk into a kStages-deep ring, each slot guarded by a
//     "full" mbarrier (TMA bytes landed) and an "empty" one (every consumer warp is done with it);
//   consumer warpgroups (64 rows each, registers taken with setmaxnreg): for each kv tile t
//       S_t = Q K_t^T            (wgmma, A and B from shared memory)     -- issued first
//       O  += P_{t-1} V_{t-1}    (wgmma, P from registers)               -- runs while ...
//       ... mask bits, score_mod, online softmax of S_t (common/), so the softmax of one tile overlaps
//       the PV product of the previous one on the tensor cores; then O is rescaled and P_t packed;
//   epilogue: normalise, O into the warpgroup's rows of the Q region, TMA store (rows past Lq are not
//     written), LSE.
// Two consumer warpgroups take turns issuing their products (FlashAttention-3's "ping-pong"): while one
// runs its softmax on the CUDA cores, the tensor cores run the other's GEMMs.
//
// The hooks, the mask bits, the row statistics and P's conversion are the shared pieces in common/: each
// warp of a warpgroup holds its accumulator in the same m16n8 layout as an sm80 warp (AccTile<1, ...>).
#pragma once

#include "codegen/templates/common/block_walk.cuh"
#include "codegen/templates/common/online_softmax.cuh"
#include "codegen/templates/common/row_epilogue.cuh"
#include "codegen/templates/common/tile_hooks.cuh"
#include "codegen/templates/sm90/fwd_layout.h"
#include "codegen/templates/sm90/fwd_params.h"
#include "codegen/templates/sm90/pingpong.cuh"
#include "codegen/templates/sm90/ptx.cuh"
#include "codegen/templates/sm90/wgmma.cuh"

namespace fjk {

template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kBlockN_, int kStages_, int kConsumers_>
struct Sm90FwdTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  static constexpr int kConsumers = kConsumers_;
  static constexpr int kBlockM = kWarpgroupRows * kConsumers;
  static constexpr int kNThreads = kWarpgroupThreads * (1 + kConsumers);
  static constexpr int kConsumerWarps = kConsumers * kWarpgroupThreads / kWarpSize;
  static constexpr int kStepsD = kHeadDim / kMmaK;  ///< k-steps of S = Q K^T
  static constexpr int kTilesDv = kHeadDimV / kMmaCols;
  /// The S tile of one warp (16 rows x kBlockN) and its P operand.
  using STile = AccTile<kIsBf16, 1, kBlockN / kMmaCols>;
  static constexpr Sm90FwdLayout kLayout = sm90_fwd_layout(kHeadDim, kHeadDimV, kBlockM, kBlockN, kStages);
  static constexpr int kSmemBytes = kLayout.bytes;
  /// Registers per thread after setmaxnreg: the producer keeps few, the consumers take the rest of the
  /// 64K register file (each count a multiple of 8).
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = kConsumers == 2 ? 240 : 160;

  static_assert(kHeadDim % kSm90ChunkCols == 0 && kHeadDimV % kSm90ChunkCols == 0,
                "head dims must be multiples of 64 (one 128-byte swizzled chunk)");
  static_assert(kBlockN == 64 || kBlockN == 128 || kBlockN == 256, "wgmma N of 64, 128 or 256");
  static_assert(kHeadDimV == 64 || kHeadDimV == 128 || kHeadDimV == 256, "O is one wgmma tile wide");
  static_assert(kConsumers == 1 || kConsumers == 2, "one or two consumer warpgroups");
  static_assert(kProducerRegs * kWarpgroupThreads + kConsumerRegs * kConsumers * kWarpgroupThreads <= 65536,
                "the register split must fit the register file");
};

/// Shared-memory addresses of one CTA's buffers and barriers.
template <class Tr>
struct Sm90FwdSmem {
  unsigned base;
  __device__ __forceinline__ unsigned q() const { return base; }
  __device__ __forceinline__ unsigned k(int stage) const { return base + Tr::kLayout.k_offset + stage * Tr::kLayout.k_stage_bytes; }
  __device__ __forceinline__ unsigned v(int stage) const { return base + Tr::kLayout.v_offset + stage * Tr::kLayout.v_stage_bytes; }
  __device__ __forceinline__ unsigned q_full() const { return base + Tr::kLayout.bar_offset; }
  __device__ __forceinline__ unsigned k_full(int stage) const { return q_full() + 8 * (1 + stage); }
  __device__ __forceinline__ unsigned k_empty(int stage) const { return q_full() + 8 * (1 + Tr::kStages + stage); }
  __device__ __forceinline__ unsigned v_full(int stage) const { return q_full() + 8 * (1 + 2 * Tr::kStages + stage); }
  __device__ __forceinline__ unsigned v_empty(int stage) const { return q_full() + 8 * (1 + 3 * Tr::kStages + stage); }
};

/// The producer: one thread issues every TMA load of the CTA (no V in the statistics pass of a prob_mod
/// variant, common/prob_pass.cuh).
template <class Tr, int kPass>
__device__ __forceinline__ void fwd_produce(const Sm90FwdParams& P, const Sm90FwdSmem<Tr>& sm, const CtaCoord& cta,
                                            int q0, const KvTileCursor& cursor) {
  constexpr Sm90FwdLayout L = Tr::kLayout;
  const int h_kv = cta.h / P.p.q_per_kv;
  mbar_arrive_expect_tx(sm.q_full(), Tr::kBlockM * Tr::kHeadDim * kElemBytes);
#pragma unroll
  for (int c = 0; c < Tr::kHeadDim / kSm90ChunkCols; ++c)
    tma_load_4d(sm.q() + c * L.q_chunk_bytes, P.q, c * kSm90ChunkCols, q0, cta.h, cta.b, sm.q_full());
#pragma unroll 1
  for (int t = 0; t < cursor.num_tiles; ++t) {
    const int stage = t % Tr::kStages;
    const unsigned phase = (t / Tr::kStages) & 1u;
    const int kv0 = cursor.kv_start(t);
    mbar_wait(sm.k_empty(stage), phase ^ 1u);
    mbar_arrive_expect_tx(sm.k_full(stage), L.k_stage_bytes);
#pragma unroll
    for (int c = 0; c < Tr::kHeadDim / kSm90ChunkCols; ++c)
      tma_load_4d(sm.k(stage) + c * L.k_chunk_bytes, P.k, c * kSm90ChunkCols, kv0, h_kv, cta.b, sm.k_full(stage));
    if constexpr (pass_reads_v(kPass)) {
      mbar_wait(sm.v_empty(stage), phase ^ 1u);
      mbar_arrive_expect_tx(sm.v_full(stage), L.v_stage_bytes);
#pragma unroll
      for (int c = 0; c < Tr::kHeadDimV / kSm90ChunkCols; ++c)
        tma_load_4d(sm.v(stage) + c * L.k_chunk_bytes, P.v, c * kSm90ChunkCols, kv0, h_kv, cta.b, sm.v_full(stage));
    }
  }
}

/// S = Q K^T for this warpgroup's 64 rows and one kv tile (s_q_wg: its first Q row; s_k: the K stage).
template <class Tr>
__device__ __forceinline__ void sm90_qk(float (&s)[Tr::kBlockN / 2], unsigned s_q_wg, unsigned s_k) {
#pragma unroll
  for (int kk = 0; kk < Tr::kStepsD; ++kk) {
    // k-step kk lies in chunk kk / 4 of both tiles, 32 * (kk % 4) bytes into its rows.
    const unsigned chunk = kk / (kSm90ChunkCols / kMmaK), sub = kk % (kSm90ChunkCols / kMmaK);
    const unsigned a = s_q_wg + chunk * Tr::kLayout.q_chunk_bytes + sub * kKStepBytesKMajor;
    const unsigned b = s_k + chunk * Tr::kLayout.k_chunk_bytes + sub * kKStepBytesKMajor;
    wgmma_ss<Tr::kBlockN, Tr::kIsBf16>(s, desc_k_major(a), desc_k_major(b), kk > 0);
  }
}

/// O += P V for one kv tile (P as A fragments, V MN-major in the stage at s_v).
template <class Tr>
__device__ __forceinline__ void sm90_pv(float (&o)[Tr::kHeadDimV / 2],
                                        const unsigned (&pa)[1][Tr::STile::kStepsN][4], unsigned s_v) {
#pragma unroll
  for (int kk = 0; kk < Tr::STile::kStepsN; ++kk)
    wgmma_rs_mn<Tr::kHeadDimV, Tr::kIsBf16>(o, pa[0][kk],
                                            desc_mn_major(s_v + kk * kKStepBytesMnMajor, Tr::kLayout.k_chunk_bytes));
}

/// Named barriers: 1 + wg for a consumer warpgroup's epilogue, kSchedBarrier + wg for its turn to issue.
constexpr int kEpilogueBarrier = 1;
constexpr int kSchedBarrier = 3;

/// The two consumer warpgroups take turns issuing each tile's products (sm90/pingpong.cuh); warpgroup 1
/// opens the first turn and skips its last hand-over.
template <class Tr>
__device__ __forceinline__ void sched_wait_turn(int wg) {
  if constexpr (Tr::kConsumers == 2) pingpong_wait<kSchedBarrier>(wg);
}
template <class Tr>
__device__ __forceinline__ void sched_pass_turn(int wg, bool last) {
  if constexpr (Tr::kConsumers == 2)
    if (!(last && wg == 1)) pingpong_pass<kSchedBarrier>(wg);
}
template <class Tr>
__device__ __forceinline__ void sched_open(int wg) {
  if constexpr (Tr::kConsumers == 2) pingpong_open<kSchedBarrier>(wg);
}

/// The query indices of the two accumulator rows a consumer thread holds (`row`: its first row inside the
/// warpgroup's 64).
__device__ __forceinline__ void sm90_thread_rows(int (&q_of_row)[2], int q0, int wg, int row) {
  q_of_row[0] = q0 + wg * kWarpgroupRows + row;
  q_of_row[1] = q_of_row[0] + kMmaRows / 2;
}

/// Normalises O, writes it through shared memory and a TMA store, and writes LSE (and what else the pass
/// produces per row, store_pass_rows; the statistics pass writes no O). `row` is this thread's first row
/// inside the warpgroup's 64.
template <class Tr, class Var, int kPass>
__device__ __forceinline__ void sm90_write_o_lse(float (&o)[1][Tr::kTilesDv][4], const RowStats<2>& st,
                                                 const ProbRows<2>& rows, float factor, const Sm90FwdParams& P,
                                                 const Sm90FwdSmem<Tr>& sm, const CtaCoord& cta, int q0, int wg,
                                                 int row, int lane) {
  const FwdParams& p = P.p;
  int q_of_row[2];
  sm90_thread_rows(q_of_row, q0, wg, row);
  float inv_sum[2], lse[2];
  finish_rows<Var, kPass>(st, rows, factor, p, cta.b, cta.h, q_of_row, inv_sum, lse);
  store_pass_rows<Var, kPass>(p, cta.b, cta.h, q_of_row, lse, st, rows, factor, (lane & 3) == 0);
  if constexpr (kPass == kPassStats) return;  // uniform: the statistics pass has no O
  // This warpgroup's rows of the Q region: only its own wgmmas read them, and all have completed.
  const unsigned s_o = sm.q() + wg * kWarpgroupRows * kSm90ChunkCols * kElemBytes;
  st_acc_swizzled_16<Tr::kIsBf16, Tr::kTilesDv>(s_o, Tr::kLayout.q_chunk_bytes, flat(o), row, lane & 3, inv_sum);
  fence_proxy_async_smem();
  named_barrier_sync(kEpilogueBarrier + wg, kWarpgroupThreads);
  if (threadIdx.x % kWarpgroupThreads == 0) {
#pragma unroll
    for (int c = 0; c < Tr::kHeadDimV / kSm90ChunkCols; ++c)
      tma_store_4d(P.o, s_o + c * Tr::kLayout.q_chunk_bytes, c * kSm90ChunkCols, q0 + wg * kWarpgroupRows, cta.h,
                   cta.b);
    tma_store_commit();
    tma_store_wait_read();
  }
}

/// What one consumer thread carries across kv tiles: the O accumulator, the row statistics, P of the last
/// tile (the A operand of its PV product) and the ring slot that P's V tile sits in.
template <class Tr>
struct Sm90Consumer {
  using ST = typename Tr::STile;
  float o[1][Tr::kTilesDv][4];
  RowStats<2> st;
  ProbRows<2> rows;  ///< the prob passes' per-row state (common/prob_pass.cuh); unused otherwise
  unsigned pa[1][ST::kStepsN][4];
  float corr[2];  ///< the factor O needs before P (computed with the newer row max) is added to it
  int kv_next;    ///< first kv index of the next tile, fetched one tile ahead to hide the index load
  int prev_stage;
  unsigned prev_phase;
};

/// Processes kv tile t: S_t = Q K_t^T and, unless kFirst, the PV product of tile t - 1, whose V slot and P
/// are in c. kFirst is a compile-time split (the first tile is peeled off the loop) so that every wgmma
/// wait has one meaning on every path: with a conditional PV the compiler cannot tell which group a
/// wait_group 1 waits for and serialises the products. kPass (common/prob_pass.cuh): the statistics pass
/// has no PV; the apply passes weigh V with prob_apply instead of the online softmax (c.corr stays 1).
template <class Tr, class Var, bool kFirst, int kPass>
__device__ __forceinline__ void sm90_consume_tile(Sm90Consumer<Tr>& c, const Sm90FwdParams& P,
                                                  const Sm90FwdSmem<Tr>& sm, const CtaCoord& cta,
                                                  const KvTileCursor& cursor, int t, unsigned s_q_wg, int q_first,
                                                  int kv_lane, int lane, int wg, float factor) {
  using ST = typename Tr::STile;
  const FwdParams& p = P.p;
  const int stage = t % Tr::kStages;
  const unsigned phase = (t / Tr::kStages) & 1u;
  const int kv0 = c.kv_next;
  c.kv_next = t + 1 < cursor.num_tiles ? cursor.kv_start(t + 1) : 0;
  const bool partial = t < cursor.partial_tiles;
  constexpr bool kPv = !kFirst && pass_reads_v(kPass);  // this tile issues the previous tile's PV
  float s[1][ST::kTilesN][4];
  mbar_wait(sm.k_full(stage), phase);
  if constexpr (kPv) mbar_wait(sm.v_full(c.prev_stage), c.prev_phase);
  sched_wait_turn<Tr>(wg);
  wgmma_fence();  // P, O and S were last written by ordinary instructions
  sm90_qk<Tr>(flat(s), s_q_wg, sm.k(stage));
  wgmma_commit();
  if constexpr (kPv) {
    // O is rescaled to the row max P_{t-1} was computed with, while S_t = Q K_t^T runs, then P_{t-1} V_{t-1}
    // is added (only when some row max of the warp grew: rare past the first tiles of a row).
    if (__any_sync(0xffffffffu, c.corr[0] != 1.0f || c.corr[1] != 1.0f)) rescale_o<1, Tr::kTilesDv>(c.o, c.corr);
    wgmma_fence();  // O and P were last written by ordinary instructions
    sm90_pv<Tr>(flat(c.o), c.pa, sm.v(c.prev_stage));
    wgmma_commit();
  }
  sched_pass_turn<Tr>(wg, false);
  // The mask of tile t is evaluated while the products run. A full block's tile that crosses Lkv (the
  // last tile of a row) needs the bound but never mask_mod.
  const bool masked = partial || kv0 + Tr::kBlockN > p.len_kv;
  TileMaskBits<ST> bits;
  if (partial) {
    compute_mask_bits<ST, Var, true>(bits, p, cta.b, cta.h, q_first, kv0 + kv_lane);
  } else if (masked) {
    compute_mask_bits<ST, Var, false>(bits, p, cta.b, cta.h, q_first, kv0 + kv_lane);
  }
  wgmma_wait<kPv ? 1 : 0>();  // S_t is done; P_{t-1} V_{t-1} may still run
  wgmma_fence_operands(flat(s));
  release_slot(sm.k_empty(stage), lane);
  if (masked) {
    apply_mods<ST, Var, kMaskBits>(s, bits, p, cta.b, cta.h, q_first, kv0 + kv_lane);
  } else {
    apply_mods<ST, Var, kMaskNone>(s, bits, p, cta.b, cta.h, q_first, kv0 + kv_lane);
  }
  if constexpr (pass_applies_prob(kPass)) {
    if (masked) {
      prob_apply<ST, Var, kMaskBits, kPass>(s, bits, c.rows, factor, p, cta.b, cta.h, q_first, kv0 + kv_lane);
    } else {
      prob_apply<ST, Var, kMaskNone, kPass>(s, bits, c.rows, factor, p, cta.b, cta.h, q_first, kv0 + kv_lane);
    }
  } else {
    update_row_stats<1, ST::kTilesN>(s, c.st, c.corr, factor);
  }
  if constexpr (kPass == kPassStats && kProbReadsVisibleOf<Var>) {
    if (masked) {
      count_kept<ST, kMaskBits>(bits, c.rows);
    } else {
      count_kept<ST, kMaskNone>(bits, c.rows);
    }
  }
  if constexpr (kPv) {
    wgmma_wait<0>();
    // The in-flight PV product reads P and O asynchronously, which register liveness does not see: pinning
    // them here keeps the compiler from reusing their registers for the softmax's temporaries, which would
    // force this wait up before the softmax and serialise it behind the product.
    wgmma_fence_operands(flat(c.o));
    wgmma_fence_operands(c.pa[0]);
    release_slot(sm.v_empty(c.prev_stage), lane);
  }
  if constexpr (pass_reads_v(kPass)) convert_p<ST>(c.pa, s);
  c.prev_stage = stage;
  c.prev_phase = phase;
}

/// One consumer warpgroup (wg = 0 .. kConsumers - 1): the kv loop and the epilogue for its 64 rows.
template <class Tr, class Var, int kPass>
__device__ __forceinline__ void fwd_consume(const Sm90FwdParams& P, const Sm90FwdSmem<Tr>& sm, const CtaCoord& cta,
                                            int q0, const KvTileCursor& cursor, int wg) {
  const int tid = threadIdx.x % kWarpgroupThreads;
  const int lane = tid % kWarpSize;
  const int row = (tid / kWarpSize) * kMmaRows + (lane >> 2);  // this thread's first row in the warpgroup
  const int q_first = q0 + wg * kWarpgroupRows + row;
  const int kv_lane = 2 * (lane & 3);
  const unsigned s_q_wg = sm.q() + wg * kWarpgroupRows * kSm90ChunkCols * kElemBytes;

  Sm90Consumer<Tr> c;
#pragma unroll
  for (int j = 0; j < Tr::kTilesDv; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) c.o[0][j][e] = 0.0f;
  init_row_stats(c.st);
  c.corr[0] = c.corr[1] = 1.0f;  // the apply passes never rescale O
  clear_prob_rows(c.rows);
  if constexpr (pass_applies_prob(kPass)) {
    int q_of_row[2];
    sm90_thread_rows(q_of_row, q0, wg, row);
    load_prob_rows<Var>(c.rows, P.p, cta.b, cta.h, q_of_row);
  }
  c.prev_stage = 0, c.prev_phase = 0;
  c.kv_next = cursor.num_tiles > 0 ? cursor.kv_start(0) : 0;
  // Without a score_mod, x is the raw dot product and scale * log2(e) folds into the exp2 FFMA.
  const float factor = Var::kScoreModIsNoop ? P.p.scale * fj::kLog2e : fj::kLog2e;

  mbar_wait(sm.q_full(), 0);
  if (cursor.num_tiles > 0) {
    sched_open<Tr>(wg);
    sm90_consume_tile<Tr, Var, true, kPass>(c, P, sm, cta, cursor, 0, s_q_wg, q_first, kv_lane, lane, wg, factor);
#pragma unroll 1
    for (int t = 1; t < cursor.num_tiles; ++t)
      sm90_consume_tile<Tr, Var, false, kPass>(c, P, sm, cta, cursor, t, s_q_wg, q_first, kv_lane, lane, wg, factor);
    if constexpr (pass_reads_v(kPass)) {
      mbar_wait(sm.v_full(c.prev_stage), c.prev_phase);
      if (__any_sync(0xffffffffu, c.corr[0] != 1.0f || c.corr[1] != 1.0f)) rescale_o<1, Tr::kTilesDv>(c.o, c.corr);
    }
    // The last turn is taken in every pass, with or without a product, so that every wait keeps its arrive.
    sched_wait_turn<Tr>(wg);
    if constexpr (pass_reads_v(kPass)) {
      wgmma_fence();
      sm90_pv<Tr>(flat(c.o), c.pa, sm.v(c.prev_stage));
      wgmma_commit();
    }
    sched_pass_turn<Tr>(wg, true);
    if constexpr (pass_reads_v(kPass)) {
      wgmma_wait<0>();
      wgmma_fence_operands(flat(c.o));
      release_slot(sm.v_empty(c.prev_stage), lane);
    }
  }
  sm90_write_o_lse<Tr, Var, kPass>(c.o, c.st, c.rows, factor, P, sm, cta, q0, wg, row, lane);
}

/// The kernel body. Launch with Tr::kNThreads threads, Tr::kSmemBytes of dynamic shared memory and the
/// 1-D grid of the sm90 family's launch geometry (one CTA per kBlockM rows of each (batch, head)). kPass:
/// the one-pass kernel, or one pass of a prob_mod variant's forward (common/prob_pass.cuh).
template <class Tr, class Var, int kPass = kPassOnline>
__device__ __forceinline__ void attention_fwd_sm90(const Sm90FwdParams& P) {
  const unsigned raw = smem_addr(fjk_dynamic_smem);
  const Sm90FwdSmem<Tr> sm{(raw + kSm90TileAlign - 1) & ~unsigned(kSm90TileAlign - 1)};
  const CtaCoord cta = schedule_cta(P.p, Tr::kBlockM);
  const int q0 = cta.m_block * Tr::kBlockM;
  const KvTileCursor cursor = make_kv_cursor(P.p, cta.b, cta.h, q0, Tr::kBlockN);
  const int wg = threadIdx.x / kWarpgroupThreads;
  if (threadIdx.x == 0) {
    mbar_init(sm.q_full(), 1);
#pragma unroll
    for (int s = 0; s < Tr::kStages; ++s) {
      mbar_init(sm.k_full(s), 1);
      mbar_init(sm.v_full(s), 1);
      mbar_init(sm.k_empty(s), Tr::kConsumerWarps);
      mbar_init(sm.v_empty(s), Tr::kConsumerWarps);
    }
    fence_barrier_init();
  }
  __syncthreads();
  if (wg == 0) {
    setmaxnreg_dec<Tr::kProducerRegs>();
    if (threadIdx.x == 0) {
      tma_prefetch_map(P.q), tma_prefetch_map(P.k), tma_prefetch_map(P.v);
      fwd_produce<Tr, kPass>(P, sm, cta, q0, cursor);
    }
  } else {
    setmaxnreg_inc<Tr::kConsumerRegs>();
    fwd_consume<Tr, Var, kPass>(P, sm, cta, q0, cursor, wg - 1);
  }
}

}  // namespace fjk
