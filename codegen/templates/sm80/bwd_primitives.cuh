// The PTX the backward kernels need beyond tile_mma.cuh (which they include): 8-byte float reductions
// into global memory, fp16 -> float widening, and reads of the thread / block index that the compiler
// cannot hoist. Kept apart from the kernel logic, which is plain C++ over these and tile_mma.cuh.
#pragma once

#include "codegen/templates/sm80/tile_mma.cuh"

namespace fjk {

/// Widens a 16-bit float (fp16 or bf16 bits in the low half of `bits`) to float.
template <bool kIsBf16>
__device__ __forceinline__ float half_bits_to_float(unsigned bits) {
  if constexpr (kIsBf16) {
    return __uint_as_float(bits << 16);
  } else {
    float f;
    asm("{ .reg .f16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(static_cast<unsigned short>(bits)));
    return f;
  }
}

/// threadIdx.x and blockIdx, read with volatile moves. Inside a kernel's main loop they keep the compiler
/// from hoisting the per-thread addresses and indices derived from them out of the loop, where they would
/// sit in registers next to the dK / dV accumulators (and spill); recomputing them costs a few integer
/// instructions per tile.
__device__ __forceinline__ int thread_in_loop() {
  int v;
  asm volatile("mov.u32 %0, %%tid.x;\n" : "=r"(v));
  return v;
}
__device__ __forceinline__ int block_x_in_loop() {
  int v;
  asm volatile("mov.u32 %0, %%ctaid.x;\n" : "=r"(v));
  return v;
}
__device__ __forceinline__ int block_z_in_loop() {
  int v;
  asm volatile("mov.u32 %0, %%ctaid.z;\n" : "=r"(v));
  return v;
}

/// Adds two consecutive floats to global memory without returning a value (fire and forget). sm_90 has
/// an 8-byte vector reduction; older GPUs issue two scalar ones. The address must be 8-byte aligned.
__device__ __forceinline__ void red_add_f32x2(float* dst, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(dst), "f"(a), "f"(b) : "memory");
#else
  asm volatile("red.global.add.f32 [%0], %1;\n" ::"l"(dst), "f"(a) : "memory");
  asm volatile("red.global.add.f32 [%0], %1;\n" ::"l"(dst + 1), "f"(b) : "memory");
#endif
}

}  // namespace fjk
