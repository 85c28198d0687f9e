// The block-sparse attention forward kernel (FlashAttention-2 style, mma.sync, sm_80 and newer).
//
// attention_fwd<Traits, Variant> is the whole kernel body; the generated instantiation (see
// codegen/AttentionConfig.cpp) wraps it in an extern "C" __global__ function and supplies Variant, a
// struct with kScoreModIsNoop, kMaskModIsNoop, score_mod and mask_mod forwarding to the generated fjv::
// functions. One CTA computes kBlockM query rows of one (batch, head):
//
//   load Q (cp.async), load K/V tile 0
//   for each kv tile t (kBlockN keys) of the BlockMask's partial list, then its full list:
//     wait for tile t, barrier (all warps are done with tile t - 1, so its ring slot is free)
//     start loading tile t + 1 into the other slot            -- overlaps everything below
//     for each sub-tile of kSubN keys:
//       in a partial block, mask_mod's interval form over the warp's rows x the sub-tile (when it reads
//       no captured tensor): all masked -> skip the sub-tile; all kept -> no per-element mask_mod
//       S = Q K^T; score_mod / mask_mod / kv < Lkv bound (only what the sub-tile needs)
//       online softmax: row max, exp2, row sums, rescale O (only when a row max grew)
//       O += P V with P converted in registers
//   normalise, write O (staged in shared memory, 16-byte stores) and LSE
//
// The 1-D grid is decoded by schedule_cta: row blocks longest first within groups of heads, which balances
// causal masks and keeps each group's K/V in L2.
#pragma once

#include "codegen/templates/sm80/attention_fwd_phases.cuh"

namespace fjk {

/// Whether the variant lets the kernel decide a warp's sub-tile of a partial block with mask_mod's interval
/// form (Var::kMaskIntervalIsCheap; hand-written variants without it never do).
template <class V, class = void>
inline constexpr bool kDecidesSubTiles = false;
template <class V>
inline constexpr bool kDecidesSubTiles<V, decltype(void(V::kMaskIntervalIsCheap))> = V::kMaskIntervalIsCheap;

/// Scores, masks and accumulates one kv tile starting at kv index kv0 into (o, st), or, in the passes of a
/// prob_mod variant (common/prob_pass.cuh), into st and the visible counts (kPassStats) or into o with the
/// weights prob_apply gives (the apply passes). `partial`: the tile belongs to a partial mask block
/// (mask_mod applies). All branches here are CTA-uniform.
template <class Tr, class Var, int kPass>
__device__ __forceinline__ void process_kv_tile(float (&o)[Tr::kMmaM][Tr::kTilesDv][4],
                                                RowStats<Tr::kRowsPerThread>& st,
                                                ProbRows<Tr::kRowsPerThread>& rows,
                                                const unsigned (&qf)[Tr::kQFragSteps][Tr::kMmaM][4], unsigned s_q,
                                                unsigned s_k, unsigned s_v, const FwdParams& p, int b, int h,
                                                int q_first, int kv0, bool partial, float factor, int warp,
                                                int lane) {
  const int kv_first = kv0 + 2 * (lane & 3);
  if constexpr (kDecidesSubTiles<Var>) {
    // A partial mask block is often empty or full over one warp's rows and this sub-tile (the diagonal of
    // a causal block, the band of a sliding window or NATTEN): the mask's interval form over that box
    // decides it once per warp, skipping the sub-tile outright or its per-element mask_mod.
    if (partial) {
      const int q_lo = q_first - (lane >> 2);
      const int q_hi = min(q_lo + Tr::kWarpRows, p.len_q) - 1;
      const int kv_hi = min(kv0 + Tr::kSubN, p.len_kv) - 1;
      if (q_lo > q_hi) return;  // the warp's rows all lie past Lq: nothing of theirs is written
      const fj::IvBool keep = Var::mask_mod_interval(fj::ivInt(b, b), fj::ivInt(h, h), fj::ivInt(q_lo, q_hi),
                                                     fj::ivInt(kv0, kv_hi), p.cap);
      if (!keep.canTrue) return;    // every score of the sub-tile is masked: it adds nothing
      if (!keep.canFalse) partial = false;  // every position is kept: no mask_mod per element
    }
  }
  // A full block's tile that crosses Lkv (the last tile of a row) needs the bound but never mask_mod.
  const bool masked = partial || kv0 + Tr::kSubN > p.len_kv;
  TileMaskBits<Tr> bits;
  if (partial) {
    compute_mask_bits<Tr, Var, true>(bits, p, b, h, q_first, kv_first);
  } else if (masked) {
    compute_mask_bits<Tr, Var, false>(bits, p, b, h, q_first, kv_first);
  }
  float s[Tr::kMmaM][Tr::kTilesN][4];
  compute_qk<Tr>(s, qf, s_q, s_k, warp, lane);
  if (masked) {
    apply_mods<Tr, Var, kMaskBits>(s, bits, p, b, h, q_first, kv_first);
  } else {
    apply_mods<Tr, Var, kMaskNone>(s, bits, p, b, h, q_first, kv_first);
  }
  if constexpr (pass_applies_prob(kPass)) {
    if (masked) {
      prob_apply<Tr, Var, kMaskBits, kPass>(s, bits, rows, factor, p, b, h, q_first, kv_first);
    } else {
      prob_apply<Tr, Var, kMaskNone, kPass>(s, bits, rows, factor, p, b, h, q_first, kv_first);
    }
    unsigned pa[Tr::kMmaM][Tr::kStepsN][4];
    convert_p<Tr>(pa, s);
    compute_pv<Tr>(o, pa, s_v, lane);
    return;
  }
  float corr[Tr::kRowsPerThread];
  update_row_stats<Tr::kMmaM, Tr::kTilesN>(s, st, corr, factor);
  if constexpr (kPass == kPassStats) {
    if constexpr (kProbReadsVisibleOf<Var>) {
      if (masked) {
        count_kept<Tr, kMaskBits>(bits, rows);
      } else {
        count_kept<Tr, kMaskNone>(bits, rows);
      }
    }
    return;  // no V: the statistics pass ends at the row statistics
  }
  unsigned pa[Tr::kMmaM][Tr::kStepsN][4];
  convert_p<Tr>(pa, s);
  // O only needs rescaling when some row max of the warp grew; past the first tiles of a row that is
  // rare, so the warp-uniform test saves the kMmaM * Dv / 2 multiplies most of the time (measured 0-14%
  // faster on H100 than rescaling unconditionally).
  bool max_grew = false;
#pragma unroll
  for (int r = 0; r < Tr::kRowsPerThread; ++r) max_grew |= corr[r] != 1.0f;
  if (__any_sync(0xffffffffu, max_grew)) rescale_o<Tr::kMmaM, Tr::kTilesDv>(o, corr);
  compute_pv<Tr>(o, pa, s_v, lane);
}

/// What one CTA works on. It lives in shared memory during the kv loop (published by the loop's first
/// barrier) and is re-read per tile, so that none of it holds registers next to O and S.
struct CtaWork {
  KvTileCursor cursor;
  const unsigned short* k;  ///< K of (b, kv head)
  const unsigned short* v;  ///< V of (b, kv head)
  int b;
  int h;
  int q0;  ///< first query row of the row block
};

/// The kernel body. Launch with FwdTraits::kNThreads threads, FwdTraits::kSmemBytes of dynamic shared
/// memory and the 1-D grid of codegen/AttentionConfig.h's fwdLaunch() (p.sched_heads set from it). kPass:
/// the one-pass kernel, or one pass of a prob_mod variant's forward (common/prob_pass.cuh).
template <class Tr, class Var, int kPass = kPassOnline>
__device__ __forceinline__ void attention_fwd(const FwdParams& p) {
  const int tid = threadIdx.x;
  const int warp = tid / kWarpSize;
  const int lane = tid % kWarpSize;
  unsigned char* smem = reinterpret_cast<unsigned char*>(fjk_dynamic_smem);
  const unsigned s_q = smem_addr(smem);
  const unsigned s_k = s_q + Tr::kKOffsetBytes;
  const unsigned s_v = s_q + Tr::kVOffsetBytes;
  constexpr unsigned kKStageBytes = Tr::kKStageElems * kElemBytes;
  constexpr unsigned kVStageBytes = Tr::kVStageElems * kElemBytes;
  constexpr unsigned kKSubBytes = Tr::kSubN * Tr::kKPitch * kElemBytes;
  constexpr unsigned kVSubBytes = Tr::kSubN * Tr::kVPitch * kElemBytes;

  __shared__ CtaWork work_smem;
  const CtaWork& work = work_smem;
  int n_tiles, kv_cur, kv_next;
  ProbRows<Tr::kRowsPerThread> rows;
  clear_prob_rows(rows);
  {
    const CtaCoord cta = schedule_cta(p, Tr::kBlockM);
    const int h_kv = cta.h / p.q_per_kv;
    CtaWork w;
    w.b = cta.b, w.h = cta.h, w.q0 = cta.m_block * Tr::kBlockM;
    w.cursor = make_kv_cursor(p, w.b, w.h, w.q0, Tr::kBlockN);
    w.k = static_cast<const unsigned short*>(p.k) + w.b * p.k_stride.b + h_kv * p.k_stride.h;
    w.v = static_cast<const unsigned short*>(p.v) + w.b * p.v_stride.b + h_kv * p.v_stride.h;
    if (tid == 0) work_smem = w;
    if constexpr (pass_applies_prob(kPass)) {
      int q_of_row[Tr::kRowsPerThread];
      thread_rows<Tr>(q_of_row, w.q0, warp, lane);
      load_prob_rows<Var>(rows, p, w.b, w.h, q_of_row);
    }
    const unsigned short* q_ptr = static_cast<const unsigned short*>(p.q) + w.b * p.q_stride.b + w.h * p.q_stride.h;
    load_tile_async<Tr::kBlockM, Tr::kHeadDim, Tr::kQPitch, Tr::kNThreads>(s_q, q_ptr, p.q_stride.l, w.q0, p.len_q,
                                                                           tid);
    cp_async_commit();
    n_tiles = w.cursor.num_tiles;
    kv_cur = n_tiles > 0 ? w.cursor.kv_start(0) : 0;
    kv_next = n_tiles > 1 ? w.cursor.kv_start(1) : 0;
    if (n_tiles > 0) {
      load_tile_async<Tr::kBlockN, Tr::kHeadDim, Tr::kKPitch, Tr::kNThreads>(s_k, w.k, p.k_stride.l, kv_cur, p.len_kv,
                                                                             tid);
      if constexpr (pass_reads_v(kPass))
        load_tile_async<Tr::kBlockN, Tr::kHeadDimV, Tr::kVPitch, Tr::kNThreads>(s_v, w.v, p.v_stride.l, kv_cur,
                                                                                p.len_kv, tid);
    }
    cp_async_commit();
  }

  unsigned qf[Tr::kQFragSteps][Tr::kMmaM][4];
  if constexpr (Tr::kQInRegs) {
    cp_async_wait<1>();  // the Q group; K/V tile 0 may still be in flight
    __syncthreads();
    load_q_fragments<Tr>(qf, s_q, warp, lane);
  }

  float o[Tr::kMmaM][Tr::kTilesDv][4];
#pragma unroll
  for (int i = 0; i < Tr::kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < Tr::kTilesDv; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[i][j][e] = 0.0f;
  RowStats<Tr::kRowsPerThread> st;
  init_row_stats(st);
  // Without a score_mod, x is the raw dot product and scale * log2(e) folds into the exp2 FFMA.
  const float factor = Var::kScoreModIsNoop ? p.scale * fj::kLog2e : fj::kLog2e;

#pragma unroll 1
  for (int t = 0; t < n_tiles; ++t) {
    const int stage = t % Tr::kStages;
    cp_async_wait<0>();
    // After this barrier tile t is visible to every warp and every warp has finished tile t - 1, whose
    // ring slot ((t + 1) % kStages with two stages) the next load overwrites.
    __syncthreads();
    if (t + 1 < n_tiles) {
      const int next_stage = (t + 1) % Tr::kStages;
      load_tile_async<Tr::kBlockN, Tr::kHeadDim, Tr::kKPitch, Tr::kNThreads>(s_k + next_stage * kKStageBytes, work.k,
                                                                             p.k_stride.l, kv_next, p.len_kv, tid);
      if constexpr (pass_reads_v(kPass))
        load_tile_async<Tr::kBlockN, Tr::kHeadDimV, Tr::kVPitch, Tr::kNThreads>(
            s_v + next_stage * kVStageBytes, work.v, p.v_stride.l, kv_next, p.len_kv, tid);
    }
    cp_async_commit();
    // The index of tile t + 2 is fetched now and first used one iteration later, hiding its latency.
    const int kv_after = t + 2 < n_tiles ? work.cursor.kv_start(t + 2) : 0;
    const bool partial = t < work.cursor.partial_tiles;
    const int q_first = work.q0 + warp * Tr::kWarpRows + (lane >> 2);
#pragma unroll 1
    for (int sub = 0; sub < Tr::kSubTiles; ++sub) {
      const int kv0 = kv_cur + sub * Tr::kSubN;
      // A (sub-)tile of the last mask block can start at or past Lkv (Lkv not a multiple of the mask
      // block): it holds no keys and is skipped; the barrier / commit above still run uniformly.
      if (kv0 < p.len_kv) {
        process_kv_tile<Tr, Var, kPass>(o, st, rows, qf, s_q, s_k + stage * kKStageBytes + sub * kKSubBytes,
                                 s_v + stage * kVStageBytes + sub * kVSubBytes, p, work.b, work.h, q_first, kv0,
                                 partial, factor, warp, lane);
      }
    }
    kv_cur = kv_next;
    kv_next = kv_after;
  }

  cp_async_wait<0>();  // with no tiles the Q copy may still be landing in the region O reuses
  __syncthreads();
  write_o_lse<Tr, Var, kPass>(o, st, rows, factor, reinterpret_cast<unsigned short*>(smem), p, work.b, work.h, work.q0, warp, lane, tid);
}

}  // namespace fjk
