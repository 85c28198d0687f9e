// Compile-time shape of the backward kernels (BwdTraits for dK/dV, DqTraits for the deterministic dQ
// kernel) and the block-sparse walk both use: BlockWalk steps through the tiles a BlockMask lists, and
// BwdTileRing hands them to the CTA through shared memory (at the end of each kernel's dynamic shared
// memory, kRingOffset).
//
// dK/dV tiling (FlashAttention-2): a CTA owns kBlockN kv rows of one (batch, kv head) and walks the q
// tiles (kBlockM rows) of every query head of its GQA group. Its kNWarps warps split each product
// differently, so that every warp tile has at least 16 rows and an even number of 8-column n-tiles:
//   S = Q K^T, dP = dO V^T  (kBlockM x kBlockN):  kSdpWarpsM x kSdpWarpsN warps
//   dV = P^T dO, dK = dS^T Q (kBlockN x Dv / D):  kDkvWarpsN x kDkvWarpsD warps (accumulated across tiles)
//   dQ = dS K               (kBlockM x D):        kDqWarpsM  x kDqWarpsD  warps (atomically added)
// P and dS go through shared memory between the first and the other products.
#pragma once

#include "codegen/templates/common/attention_bwd_params.h"
#include "codegen/templates/common/bwd_walk.cuh"
#include "codegen/templates/sm80/bwd_warp_gemm.cuh"

namespace fjk {

/// Shared-memory rows are padded by 16 bytes (see bwd_warp_gemm.cuh: conflict-free ldmatrix).
constexpr int kBwdSmemPad = kElemsPerCopy;

/// The next tiles of the walk in shared memory. Thread 0 owns the walk and writes slot (i + 2) % 3 while
/// the CTA computes tile i; the barrier at the top of iteration i + 1 publishes it. Slot (i + 2) % 3 last
/// held tile i - 1, which every thread finished reading before that same barrier of iteration i, so
/// three slots never race.
/// It lives at the end of the dynamic shared memory (kBwdRingBytes reserved there).
struct BwdTileRing {
  static constexpr int kSlots = 3;
  BwdTile slot[kSlots];
  BlockWalk walk;
};

/// Shared-memory bytes reserved for the ring (a multiple of 16, so that it keeps the layout aligned).
constexpr int kBwdRingBytes = 128;
static_assert(sizeof(BwdTileRing) <= kBwdRingBytes, "the tile ring outgrew its reservation");

/// The shared-memory window of one accumulation site of score_mod_grad for one tile of the dK/dV walk
/// (attention_bwd_grad_window.cuh). Thread 0 fills it when it fetches the tile into ring slot i; it lives
/// and is reused exactly like that slot.
struct GradWindowSlot {
  long long lo;  ///< gradient-buffer offset of window element 0
  float* dst;    ///< the gradient buffer at offset lo: where window element i is flushed to (i added)
  int size;      ///< elements of the window; 0: this tile's contributions of the site go to global memory
  int pad;
};

/// Bytes reserved per GradWindowSlot (BackwardConfig.cpp sizes shared memory with the same number).
constexpr int kGradWindowSlotBytes = 32;
static_assert(sizeof(GradWindowSlot) <= kGradWindowSlotBytes, "GradWindowSlot outgrew its reservation");

template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kBlockM_, int kBlockN_, int kNWarps_, int kSdpWarpsM_,
          int kDkvWarpsN_, int kDqWarpsM_, int kStages_, bool kAtomicDq_, int kGemmUnroll_, bool kDqFirst_,
          int kGradWindows_ = 0, int kGradWindowFloats_ = 0>
struct BwdTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  static constexpr int kNThreads = kNWarps * kWarpSize;
  /// Depth of the Q / dO / LSE / Delta ring: 2 loads tile i + 1 while tile i is computed.
  static constexpr int kStages = kStages_;
  /// dQ = dS K is computed here and added into BwdParams::dq_accum with float atomics.
  static constexpr bool kAtomicDq = kAtomicDq_;
  /// k-steps of each warp product unrolled together (see warp_gemm_ss).
  static constexpr int kGemmUnroll = kGemmUnroll_;
  /// The atomic dQ product runs before dV and dK (its reductions then drain while they run) instead of
  /// after them.
  static constexpr bool kDqFirst = kDqFirst_;
  /// Accumulation sites of score_mod_grad (the first kGradWindows) that add into a shared-memory window
  /// of kGradWindowFloats floats per tile (0: every captured-tensor gradient goes straight to global memory).
  static constexpr int kGradWindows = kGradWindows_;
  static constexpr int kGradWindowFloats = kGradWindowFloats_;

  static constexpr int kSdpWarpsM = kSdpWarpsM_;
  static constexpr int kSdpWarpsN = kNWarps / kSdpWarpsM;
  static constexpr int kSdpTM = kBlockM / kSdpWarpsM / kMmaRows;
  static constexpr int kSdpTN = kBlockN / kSdpWarpsN / kMmaCols;

  static constexpr int kDkvWarpsN = kDkvWarpsN_;
  static constexpr int kDkvWarpsD = kNWarps / kDkvWarpsN;
  static constexpr int kDkvTM = kBlockN / kDkvWarpsN / kMmaRows;
  static constexpr int kDkTN = kHeadDim / kDkvWarpsD / kMmaCols;
  static constexpr int kDvTN = kHeadDimV / kDkvWarpsD / kMmaCols;

  static constexpr int kDqWarpsM = kDqWarpsM_;
  static constexpr int kDqWarpsD = kNWarps / kDqWarpsM;
  static constexpr int kDqTM = kBlockM / kDqWarpsM / kMmaRows;
  static constexpr int kDqTN = kHeadDim / kDqWarpsD / kMmaCols;

  static constexpr int kQPitch = kHeadDim + kBwdSmemPad;
  static constexpr int kKPitch = kHeadDim + kBwdSmemPad;
  static constexpr int kVPitch = kHeadDimV + kBwdSmemPad;
  static constexpr int kDoPitch = kHeadDimV + kBwdSmemPad;
  static constexpr int kPPitch = kBlockN + kBwdSmemPad;  ///< P and dS tiles, [kBlockM][kBlockN]

  // Shared-memory layout (bytes). K and V stay for the whole CTA and stage dK / dV in the epilogue.
  static constexpr int kKOffset = 0;
  static constexpr int kVOffset = kKOffset + kBlockN * kKPitch * kBwdElemBytes;
  static constexpr int kQOffset = kVOffset + kBlockN * kVPitch * kBwdElemBytes;
  static constexpr int kQStageBytes = kBlockM * kQPitch * kBwdElemBytes;
  static constexpr int kDoOffset = kQOffset + kStages * kQStageBytes;
  static constexpr int kDoStageBytes = kBlockM * kDoPitch * kBwdElemBytes;
  static constexpr int kPOffset = kDoOffset + kStages * kDoStageBytes;
  static constexpr int kDsOffset = kPOffset + kBlockM * kPPitch * kBwdElemBytes;
  static constexpr int kLseOffset = kDsOffset + kBlockM * kPPitch * kBwdElemBytes;
  static constexpr int kRowStatBytes = kBlockM * 4;  ///< one float per q row
  static constexpr int kDeltaOffset = kLseOffset + kStages * kRowStatBytes;
  static constexpr int kRingOffset = kDeltaOffset + kStages * kRowStatBytes;
  /// The gradient windows (none without kGradWindows): their GradWindowSlot [ring slot][site], then the
  /// float windows [site][kGradWindowFloats].
  static constexpr int kGradSlotOffset = kRingOffset + kBwdRingBytes;
  static constexpr int kGradWindowOffset = kGradSlotOffset + BwdTileRing::kSlots * kGradWindows * kGradWindowSlotBytes;
  static constexpr int kSmemBytes = kGradWindowOffset + kGradWindows * kGradWindowFloats * 4;

  static_assert(kStages == 1 || kStages == 2, "the Q / dO ring has one or two stages");
  static_assert(kSdpTM >= 1 && kSdpTN % 2 == 0 && kBlockM % (kSdpWarpsM * kMmaRows) == 0, "bad S/dP warp grid");
  static_assert(kDkvTM >= 1 && kDkTN % 2 == 0 && kDvTN % 2 == 0, "bad dK/dV warp grid");
  static_assert(kDqTM >= 1 && kDqTN % 2 == 0, "bad dQ warp grid");
  static_assert(kBlockM % kMmaK == 0 && kBlockN % kMmaK == 0, "tiles step k in 16s");
  static_assert(kBwdLenPad % kBlockM == 0, "the workspace padding must cover whole q tiles");
  static_assert(kGradWindows >= 0 && (kGradWindows == 0) == (kGradWindowFloats == 0), "bad gradient windows");
};

/// The deterministic dQ kernel: a CTA owns kBlockM query rows of one (batch, head), each warp 16 of them,
/// and walks the kv tiles of the forward lists like the forward kernel; dS never leaves registers.
template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kBlockM_, int kBlockN_, int kNWarps_>
struct DqTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  static constexpr int kNThreads = kNWarps * kWarpSize;
  static constexpr int kTM = kBlockM / kNWarps / kMmaRows;
  static constexpr int kTN = kBlockN / kMmaCols;
  static constexpr int kDqTN = kHeadDim / kMmaCols;
  static constexpr int kStages = 2;  ///< K / V ring

  static constexpr int kQPitch = kHeadDim + kBwdSmemPad;
  static constexpr int kDoPitch = kHeadDimV + kBwdSmemPad;
  static constexpr int kKPitch = kHeadDim + kBwdSmemPad;
  static constexpr int kVPitch = kHeadDimV + kBwdSmemPad;
  static constexpr int kQOffset = 0;  ///< also stages dQ in the epilogue (same pitch)
  static constexpr int kDoOffset = kQOffset + kBlockM * kQPitch * kBwdElemBytes;
  static constexpr int kKOffset = kDoOffset + kBlockM * kDoPitch * kBwdElemBytes;
  static constexpr int kKStageBytes = kBlockN * kKPitch * kBwdElemBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKStageBytes;
  static constexpr int kVStageBytes = kBlockN * kVPitch * kBwdElemBytes;
  static constexpr int kRingOffset = kVOffset + kStages * kVStageBytes;
  /// One float per thread that the captured-tensor gradient additions of this kernel go to (see
  /// attention_bwd_dq.cuh).
  static constexpr int kDiscardOffset = kRingOffset + kBwdRingBytes;
  static constexpr int kSmemBytes = kDiscardOffset + kNThreads * 4;

  static_assert(kTM >= 1 && kBlockM % (kNWarps * kMmaRows) == 0, "each warp needs whole 16-row m-tiles");
  static_assert(kTN % 2 == 0 && kDqTN % 2 == 0 && kHeadDimV % kMmaK == 0, "tiles need pairs of n-tiles");
  static_assert(kBwdLenPad % kBlockM == 0, "the workspace padding must cover whole q tiles");
};

}  // namespace fjk
