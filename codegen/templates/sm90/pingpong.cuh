// The ping-pong of two consumer warpgroups (FlashAttention-3's schedule), used by the sm90 forward (the
// backward had it as an option, measured 3-8% slower on the H200 and removed, 2026-12-02): a warpgroup waits for its turn before issuing a group of products and hands the turn over
// right after issuing them, so the tensor cores alternate between the two while each runs its element-wise
// work in the other's GEMM time. Named barrier kBase + w is warpgroup w's turn: its own 128 threads sync on
// it and the other warpgroup's 128 arrive, so every wait is matched by exactly one hand-over. Warpgroup 1
// opens warpgroup 0's first turn (pingpong_open); the last hand-over must be consumed or skipped by the
// caller (the kernel says how).
#pragma once

#include "codegen/templates/common/barrier.cuh"
#include "codegen/templates/sm90/fwd_params.h"

namespace fjk {

template <int kBase>
__device__ __forceinline__ void pingpong_wait(int wg) {
  named_barrier_sync(kBase + wg, 2 * kWarpgroupThreads);
}
template <int kBase>
__device__ __forceinline__ void pingpong_pass(int wg) {
  named_barrier_arrive(kBase + (1 - wg), 2 * kWarpgroupThreads);
}
template <int kBase>
__device__ __forceinline__ void pingpong_open(int wg) {
  if (wg == 1) named_barrier_arrive(kBase, 2 * kWarpgroupThreads);
}

}  // namespace fjk
