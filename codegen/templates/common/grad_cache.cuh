// Captured-tensor gradients reduced in registers before any atomic, for gradient sites whose element rarely
// changes from one call to the next: a prob_mod's offset[h] or scale[h] is one element for a whole tile and
// for a whole kernel's (b, h), and one global float atomic per position (billions at S = 8192) onto a few
// addresses serialises the backward (measured on the H200: 7.1 s for a Lazy Attention backward that the
// cached form runs in a fraction of that; docs/performance.md).
//
// SiteCachedGrads keeps, per gradient site of a generated *_grad function, the element last added to and
// its running sum; a contribution to another element flushes the sum with one atomic. flush_all() at the
// end of the kernel empties the caches, summing across the warp first when every lane holds the same
// element. Contributions are gated per element (enabled_if) by a select, so a masked position's NaN or inf
// derivative never reaches the sum.
#pragma once

#include "dsl/Semantics.h"

namespace fjk {

template <int kSites>
struct SiteCachedGrads {
  static constexpr int kSlots = kSites > 0 ? kSites : 1;
  const fj::GradArgs* g;
  mutable long long off[kSlots];
  mutable int slot[kSlots];
  mutable float sum[kSlots];

  __device__ __forceinline__ explicit SiteCachedGrads(const fj::GradArgs& args) : g(&args) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) off[s] = -1, slot[s] = 0, sum[s] = 0.0f;
  }

  /// Adds `value` at the element of capture `slot_` that `indices` name (out of bounds: dropped).
  template <class... I>
  __device__ __forceinline__ void add(int site, int slot_, const fj::TensorArg& t, float value, I... indices) const {
    const long long o = fj::gradOffset(g->stride[slot_], t, indices...);
    if (o != off[site] || slot_ != slot[site]) {
      flush_one(site);
      off[site] = o;
      slot[site] = slot_;
    }
    sum[site] += value;
  }

  /// The per-element view the generated code calls: a position that does not take part adds 0.
  struct Gate {
    const SiteCachedGrads* cache;
    bool on;
    template <class... I>
    __device__ __forceinline__ void accumulate(int site, int slot_, const fj::TensorArg& t, float value,
                                               I... indices) const {
      cache->add(site, slot_, t, on ? value : 0.0f, indices...);
    }
  };
  __device__ __forceinline__ Gate enabled_if(bool on) const { return Gate{this, on}; }

  /// Empties every cache; called by all 32 lanes of each warp at the same point (the warp sum's shuffles).
  __device__ __forceinline__ void flush_all() const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const long long first = __shfl_sync(0xffffffffu, off[s], 0);
      const int first_slot = __shfl_sync(0xffffffffu, slot[s], 0);
      if (__all_sync(0xffffffffu, off[s] == first && slot[s] == first_slot)) {
        float v = sum[s];
#pragma unroll
        for (int step = 16; step > 0; step /= 2) v += __shfl_xor_sync(0xffffffffu, v, step);
        if ((threadIdx.x & 31) == 0 && first >= 0) atomicAdd(g->grad[first_slot] + first, v);
        off[s] = -1, sum[s] = 0.0f;
      } else {
        flush_one(s);
      }
    }
  }

 private:
  __device__ __forceinline__ void flush_one(int s) const {
    // A sum of exactly 0 adds nothing; NaN != 0, so a NaN gradient still arrives.
    if (off[s] >= 0 && sum[s] != 0.0f) atomicAdd(g->grad[slot[s]] + off[s], sum[s]);
    off[s] = -1;
    sum[s] = 0.0f;
  }
};

}  // namespace fjk
