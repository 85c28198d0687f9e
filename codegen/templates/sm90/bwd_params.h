// Launch parameters of the sm90 backward's dK/dV kernel: the common BwdParams and the TMA tensor maps,
// plain C structs that the host fills (runtime/TmaMaps.h encodes the maps) and the kernel reads as one
// __grid_constant__ parameter.
#pragma once

#include "codegen/templates/common/attention_bwd_params.h"
#include "codegen/templates/sm90/fwd_params.h"

namespace fjk {

/// Everything the sm90 dK/dV kernel reads. The 16-bit maps are rank 4 (column, row, head, batch) over the
/// pointers and strides of p, boxes of 64 columns (one 128-byte swizzled chunk) by 64 rows (Q, dO, and
/// the dK / dV stores: one consumer warpgroup's rows) or 128 rows (K, V: the CTA's). dq_accum is rank 2
/// over the float32 accumulator [B * Hq * len_q_pad, D], boxes of 32 columns (128 bytes) by 64 rows, for
/// the reductions that add each tile's dQ.
struct Sm90BwdParams {
  BwdParams p;
  TmaMap q;
  TmaMap k;
  TmaMap v;
  TmaMap dout;
  TmaMap dk;
  TmaMap dv;
  TmaMap dq_accum;
};

}  // namespace fjk
