// Named barriers: a barrier over a subset of a CTA's warps (bar.sync / bar.arrive, PTX ISA "Parallel
// Synchronization and Communication Instructions: bar"). Every family from sm_80 on has them; the Hopper
// family uses them between warpgroups, the decode family between the warps that share a K/V stage.
#pragma once

namespace fjk {

/// Barrier `id` (1..15; 0 is __syncthreads) over `threads` threads, a multiple of the warp size.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

/// Arrives on barrier `id` without waiting (the other `threads` - 32 * warps of this group sync on it).
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace fjk
