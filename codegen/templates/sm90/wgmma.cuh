// Warpgroup matrix multiply-accumulate (wgmma, sm_90a) on 128-byte-swizzled shared-memory tiles.
//
// Operand tiles are stored the way TMA writes a box with CU_TENSOR_MAP_SWIZZLE_128B: rows of 64 16-bit
// elements (128 bytes), the 16-byte chunk c of row r stored at chunk c ^ (r % 8), rows consecutive, and a
// wider tile split into column chunks of 64 elements, one after the other. Each tile starts 1024-byte
// aligned (8 rows), so the swizzle phase of a row is its row index mod 8 and descriptors need no base offset.
//
// Descriptors (PTX ISA "Matrix Descriptor Format"): start address, leading-dimension byte offset (LBO),
// stride-dimension byte offset (SBO), all in 16-byte units, and the swizzle mode in bits 62-63 (1 = 128B).
//   K-major operand (Q and K for S = Q K^T): 8-row core-matrix groups SBO = 1024 bytes apart; the 16
//     elements of one k-step lie inside a 128-byte row, so LBO is unused; k-step kk of a chunk starts
//     32 * kk bytes into it.
//   MN-major operand (V for O = P V, "transposed B"; P^T and dS^T for the backward's dV / dK, "transposed A"): along N, 64-element chunks LBO bytes apart (one
//     chunk of the tile = rows * 128 bytes); along K, 8 rows SBO = 1024 bytes apart; k-step kk (16 kv rows)
//     starts 2048 * kk bytes into the tile.
//
// Accumulator layout of m64nNk16 (fp32): warp w of the warpgroup owns rows 16 w .. 16 w + 15 and, like an
// mma.sync m16n8 C fragment per 8 columns, lane (g = lane / 4, t = lane % 4) holds d[4 j + e] =
// C[16 w + g + 8 (e / 2)][8 j + 2 t + e % 2]. An A operand in registers uses the mma.sync m16n8k16 A
// layout per warp, so P moves from the S accumulator into the PV product without shared memory
// (common/acc_tile.cuh).
//
// The operand lists below are spelled out because inline PTX names every register; one macro per N.
#pragma once

#include "codegen/templates/common/fragment.cuh"

namespace fjk {

/// Bytes of one swizzled row (64 16-bit elements) and of one 8-row swizzle atom.
constexpr int kSwizzleRowBytes = 128;
constexpr int kSwizzleRowElems = 64;
constexpr int kSwizzleAtomBytes = 1024;
/// Bytes one k-step (16 elements) advances along K inside a K-major row / along the rows of an MN-major tile.
constexpr int kKStepBytesKMajor = 32;
constexpr int kKStepBytesMnMajor = 16 * kSwizzleRowBytes;

__device__ __forceinline__ unsigned long long desc_field(unsigned bytes) { return (bytes & 0x3FFFFu) >> 4; }
constexpr unsigned long long kDescSwizzle128 = 1ull << 62;

/// Descriptor of a K-major tile at shared address `addr` (see the file comment).
__device__ __forceinline__ unsigned long long desc_k_major(unsigned addr) {
  return desc_field(addr) | (1ull << 16) | (desc_field(kSwizzleAtomBytes) << 32) | kDescSwizzle128;
}
/// Descriptor of an MN-major tile at `addr` whose 64-element chunks along N are `chunk_bytes` apart.
__device__ __forceinline__ unsigned long long desc_mn_major(unsigned addr, unsigned chunk_bytes) {
  return desc_field(addr) | (desc_field(chunk_bytes) << 16) | (desc_field(kSwizzleAtomBytes) << 32) |
         kDescSwizzle128;
}

/// Orders earlier register writes (accumulators, A fragments) before the wgmmas that follow.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
/// Closes the group of wgmmas issued since the last commit.
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/// Waits until at most kPending committed groups are still running (groups complete in order).
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
/// Pins registers an in-flight wgmma reads or writes: the compiler may not move their uses across this.
template <int kN>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int kN>
__device__ __forceinline__ void wgmma_fence_operands(unsigned (&d)[kN][4]) {
#pragma unroll
  for (int i = 0; i < kN; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) asm volatile("" : "+r"(d[i][r])::"memory");
}

#define FJ_WGMMA_SS_N64(TYPE, TNSP_A, TNSP_B) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
      "}, %32, %33, p, 1, 1, " #TNSP_A ", " #TNSP_B ";\n}\n" \
      : \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d) \
      : "memory")

#define FJ_WGMMA_RS_N64(TYPE, TNSP_B) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" \
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, " #TNSP_B ";\n}\n" \
      : \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d) \
      : "memory")

#define FJ_WGMMA_SS_N128(TYPE, TNSP_A, TNSP_B) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
      "}, %64, %65, p, 1, 1, " #TNSP_A ", " #TNSP_B ";\n}\n" \
      : \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
      "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
      "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
      "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d) \
      : "memory")

#define FJ_WGMMA_RS_N128(TYPE, TNSP_B) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, " #TNSP_B ";\n}\n" \
      : \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
      "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
      "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
      "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d) \
      : "memory")

#define FJ_WGMMA_SS_N256(TYPE, TNSP_A, TNSP_B) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
      "}, %128, %129, p, 1, 1, " #TNSP_A ", " #TNSP_B ";\n}\n" \
      : \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
      "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
      "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
      "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
      "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
      "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
      "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
      "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
      "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
      "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
      "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
      "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127]) \
      : "l"(desc_a), "l"(desc_b), "r"(scale_d) \
      : "memory")

#define FJ_WGMMA_RS_N256(TYPE, TNSP_B) \
  asm volatile( \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n" \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " {" \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, " \
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, " \
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, " \
      "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, " \
      "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" \
      "}, {%128, %129, %130, %131}, %132, p, 1, 1, " #TNSP_B ";\n}\n" \
      : \
      "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
      "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
      "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
      "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
      "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
      "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
      "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), \
      "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
      "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
      "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
      "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), \
      "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
      "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
      "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
      "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127]) \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d) \
      : "memory")

/// d (+)= A B for one k-step, A and B in shared memory, K-major unless kTransA / kTransB (MN-major:
/// desc_mn_major; 16-bit types only); scale_d == 0 overwrites d.
template <int kN, bool kIsBf16, int kTransA = 0, int kTransB = 0>
__device__ __forceinline__ void wgmma_ss(float (&d)[kN / 2], unsigned long long desc_a, unsigned long long desc_b,
                                         int scale_d) {
  static_assert(kN == 64 || kN == 128 || kN == 256, "wgmma tiles of 64, 128 or 256 columns");
  static_assert((kTransA == 0 || kTransA == 1) && (kTransB == 0 || kTransB == 1), "transpose flags are 0 or 1");
#define FJ_WGMMA_SS_PICK(MACRO)                                                       \
  if constexpr (kTransA == 0 && kTransB == 0) {                                       \
    if constexpr (kIsBf16) MACRO("bf16", 0, 0); else MACRO("f16", 0, 0);              \
  } else if constexpr (kTransA == 0) {                                                \
    if constexpr (kIsBf16) MACRO("bf16", 0, 1); else MACRO("f16", 0, 1);              \
  } else if constexpr (kTransB == 0) {                                                \
    if constexpr (kIsBf16) MACRO("bf16", 1, 0); else MACRO("f16", 1, 0);              \
  } else {                                                                            \
    if constexpr (kIsBf16) MACRO("bf16", 1, 1); else MACRO("f16", 1, 1);              \
  }
  if constexpr (kN == 64) {
    FJ_WGMMA_SS_PICK(FJ_WGMMA_SS_N64)
  } else if constexpr (kN == 128) {
    FJ_WGMMA_SS_PICK(FJ_WGMMA_SS_N128)
  } else {
    FJ_WGMMA_SS_PICK(FJ_WGMMA_SS_N256)
  }
#undef FJ_WGMMA_SS_PICK
}

/// d += A B for one k-step, A (four registers, mma.sync A layout) from registers, B MN-major in shared
/// memory.
template <int kN, bool kIsBf16>
__device__ __forceinline__ void wgmma_rs_mn(float (&d)[kN / 2], const unsigned (&a)[4], unsigned long long desc_b) {
  static_assert(kN == 64 || kN == 128 || kN == 256, "wgmma tiles of 64, 128 or 256 columns");
  const int scale_d = 1;
  if constexpr (kN == 64) {
    if constexpr (kIsBf16) FJ_WGMMA_RS_N64("bf16", 1); else FJ_WGMMA_RS_N64("f16", 1);
  } else if constexpr (kN == 128) {
    if constexpr (kIsBf16) FJ_WGMMA_RS_N128("bf16", 1); else FJ_WGMMA_RS_N128("f16", 1);
  } else {
    if constexpr (kIsBf16) FJ_WGMMA_RS_N256("bf16", 1); else FJ_WGMMA_RS_N256("f16", 1);
  }
}

#undef FJ_WGMMA_SS_N64
#undef FJ_WGMMA_RS_N64
#undef FJ_WGMMA_SS_N128
#undef FJ_WGMMA_RS_N128
#undef FJ_WGMMA_SS_N256
#undef FJ_WGMMA_RS_N256

/// The flat register view of an accumulator tile (wgmma names registers d[0 .. N/2)).
template <int kN>
__device__ __forceinline__ float (&flat(float (&s)[1][kN][4]))[kN * 4] {
  return reinterpret_cast<float(&)[kN * 4]>(s);
}

/// The accumulator-tile view of flat wgmma registers (the shape the shared tile code of common/ takes).
template <int kTiles, int kFlat>
__device__ __forceinline__ float (&as_tile(float (&d)[kFlat]))[1][kTiles][4] {
  static_assert(kFlat == kTiles * 4, "four registers per 8-column tile");
  return reinterpret_cast<float(&)[1][kTiles][4]>(d);
}

/// Stores a wgmma accumulator (this thread's d[4 j + e], rows `row` and row + 8 of its warpgroup's 64,
/// columns 8 j + 2 t + e % 2) as 16-bit values into a 128-byte-swizzled tile at `tile` (the layout TMA and
/// the descriptors above use; 64-column chunks `chunk_bytes` apart), row half h scaled by scale[h]. The 8
/// rows of a store land on 8 different 16-byte slots: no bank conflicts.
template <bool kIsBf16, int kTiles>
__device__ __forceinline__ void st_acc_swizzled_16(unsigned tile, unsigned chunk_bytes, const float (&d)[kTiles * 4],
                                                   int row, int t, const float (&scale)[2]) {
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
    const int chunk = j / (kSwizzleRowElems / kMmaCols), piece = j % (kSwizzleRowElems / kMmaCols);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = row + half * (kMmaRows / 2);
      const unsigned addr = tile + chunk * chunk_bytes + r * kSwizzleRowBytes + ((piece ^ (r & 7)) << 4) + t * 4;
      const unsigned v = pack_half2<kIsBf16>(d[4 * j + 2 * half] * scale[half], d[4 * j + 2 * half + 1] * scale[half]);
      asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
    }
  }
}

/// Floats of one 128-byte swizzled row (the box width of a float32 TMA map with 128-byte swizzle).
constexpr int kSwizzleRowFloats = 32;

/// The float32 twin of st_acc_swizzled_16: the accumulator into boxes of 32 columns (`box_bytes` apart,
/// 128-byte rows, 16-byte piece c of row r at c ^ (r % 8)), the layout a float32 TMA map with 128-byte
/// swizzle reads. A warp's store covers 8 rows x 2 pieces: two wavefronts, the minimum for 256 bytes.
template <int kTiles>
__device__ __forceinline__ void st_acc_swizzled_f32(unsigned tile, unsigned box_bytes, const float (&d)[kTiles * 4],
                                                    int row, int t) {
  constexpr int kTilesPerBox = kSwizzleRowFloats / kMmaCols;
#pragma unroll
  for (int j = 0; j < kTiles; ++j) {
    const int box = j / kTilesPerBox;
    const int piece = (j % kTilesPerBox) * 2 + t / 2;  // 4 floats per 16-byte piece
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = row + half * (kMmaRows / 2);
      const unsigned addr = tile + box * box_bytes + r * kSwizzleRowBytes + ((piece ^ (r & 7)) << 4) + (t % 2) * 8;
      asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(d[4 * j + 2 * half]),
                   "f"(d[4 * j + 2 * half + 1])
                   : "memory");
    }
  }
}

}  // namespace fjk
