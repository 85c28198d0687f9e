// Hopper (sm_90a) synchronisation and copy primitives as thin inline-PTX verbs: mbarriers, TMA tile loads
// and stores (cp.async.bulk.tensor), proxy fences and register reallocation (setmaxnreg); the named barriers
// it uses are common/barrier.cuh.
//
// Written as inline PTX because the kernels are compiled by NVRTC without the toolkit headers. Every
// shared-memory address here is a 32-bit shared-state-space address (fjk::smem_addr).
//
// mbarrier phases: a barrier starts in phase 0. `mbar_wait(bar, parity)` returns once the phase of that
// parity has completed; on a fresh barrier parity 1 counts as completed, which is how a producer's first
// wait on an "empty" barrier passes before any consumer has released the slot.
#pragma once

#include "codegen/templates/common/barrier.cuh"
#include "codegen/templates/sm90/fwd_params.h"

namespace fjk {

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
/// Makes mbarrier.init visible to the other threads and to the async proxy (TMA completes on barriers).
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/// Arrives once and adds `bytes` to the transaction count the current phase waits for (the TMA loads
/// that complete on this barrier).
__device__ __forceinline__ void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/// Lane 0 of each consumer warp arrives on an "empty" barrier once the warp's wgmmas reading that slot
/// have completed (the barrier expects one arrival per consumer warp).
__device__ __forceinline__ void release_slot(unsigned bar, int lane) {
  __syncwarp();
  if (lane == 0) mbar_arrive(bar);
}

/// Spins until the phase of parity `parity` of `bar` has completed.
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

/// TMA load of one box of a rank-4 tensor (coordinates innermost first: column, row, head, batch) into
/// shared memory at `dst`, completing `bytes` of transactions on `bar`. Out-of-range box elements are
/// zero-filled (and still counted), so tiles past the end of a sequence need no other care.
__device__ __forceinline__ void tma_load_4d(unsigned dst, const TmaMap& map, int c0, int c1, int c2, int c3,
                                            unsigned bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
      "[%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<unsigned long long>(&map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}
/// Bulk copy (no tensor map) of `bytes` (a multiple of 16, both addresses 16-byte aligned) from global
/// memory to shared memory at `dst`, completing its transactions on `bar`.
__device__ __forceinline__ void bulk_load(unsigned dst, const void* src, unsigned bytes, unsigned bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

/// TMA reduction of one box of a rank-2 float32 tensor: global += the box in shared memory at `src`
/// (element-wise adds performed atomically in L2; elements outside the tensor are dropped). Completes in
/// the bulk group of tma_store_commit / tma_store_wait_read.
__device__ __forceinline__ void tma_reduce_add_2d(const TmaMap& map, unsigned src, int c0, int c1) {
  asm volatile("cp.reduce.async.bulk.tensor.2d.global.shared::cta.add.tile.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   reinterpret_cast<unsigned long long>(&map)),
               "r"(src), "r"(c0), "r"(c1)
               : "memory");
}

/// TMA store of one box from shared memory at `src`; elements outside the tensor are not written.
__device__ __forceinline__ void tma_store_4d(const TmaMap& map, unsigned src, int c0, int c1, int c2, int c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                   reinterpret_cast<unsigned long long>(&map)),
               "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
}
__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/// Waits until the committed TMA stores have finished reading shared memory (so it may be reused or the
/// CTA may exit).
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}
/// Prefetches a tensor map into the TMA unit's descriptor cache.
__device__ __forceinline__ void tma_prefetch_map(const TmaMap& map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&map)) : "memory");
}

/// Orders this thread's ordinary shared-memory writes before later async-proxy (TMA, wgmma) reads of
/// them; needed before a TMA store of data written with st.shared.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/// Register reallocation between warpgroups (every thread of the warpgroup executes it): the producer
/// gives registers back, the consumers take them. Needs a register cap at kernel entry
/// (__launch_bounds__(threads, 1)).
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}
template <int kRegs>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

}  // namespace fjk
