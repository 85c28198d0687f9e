// Warp-level tensor-core and copy primitives for the attention kernels (sm_80 and newer, Hopper included):
// cp.async 16-byte copies into shared memory, ldmatrix fragment loads, mma.sync m16n8k16 with fp32
// accumulation, and fp32 -> bf16x2 / f16x2 packing.
//
// Everything is inline PTX because the kernels are compiled by NVRTC without the toolkit headers
// (no cuda_fp16.h / cuda_bf16.h). Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for
// mma.m16n8k16"), with g = lane / 4 and t = lane % 4:
//   A (16x16, row-major), 4 registers of 2 halves: a0 = A[g][2t..2t+1],   a1 = A[g+8][2t..2t+1],
//                                                  a2 = A[g][2t+8..2t+9], a3 = A[g+8][2t+8..2t+9]
//   B (16x8, "col" = n-major), 2 registers:        b0 = B[2t..2t+1][g],   b1 = B[2t+8..2t+9][g]
//   C (16x8 fp32), 4 floats:                       c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// The C fragments of two neighbouring n-tiles are therefore exactly the A fragment of a 16x16 tile, which
// is how P moves from the S = QK^T accumulator into the PV product without touching shared memory.
#pragma once

namespace fjk {

/// Threads per warp.
constexpr int kWarpSize = 32;
/// Rows and columns of one mma.m16n8k16 tile.
constexpr int kMmaRows = 16;
constexpr int kMmaCols = 8;
constexpr int kMmaK = 16;
/// Bytes moved by one cp.async / one ldmatrix row / one vector store.
constexpr int kCopyBytes = 16;
/// 16-bit elements per 16-byte piece.
constexpr int kElemsPerCopy = 8;

/// 16 bytes, the unit of every global <-> shared copy (no toolkit vector types under NVRTC).
struct alignas(16) Bytes16 {
  unsigned x, y, z, w;
};

/// The 32-bit shared-state-space address of a generic pointer into shared memory.
__device__ __forceinline__ unsigned smem_addr(const void* ptr) {
  unsigned addr;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(ptr));
  return addr;
}

/// Asynchronous 16-byte copy global -> shared. When `valid` is false nothing is read and the 16 bytes
/// are zero-filled (src-size 0): out-of-range rows of Q/K/V become zeros, never garbage or NaN, so
/// 0 * V and masked S stay finite.
__device__ __forceinline__ void cp_async_16(unsigned dst, const void* src, bool valid) {
  const int src_bytes = valid ? kCopyBytes : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/// Waits until at most `kPending` committed groups of this thread are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

/// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i receives
/// row lane/4, columns 2*(lane%4)..+1 of matrix i.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
/// As ldmatrix_x4, each matrix transposed: register i receives column lane/4, rows 2*(lane%4)..+1.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// c += a * b on one 16x8x16 tile, fp32 accumulation; bf16 or fp16 operands.
template <bool kIsBf16>
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  if constexpr (kIsBf16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

/// Rounds two floats to the kernel's 16-bit type (round to nearest even) and packs them, `lo` in the
/// low half (the lower column index of a fragment pair).
template <bool kIsBf16>
__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
  unsigned r;
  if constexpr (kIsBf16) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}

/// Sum / max over the 4 lanes of a quad (the lanes that share one accumulator row).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace fjk
