// Launch parameters of the sm90 forward kernel: the common FwdParams and the TMA tensor maps, plain C
// structs that the host fills (runtime/TmaMaps.h encodes the maps) and the kernel reads as one
// __grid_constant__ parameter.
#pragma once

#include "codegen/templates/common/attention_params.h"

namespace fjk {

/// The 128-byte, 64-byte-aligned tensor map (CUtensorMap) that describes a global tensor to the TMA unit;
/// filled on the host by cuTensorMapEncodeTiled.
struct alignas(64) TmaMap {
  unsigned long long opaque[16];
};

/// Threads of one warpgroup, and rows of the accumulator tile one consumer warpgroup owns.
constexpr int kWarpgroupThreads = 128;
constexpr int kWarpgroupRows = 64;

/// Everything the sm90 forward reads: the common parameters and the tensor maps of Q, K, V (loads) and O
/// (stores), encoded over the same pointers and strides as rank-4 tensors (column, row, head, batch) with
/// boxes of 64 columns by kBlockM (Q), kBlockN (K, V) and kWarpgroupRows (O) rows, 128-byte swizzle.
struct Sm90FwdParams {
  FwdParams p;
  TmaMap q;
  TmaMap k;
  TmaMap v;
  TmaMap o;
};

}  // namespace fjk
