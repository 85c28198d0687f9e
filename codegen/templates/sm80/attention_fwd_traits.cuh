// Compile-time shape of one sm80 forward-kernel instantiation (FwdTraits: tiles, warps, shared-memory
// layout). The block-sparse walk it follows is common/block_walk.cuh.
//
// Tiling (FlashAttention-2): a CTA owns kBlockM query rows; each of its kNWarps warps owns kBlockM /
// kNWarps consecutive rows (kMmaM m-tiles of 16) and all columns of every S sub-tile, so row max / row
// sum never leave a quad. K and V tiles of kBlockN rows stream through a kStages-deep cp.async ring; each
// is computed in sub-tiles of kSubN columns.
#pragma once

#include "codegen/templates/common/block_walk.cuh"
#include "codegen/templates/sm80/tile_mma.cuh"

namespace fjk {

template <bool kIsBf16_, int kHeadDim_, int kHeadDimV_, int kBlockM_, int kBlockN_, int kNWarps_, bool kQInRegs_,
          int kSubN_>
struct FwdTraits {
  static constexpr bool kIsBf16 = kIsBf16_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kHeadDimV = kHeadDimV_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  /// Q fragments live in registers for the whole kernel (instead of ldmatrix from shared memory per tile).
  static constexpr bool kQInRegs = kQInRegs_;
  /// Columns of S computed at once. A loaded kv tile of kBlockN rows is processed as kBlockN / kSubN
  /// sub-tiles: wide loads amortise barriers and index lookups, narrow S keeps registers for O.
  static constexpr int kSubN = kSubN_;
  static constexpr int kSubTiles = kBlockN / kSubN;

  static constexpr int kNThreads = kNWarps * kWarpSize;
  static constexpr int kWarpRows = kBlockM / kNWarps;
  static constexpr int kMmaM = kWarpRows / kMmaRows;
  static constexpr int kRowsPerThread = 2 * kMmaM;  // fragment rows g and g + 8 of each m-tile
  static constexpr int kTilesN = kSubN / kMmaCols;
  static constexpr int kTilesDv = kHeadDimV / kMmaCols;
  static constexpr int kStepsD = kHeadDim / kMmaK;
  static constexpr int kStepsN = kSubN / kMmaK;
  static constexpr int kQFragSteps = kQInRegs ? kStepsD : 1;
  /// Depth of the K/V ring: tile t + 1 loads while tile t is computed.
  static constexpr int kStages = 2;

  // Shared-memory rows are padded by 16 bytes. With D % 16 == 0 the row pitch is an odd number of
  // 16-byte units (D / 8 + 1), so the 8 row addresses of one ldmatrix phase, and the 8 rows written by
  // one quad-row of O fragments, fall into 8 different bank groups: no conflicts, no swizzle needed.
  static constexpr int kRowPad = kElemsPerCopy;
  static constexpr int kQPitch = kHeadDim + kRowPad;
  static constexpr int kKPitch = kHeadDim + kRowPad;
  static constexpr int kVPitch = kHeadDimV + kRowPad;
  static constexpr int kOPitch = kHeadDimV + kRowPad;
  /// O is staged for coalesced stores in the Q region, which is free once the last tile is done.
  static constexpr int kQRegionElems = kBlockM * (kQPitch > kOPitch ? kQPitch : kOPitch);
  static constexpr int kKStageElems = kBlockN * kKPitch;
  static constexpr int kVStageElems = kBlockN * kVPitch;
  static constexpr int kKOffsetBytes = kQRegionElems * kElemBytes;
  static constexpr int kVOffsetBytes = kKOffsetBytes + kStages * kKStageElems * kElemBytes;
  static constexpr int kSmemBytes = kVOffsetBytes + kStages * kVStageElems * kElemBytes;

  static_assert(kBlockM % (kNWarps * kMmaRows) == 0, "each warp needs whole 16-row m-tiles");
  static_assert(kSubN % kMmaK == 0, "kSubN must be a multiple of 16 (P is the A operand of PV)");
  static_assert(kBlockN % kSubN == 0, "a loaded kv tile splits into whole sub-tiles");
  static_assert(kHeadDim % kMmaK == 0 && kHeadDimV % kMmaK == 0, "head dims must be multiples of 16");
  static_assert(kTilesN % 2 == 0 && kTilesDv % 2 == 0, "ldmatrix.x4 loads two n-tiles at a time");
};

}  // namespace fjk
