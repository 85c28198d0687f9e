// The register-fragment vocabulary every kernel family shares: the m16n8 accumulator tile (mma.sync's C
// fragment, which is also how each warp of a Hopper warpgroup holds a wgmma accumulator), 16-byte copy
// units, shared-memory addresses, fp32 -> bf16x2 / f16x2 packing and the quad reductions over the lanes
// that share an accumulator row.
//
// Accumulator layout (PTX ISA, "Matrix Fragments for mma.m16n8k16"; wgmma's per-warp layout is the same),
// with g = lane / 4 and t = lane % 4: c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1] of each 16x8 tile.
// The C fragments of two neighbouring n-tiles are exactly the A fragment of a 16x16 tile, which is how P
// moves from the S = QK^T accumulator into the PV product without touching shared memory.
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

/// Bytes of one Q/K/V/O element (fp16 and bf16 alike).
constexpr int kElemBytes = 2;

/// 16 bytes, the unit of every global <-> shared copy (no toolkit vector types under NVRTC).
struct alignas(16) Bytes16 {
  unsigned x, y, z, w;
};

/// The dynamic shared memory of the running kernel (its size is the kernel's traits' kSmemBytes).
extern __shared__ Bytes16 fjk_dynamic_smem[];

/// The 32-bit shared-state-space address of a generic pointer into shared memory.
__device__ __forceinline__ unsigned smem_addr(const void* ptr) {
  unsigned addr;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(ptr));
  return addr;
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
