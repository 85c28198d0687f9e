// Tile choice, validation, launch geometry and the instantiation source of the attention forward kernel.
//
// The shared-memory formula and the tiling rules mirror fjk::FwdTraits in
// codegen/templates/attention_fwd_traits.cuh; bench/fwd_selftest.cu checks that both agree.
#include "codegen/AttentionConfig.h"

#include <algorithm>
#include <sstream>

#include "dsl/Error.h"

namespace flexjit {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMmaRows = 16;      // rows of one mma.m16n8k16 tile
constexpr int kMmaK = 16;         // head dims and kBlockN step in 16s
constexpr int kMaxHeadDim = 256;  // the O accumulator of larger heads does not fit in registers
constexpr int kRowPadElems = 8;   // 16 bytes of padding per shared-memory row
constexpr int kElemBytes = 2;
constexpr int kStages = 2;        // K/V ring depth
constexpr int kMinBlockM = 64;    // 4 warps x 16 rows
constexpr int kMinBlockN = 16;
/// Q stays in registers when O + S + Q fragments need at most this many 32-bit registers per thread,
/// leaving room for addresses, row statistics and the mods under the 255-register limit.
constexpr int kQInRegsBudget = 168;

bool isPositiveMultiple(int value, int unit) { return value >= unit && value % unit == 0; }

int warpRowTiles(const FwdKernelConfig& c) { return c.blockM / (c.numWarps * kMmaRows); }

/// Accumulator and fragment registers per thread: O, S and (optionally) Q.
int fragmentRegisters(const FwdKernelConfig& c, bool withQ) {
  const int mmaM = warpRowTiles(c);
  return mmaM * c.headDimV / 2 + mmaM * c.subN / 2 + (withQ ? mmaM * c.headDim / 4 : 0);
}

FwdConfigCheck fail(FwdConfigStatus status, const std::string& message) { return {status, message}; }

}  // namespace

bool FwdKernelConfig::operator==(const FwdKernelConfig& o) const {
  return dtype == o.dtype && headDim == o.headDim && headDimV == o.headDimV && archMajor == o.archMajor &&
         archMinor == o.archMinor && blockM == o.blockM && blockN == o.blockN && subN == o.subN &&
         numWarps == o.numWarps && qInRegs == o.qInRegs && decideSubTiles == o.decideSubTiles;
}

int maxSharedMemoryPerBlock(int archMajor, int archMinor) {
  // Opt-in limits per block from the CUDA programming guide's compute-capability table.
  if (archMajor == 8 && (archMinor == 0 || archMinor == 7)) return 163 * 1024;
  if (archMajor == 9 || archMajor == 10) return 227 * 1024;
  return 99 * 1024;  // sm_86, sm_89, sm_120 and anything unknown: the conservative limit
}

int fwdSharedMemoryBytes(const FwdKernelConfig& c) {
  const int qPitch = c.headDim + kRowPadElems;
  const int oPitch = c.headDimV + kRowPadElems;
  const int qRegion = c.blockM * std::max(qPitch, oPitch);  // O is staged in the Q region
  const int kStage = c.blockN * (c.headDim + kRowPadElems);
  const int vStage = c.blockN * (c.headDimV + kRowPadElems);
  return (qRegion + kStages * (kStage + vStage)) * kElemBytes;
}

int fwdThreads(const FwdKernelConfig& c) { return c.numWarps * kWarpSize; }

FwdKernelConfig defaultFwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                 int maskBlockQ, int maskBlockKV) {
  FwdKernelConfig c;
  c.dtype = dtype;
  c.headDim = headDim;
  c.headDimV = headDimV;
  c.archMajor = archMajor;
  c.archMinor = archMinor;
  c.numWarps = 4;
  const int maxDim = std::max(headDim, headDimV);
  // 4 warps x 32 rows: each K/V fragment read from shared memory feeds two mmas (FlashAttention-2's
  // ratio). S is computed subN columns at a time (S takes subN / 2 registers per thread, O takes Dv / 2),
  // as wide as the registers allow with at most kToleratedSpillBytes of spills: a wider S gives each warp
  // more independent mmas and exp2s between its dependent steps, which is what this latency-bound kernel
  // (two warps per scheduler) lacks. Measured on H100 (docs/performance.md, 2026-11-23): D = 128 with S 64
  // wide, 12-56 B spilled, is 5-6% faster than S 32 wide without spills; D = 64 with S 128 likewise.
  // D = 256 halves the rows to keep O in registers.
  if (maxDim <= 64) {
    c.blockM = 128, c.blockN = 128, c.subN = 128;
  } else if (maxDim <= 128) {
    c.blockM = 128, c.blockN = 64, c.subN = 64;
  } else {
    c.blockM = 64, c.blockN = 32, c.subN = 32;
  }
  while (c.blockM > kMinBlockM && maskBlockQ > 0 && maskBlockQ % c.blockM != 0) c.blockM /= 2;
  while (c.blockN > kMinBlockN && maskBlockKV > 0 && maskBlockKV % c.blockN != 0) c.blockN /= 2;
  const int smemLimit = maxSharedMemoryPerBlock(archMajor, archMinor);
  auto tooLarge = [&] { return fwdSharedMemoryBytes(c) + kFwdStaticSmemBytes > smemLimit; };
  while (tooLarge() && c.blockN > 2 * kMinBlockN) c.blockN /= 2;
  while (tooLarge() && c.blockM > kMinBlockM) c.blockM /= 2;
  while (tooLarge() && c.blockN > kMinBlockN) c.blockN /= 2;
  c.subN = std::min(c.subN, c.blockN);
  c.qInRegs = fragmentRegisters(c, true) <= kQInRegsBudget;
  return c;
}

FwdConfigCheck checkFwdConfig(const FwdKernelConfig& c) {
  if (c.dtype != DType::F16 && c.dtype != DType::BF16) {
    return fail(FwdConfigStatus::UnsupportedDType, "flex attention: q, k and v must be float16 or bfloat16");
  }
  auto badDim = [](int d) { return !isPositiveMultiple(d, kMmaK) || d > kMaxHeadDim; };
  if (badDim(c.headDim) || badDim(c.headDimV)) {
    return fail(FwdConfigStatus::UnsupportedHeadDim,
                "flex attention: head dims must be multiples of 16 between 16 and 256 (got D=" +
                    std::to_string(c.headDim) + ", Dv=" + std::to_string(c.headDimV) + ")");
  }
  if (c.archMajor < 8) {
    return fail(FwdConfigStatus::UnsupportedArch, "flex attention needs an sm_80 (Ampere) or newer GPU, found sm_" +
                                                      std::to_string(c.archMajor) + std::to_string(c.archMinor));
  }
  if (c.numWarps < 1 || !isPositiveMultiple(c.blockM, c.numWarps * kMmaRows) || !isPositiveMultiple(c.subN, kMmaK) ||
      !isPositiveMultiple(c.blockN, c.subN)) {
    return fail(FwdConfigStatus::BadTile, "flex attention: invalid tiles blockM=" + std::to_string(c.blockM) +
                                              " blockN=" + std::to_string(c.blockN) +
                                              " subN=" + std::to_string(c.subN) +
                                              " numWarps=" + std::to_string(c.numWarps));
  }
  const int smem = fwdSharedMemoryBytes(c);
  const int limit = maxSharedMemoryPerBlock(c.archMajor, c.archMinor);
  if (smem + kFwdStaticSmemBytes > limit) {
    return fail(FwdConfigStatus::SharedMemoryTooLarge,
                "flex attention: tiles " + std::to_string(c.blockM) + "x" + std::to_string(c.blockN) + " need " +
                    std::to_string(smem) + " bytes of shared memory, more than the " + std::to_string(limit) +
                    " this GPU allows; use smaller tiles");
  }
  return {};
}

FwdConfigCheck checkFwdMaskBlocks(const FwdKernelConfig& c, int maskBlockQ, int maskBlockKV) {
  if (maskBlockQ <= 0 || maskBlockKV <= 0 || maskBlockQ % c.blockM != 0 || maskBlockKV % c.blockN != 0) {
    return fail(FwdConfigStatus::BadMaskBlock,
                "flex attention: BlockMask block size (" + std::to_string(maskBlockQ) + ", " +
                    std::to_string(maskBlockKV) + ") must be a multiple of the kernel tile (" +
                    std::to_string(c.blockM) + ", " + std::to_string(c.blockN) +
                    "); create the BlockMask with BLOCK_SIZE=128 (the default) or a multiple of the tile");
  }
  return {};
}

void requireFwdSupported(const FwdKernelConfig& config, int maskBlockQ, int maskBlockKV) {
  FwdConfigCheck check = checkFwdConfig(config);
  if (check.ok()) check = checkFwdMaskBlocks(config, maskBlockQ, maskBlockKV);
  if (!check.ok()) throw Error(check.message);
}

FwdLaunch fwdLaunch(const FwdKernelConfig& c, int batch, int headsQ, int lenQ) {
  FwdLaunch l;
  const long long rowBlocks = lenQ > 0 ? (lenQ + c.blockM - 1) / c.blockM : 0;
  const long long pairs = (long long)std::max(batch, 0) * std::max(headsQ, 0);
  const long long ctas = rowBlocks * pairs;
  if (ctas > 2147483647LL) {
    throw Error("flex attention: " + std::to_string(ctas) + " thread blocks exceed the 2^31 - 1 CUDA allows; " +
                "split the batch");
  }
  l.grid[0] = static_cast<unsigned>(ctas);
  l.grid[1] = 1;
  l.grid[2] = 1;
  l.block[0] = static_cast<unsigned>(fwdThreads(c));
  l.block[1] = 1;
  l.block[2] = 1;
  l.sharedMemoryBytes = fwdSharedMemoryBytes(c);
  l.scheduleHeads = static_cast<int>(std::max<long long>(1, std::min<long long>(kFwdScheduleHeads, pairs)));
  return l;
}

std::string fwdInstantiationSource(const FwdKernelConfig& c) {
  const bool bf16 = c.dtype == DType::BF16;
  std::ostringstream s;
  s << "// flexjit attention forward: " << (bf16 ? "bf16" : "fp16") << ", D=" << c.headDim << ", Dv=" << c.headDimV
    << ", tile " << c.blockM << "x" << c.blockN << " (S " << c.subN << " wide), " << c.numWarps << " warps, Q in "
    << (c.qInRegs ? "registers" : "shared memory") << ", sm_" << c.archMajor << c.archMinor << ".\n"
    << "namespace fjk {\n"
    << (c.decideSubTiles ? "using GeneratedVariant = fjv::Hooks;  // the prelude's adapter\n"
                         : "struct GeneratedVariant : fjv::Hooks {  // the prelude's adapter, sub-tiles undecided\n"
                           "  static constexpr bool kMaskIntervalIsCheap = false;\n};\n")
    << "using GeneratedFwdTraits = FwdTraits<" << (bf16 ? "true" : "false") << ", " << c.headDim << ", "
    << c.headDimV << ", " << c.blockM << ", " << c.blockN << ", " << c.numWarps << ", "
    << (c.qInRegs ? "true" : "false") << ", " << c.subN << ">;\n"
    << "}  // namespace fjk\n"
    << "extern \"C\" __global__ void __launch_bounds__(" << fwdThreads(c) << ", 1)\n"
    << kFwdKernelName << "(const __grid_constant__ fjk::FwdParams p) {\n"
    << "  fjk::attention_fwd<fjk::GeneratedFwdTraits, fjk::GeneratedVariant>(p);\n"
    << "}\n";
  return s.str();
}

}  // namespace flexjit
