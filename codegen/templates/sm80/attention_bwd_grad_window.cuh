// Shared-memory windows for the captured-tensor gradients of the dK/dV kernel.
//
// A score_mod that reads a captured tensor requiring a gradient (bias[h][clamp(q - kv, 0, L - 1)],
// G[b][h][q] - G[b][h][kv]) adds one contribution per (q, kv) element and read; a tile's contributions
// land on a few hundred addresses, the same for every CTA, so one global atomic each is hopelessly
// contended. Per tile and accumulation site instead:
//
//   thread 0, when it fetches the tile into the ring: the site's offset interval over the tile's box
//     (fjv::score_mod_grad_windows, the interval form of the index computation: b and h fixed, q and kv
//     the tile's rows clipped to Lq / Lkv); if it spans at most kGradWindowFloats elements the tile gets
//     a window [lo, lo + size), else size 0
//   compute_ds: score_mod_grad adds through GradWindowSink, an atomicAdd on shared floats for offsets in
//     the window (one per warp when all its lanes add to the same element), a global atomicAdd (the path
//     without windows) for any other offset
//   after the barrier that ends the tile's dS: flush_grad_windows adds every nonzero window element to
//     global memory with one atomic and zeroes it for the next tile
//
// The interval is sound (dsl/Interval.h), so an offset outside the window is never lost, only slower.
// Two sites on one buffer (a tensor read twice) have two windows that may overlap: each flushes with
// atomics, so the sum is right. Window elements start at zero (zero_grad_windows) and every flush
// leaves them zero.
#pragma once

#include "codegen/templates/sm80/attention_bwd_phases.cuh"

namespace fjk {

/// The gradient sink score_mod_grad adds into in the dK/dV kernel (fj::GradArgs is the plain one): the
/// first kWindows sites go to their tile window when the offset lies in it, any other contribution to
/// global memory. compute_ds calls score_mod_grad with it on every lane for every element (see
/// sink_needs_all_lanes), `enabled` false where P == 0, so that accumulate can work warp-wide.
template <int kWindows, int kFloats>
struct GradWindowSink {
  const fj::GradArgs& global;
  float* window;                      ///< shared memory: kWindows windows of kFloats floats
  long long lo[kWindows];             ///< GradWindowSlot::lo of each site for this tile
  unsigned long long size[kWindows];  ///< GradWindowSlot::size (0: no window)
  bool enabled;                       ///< this lane's element takes part (P != 0)

  __device__ __forceinline__ GradWindowSink enabled_if(bool keep) const {
    GradWindowSink s = *this;
    s.enabled = keep;
    return s;
  }

  template <class... I>
  __device__ __forceinline__ void accumulate(int site, int slot, const fj::TensorArg& t, float value,
                                             I... indices) const {
    const long long off = fj::gradOffset(global.stride[slot], t, indices...);  // -1: out of bounds, dropped
    if (site >= kWindows) {
      if (enabled && off >= 0) atomicAdd(global.grad[slot] + off, value);
      return;
    }
    // One unsigned comparison covers off < lo too (the difference wraps to a huge value).
    const unsigned long long rel = (unsigned long long)(off - lo[site]);
    const bool in_window = enabled && off >= 0 && rel < size[site];
    // Warp-wide fast path: when every lane adds to the same window element (relative positions clamped
    // at the bias length, per-head scalars), one shuffle reduction and one shared atomic replace 32
    // contended ones (shared float atomics are compare-and-swap loops). Every lane gets here: no lane
    // returned above (the branch on `site` is compile-time) and compute_ds calls on all lanes.
    constexpr unsigned kNoElement = 0xffffffffu;
    const unsigned key = in_window ? (unsigned)rel : kNoElement;
    const unsigned key0 = __shfl_sync(0xffffffffu, key, 0);
    if (__all_sync(0xffffffffu, key == key0) && key0 != kNoElement) {
      float sum = value;
#pragma unroll
      for (int m = kWarpSize / 2; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
      if ((threadIdx.x & (kWarpSize - 1)) == 0) atomicAdd(window + site * kFloats + key0, sum);
      return;
    }
    if (in_window) {
      atomicAdd(window + site * kFloats + (int)rel, value);
    } else if (enabled && off >= 0) {
      atomicAdd(global.grad[slot] + off, value);  // outside the window (or none this tile): as without windows
    }
  }
};

/// compute_ds calls score_mod_grad on every lane for every element with a GradWindowSink (found by
/// argument-dependent lookup when compute_ds is instantiated).
template <int kWindows, int kFloats>
__host__ __device__ constexpr bool sink_needs_all_lanes(const GradWindowSink<kWindows, kFloats>*) {
  return true;
}

/// The windows of ring slot `ring_slot` (GradWindowSlot [kGradWindows]).
template <class Tr>
__device__ __forceinline__ GradWindowSlot* grad_window_slots(unsigned char* smem, int ring_slot) {
  return reinterpret_cast<GradWindowSlot*>(smem + Tr::kGradSlotOffset) + ring_slot * Tr::kGradWindows;
}

template <class Tr>
__device__ __forceinline__ float* grad_window_floats(unsigned char* smem) {
  return reinterpret_cast<float*>(smem + Tr::kGradWindowOffset);
}

/// Thread 0, after fetching `tile` into a ring slot: the windows of that tile. The box is the tile's
/// rows inside the sequences (elements past Lq or Lkv are masked and add nothing); kv rows [n0, n0 +
/// kBlockN) are the CTA's.
template <class Tr, class Var>
__device__ __forceinline__ void fill_grad_windows(GradWindowSlot* slots, const BwdTile& tile, const BwdParams& p,
                                                  int b, int n0) {
  static_assert(Tr::kGradWindows <= Var::kGradSites, "more gradient windows than accumulation sites");
  if (tile.h < 0) return;
  const int q_end = min(tile.start + Tr::kBlockM, p.len_q);
  const int kv_end = min(n0 + Tr::kBlockN, p.len_kv);
  fj::IvOffset offsets[Var::kGradSites];
  int grad_slots[Var::kGradSites];
  Var::score_mod_grad_windows(fj::ivInt(b, b), fj::ivInt(tile.h, tile.h), fj::ivInt(tile.start, q_end - 1),
                              fj::ivInt(n0, kv_end - 1), p.cap, p.grads, offsets, grad_slots);
#pragma unroll
  for (int w = 0; w < Tr::kGradWindows; ++w) {
    const fj::IvOffset o = offsets[w];
    // An empty interval (the site writes nothing in this tile) needs no window either.
    const bool fits = !fj::ivEmpty(o) && o.hi - o.lo < Tr::kGradWindowFloats;
    slots[w].lo = o.lo;
    slots[w].size = fits ? (int)(o.hi - o.lo + 1) : 0;
    slots[w].dst = fits ? p.grads.grad[grad_slots[w]] + o.lo : nullptr;
  }
}

/// All threads, before the first tile: every window element starts at zero.
template <class Tr>
__device__ __forceinline__ void zero_grad_windows(unsigned char* smem, int tid) {
  float* window = grad_window_floats<Tr>(smem);
  for (int i = tid; i < Tr::kGradWindows * Tr::kGradWindowFloats; i += Tr::kNThreads) window[i] = 0.0f;
}

/// The sink of one tile (ring slot `ring_slot`), built in compute_ds's caller.
template <class Tr>
__device__ __forceinline__ GradWindowSink<Tr::kGradWindows, Tr::kGradWindowFloats> grad_window_sink(
    unsigned char* smem, int ring_slot, const BwdParams& p) {
  const GradWindowSlot* slots = grad_window_slots<Tr>(smem, ring_slot);
  GradWindowSink<Tr::kGradWindows, Tr::kGradWindowFloats> sink{p.grads, grad_window_floats<Tr>(smem), {}, {}, true};
#pragma unroll
  for (int w = 0; w < Tr::kGradWindows; ++w) {
    sink.lo[w] = slots[w].lo;
    sink.size[w] = (unsigned long long)slots[w].size;
  }
  return sink;
}

/// All threads, after the barrier that completes the tile's dS (every shared add of the tile is done):
/// each nonzero element goes to global memory with one atomic and is zeroed for the next tile, whose adds
/// start after the next loop-top barrier.
template <class Tr>
__device__ __forceinline__ void flush_grad_windows(unsigned char* smem, int ring_slot, int tid) {
  const GradWindowSlot* slots = grad_window_slots<Tr>(smem, ring_slot);
  float* window = grad_window_floats<Tr>(smem);
#pragma unroll
  for (int w = 0; w < Tr::kGradWindows; ++w) {
    const int size = slots[w].size;
    float* dst = slots[w].dst;
    float* win = window + w * Tr::kGradWindowFloats;
#pragma unroll 1
    for (int i = tid; i < size; i += Tr::kNThreads) {
      const float v = win[i];
      if (v != 0.0f) {
        atomicAdd(dst + i, v);
        win[i] = 0.0f;
      }
    }
  }
}

}  // namespace fjk
