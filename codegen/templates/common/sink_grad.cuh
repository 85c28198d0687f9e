// The sink_mod's gradient (a kernel of the backward, after the preprocess has written Delta): for each query
// row, d loss / d sink = -exp(sink - LSE) * Delta (the sink takes probability mass exp(sink - LSE) from every
// key, so each O row moves against it), pushed through the generated sink_mod_grad into the captured
// tensors' gradients. Written once for every family: it reads only the problem parameters and the workspace.
#pragma once

#include "codegen/templates/common/attention_bwd_params.h"
#include "codegen/templates/fastmath.cuh"

namespace fjk {

/// A gradient sink for sink_mod_grad: when every lane of the warp adds to the same element (a per-head sink
/// read as sinks[h], the common case), the warp sums with shuffles and issues one atomic; otherwise each
/// lane adds its own. Every lane of the warp must call it (the shuffles need them all).
struct WarpReducedGrads {
  const fj::GradArgs& g;

  template <class... I>
  __device__ __forceinline__ void accumulate(int, int slot, const fj::TensorArg& t, float value, I... indices) const {
    const long long off = fj::gradOffset(g.stride[slot], t, indices...);
    const long long first = __shfl_sync(0xffffffffu, off, 0);
    if (__all_sync(0xffffffffu, off == first)) {
#pragma unroll
      for (int step = 16; step > 0; step /= 2) value += __shfl_xor_sync(0xffffffffu, value, step);
      if ((threadIdx.x & 31) == 0 && off >= 0) atomicAdd(g.grad[slot] + off, value);
    } else if (off >= 0) {
      atomicAdd(g.grad[slot] + off, value);
    }
  }
};

/// Rows [blockIdx.x * blockDim.x, ...) of head (blockIdx.z, blockIdx.y); one thread per row.
template <class Var>
__device__ __forceinline__ void attention_bwd_sink(const BwdParams& p) {
  const int h = blockIdx.y;
  const int b = blockIdx.z;
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  const bool live = q < p.len_q;
  float dsink = 0.0f;
  if (live) {
    const float lse = p.lse[b * p.lse_stride.b + h * p.lse_stride.h + q * p.lse_stride.l];
    const float delta = p.delta[((long long)b * p.heads_q + h) * p.len_q_pad + q];
    // Delta = 0 (O = 0: every key masked, no LSE gradient) means the loss does not see the sink. LSE = -inf
    // (no key and a -inf sink) has no softmax at all: the product would be exp(-inf - (-inf)) = NaN.
    if (delta != 0.0f && lse != -fj::infinity()) dsink = -fj::fastExp(Var::sink_mod(b, h, q, p.cap) - lse) * delta;
  }
  // Rows past Lq add 0 at row 0's element, so a warp that straddles Lq still reduces to one atomic.
  Var::sink_mod_grad(b, h, live ? q : 0, dsink, p.cap, WarpReducedGrads{p.grads});
}

}  // namespace fjk
