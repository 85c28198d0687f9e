// Tile choice, validation, launch geometry and the instantiation source of the attention forward kernel.
//
// The sm90 family's shared-memory size comes from the layout header its kernel compiles too
// (codegen/templates/sm90/fwd_layout.h). The sm80 formula and tiling rules mirror fjk::FwdTraits in
// codegen/templates/sm80/attention_fwd_traits.cuh; bench/fwd_selftest.cu checks that both agree.
#include "codegen/AttentionConfig.h"

#include <algorithm>
#include <sstream>
#include <vector>
#include <type_traits>

#include "codegen/templates/decode/decode_params.h"
#include "codegen/templates/sm90/fwd_layout.h"
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

// The sm90 family: one producer warpgroup and two consumer warpgroups of 64 rows each.
constexpr int kSm90Warps = 12;
constexpr int kSm90BlockM = 128;
constexpr int kSm90Consumers = 2;
constexpr int kSm90ChunkCols = 64;  // head dims come in 128-byte swizzled chunks of 64 elements

bool sm90HeadDimOk(int d) { return d == 64 || d == 128 || d == 256; }

}  // namespace

const char* familyName(KernelFamily family) {
  switch (family) {
    case KernelFamily::Sm90: return "sm90";
    case KernelFamily::Decode: return "decode";
    default: return "sm80";
  }
}

bool FwdKernelConfig::operator==(const FwdKernelConfig& o) const {
  std::string a = describe(), b = o.describe();
  return a == b;
}

std::string FwdKernelConfig::describe() const {
  std::ostringstream s;
  bool first = true;
  forEachField(*this, [&](const char* name, const auto& field) {
    s << (first ? "" : " ") << name << '=';
    first = false;
    using T = std::decay_t<decltype(field)>;
    if constexpr (std::is_same_v<T, KernelFamily>) s << familyName(field);
    else if constexpr (std::is_same_v<T, DType>) s << dtypeName(field);
    else s << static_cast<int>(field);
  });
  return s.str();
}

int maxSharedMemoryPerBlock(int archMajor, int archMinor) {
  // Opt-in limits per block from the CUDA programming guide's compute-capability table.
  if (archMajor == 8 && (archMinor == 0 || archMinor == 7)) return 163 * 1024;
  if (archMajor == 9 || archMajor == 10) return 227 * 1024;
  return 99 * 1024;  // sm_86, sm_89, sm_120 and anything unknown: the conservative limit
}

int fwdSharedMemoryBytes(const FwdKernelConfig& c) {
  if (c.family == KernelFamily::Decode)
    return fjk::decode_smem_bytes(c.headDim, c.headDimV, c.blockN, c.numWarps, decodeRowTiles(c), c.stages);
  if (c.family == KernelFamily::Sm90)
    return fjk::sm90_fwd_layout(c.headDim, c.headDimV, c.blockM, c.blockN, c.stages).bytes;
  const int qPitch = c.headDim + kRowPadElems;
  const int oPitch = c.headDimV + kRowPadElems;
  const int qRegion = c.blockM * std::max(qPitch, oPitch);  // O is staged in the Q region
  const int kStage = c.blockN * (c.headDim + kRowPadElems);
  const int vStage = c.blockN * (c.headDimV + kRowPadElems);
  return (qRegion + kStages * (kStage + vStage)) * kElemBytes;
}

int fwdThreads(const FwdKernelConfig& c) { return c.numWarps * kWarpSize; }

FwdKernelConfig fwdConfigFor(KernelFamily family, DType dtype, int headDim, int headDimV, int archMajor,
                             int archMinor) {
  FwdKernelConfig c;
  c.family = family;
  c.dtype = dtype;
  c.headDim = headDim;
  c.headDimV = headDimV;
  c.archMajor = archMajor;
  c.archMinor = archMinor;
  return c;
}

FwdKernelConfig defaultFwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                 int maskBlockQ, int maskBlockKV) {
  FwdKernelConfig c = fwdConfigFor(KernelFamily::Sm80, dtype, headDim, headDimV, archMajor, archMinor);
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

FwdKernelConfig defaultSm90FwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor) {
  FwdKernelConfig c = fwdConfigFor(KernelFamily::Sm90, dtype, headDim, headDimV, archMajor, archMinor);
  c.numWarps = kSm90Warps;
  c.blockM = kSm90BlockM;
  // A 256-wide O accumulator takes 128 registers per consumer thread: S narrows to 64 columns so that
  // O, S and P fit in the consumers' 232 registers.
  c.blockN = std::max(headDim, headDimV) > 128 ? 64 : 128;
  c.subN = c.blockN;
  c.qInRegs = false;
  c.stages = 2;
  return c;
}

namespace {

FwdConfigCheck checkSm90FwdConfig(const FwdKernelConfig& c) {
  if (c.archMajor != 9 || c.archMinor != 0)
    return fail(FwdConfigStatus::UnsupportedArch, "flex attention: the sm90 kernel family needs an sm_90 (Hopper) GPU, "
                                                  "found sm_" + std::to_string(c.archMajor) + std::to_string(c.archMinor) +
                                                  "; use family=80 in FLEXJIT_FWD_CONFIG");
  if (!sm90HeadDimOk(c.headDim) || !sm90HeadDimOk(c.headDimV))
    return fail(FwdConfigStatus::UnsupportedHeadDim,
                "flex attention: the sm90 kernel family takes head dims 64, 128 and 256 (got D=" +
                    std::to_string(c.headDim) + ", Dv=" + std::to_string(c.headDimV) + "); other dims run on sm80");
  if (c.numWarps != kSm90Warps || c.blockM != kSm90BlockM || (c.blockN != 64 && c.blockN != 128) ||
      c.stages < 2 || c.stages > 4 || c.headDim % kSm90ChunkCols != 0)
    return fail(FwdConfigStatus::BadTile, "flex attention: invalid sm90 tiles blockM=" + std::to_string(c.blockM) +
                                              " blockN=" + std::to_string(c.blockN) +
                                              " stages=" + std::to_string(c.stages) +
                                              " numWarps=" + std::to_string(c.numWarps) +
                                              " (blockM 128, blockN 64 or 128, stages 2-4, 12 warps)");
  return {};
}

}  // namespace

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
  if (c.family == KernelFamily::Sm90) {
    if (FwdConfigCheck check = checkSm90FwdConfig(c); !check.ok()) return check;
  } else if (c.family == KernelFamily::Decode) {
    if (FwdConfigCheck check = checkDecodeConfig(c); !check.ok()) return check;
  } else if (c.numWarps < 1 || !isPositiveMultiple(c.blockM, c.numWarps * kMmaRows) || !isPositiveMultiple(c.subN, kMmaK) ||
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
  // The decode family's rows lie in the mask's first row block (the planner checks Q_LEN against it).
  if (c.family == KernelFamily::Decode) maskBlockQ = maskBlockQ > 0 ? c.blockM : maskBlockQ;
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

std::string fwdConfigSummary(const FwdKernelConfig& c) {
  std::ostringstream s;
  s << familyName(c.family) << " family, tile " << c.blockM << "x" << c.blockN;
  if (c.family == KernelFamily::Sm90)
    s << ", " << c.stages << "-stage TMA ring, " << c.numWarps << " warps";
  else if (c.family == KernelFamily::Decode)
    s << ", " << c.numWarps << " warps over split KV";
  else
    s << ", S slices of " << c.subN << ", " << c.numWarps << " warps, Q in "
      << (c.qInRegs ? "registers" : "shared memory");
  return s.str();
}

const char* fwdKernelTemplate(KernelFamily family) {
  switch (family) {
    case KernelFamily::Sm90: return "codegen/templates/sm90/attention_fwd.cuh";
    case KernelFamily::Decode: return "codegen/templates/decode/attention_decode.cuh";
    default: return "codegen/templates/sm80/attention_fwd.cuh";
  }
}

namespace {

/// The extern "C" entry points of a forward program: the one-pass kernel, or a prob_mod variant's three
/// passes. `params` is the kernel parameter type, `body` the template call with "PASS" for the pass.
std::string fwdEntryPoints(const FwdKernelConfig& c, const std::string& params, const std::string& body) {
  struct Entry {
    const char* name;
    const char* pass;
  };
  std::vector<Entry> entries = {{kFwdKernelName, "fjk::kPassOnline"}};
  if (c.probPasses) {
    entries = {{kFwdKernelName, "fjk::kPassStats"}, {kFwdApplyKernelName, "fjk::kPassApply"}};
    if (c.probDelta) entries.push_back({kFwdDeltaKernelName, "fjk::kPassDeltaWeights"});
  }
  std::ostringstream s;
  for (const Entry& e : entries) {
    std::string call = body;
    call.replace(call.find("PASS"), 4, e.pass);
    // The register cap at entry (one CTA per SM) is what lets sm90's setmaxnreg move registers between roles.
    s << "extern \"C\" __global__ void __launch_bounds__(" << fwdThreads(c) << ", 1)\n"
      << e.name << "(const __grid_constant__ " << params << " p) {\n"
      << "  " << call << ";\n"
      << "}\n";
  }
  return s.str();
}

std::string sm80Instantiation(const FwdKernelConfig& c) {
  const bool bf16 = c.dtype == DType::BF16;
  std::ostringstream s;
  s << "namespace fjk {\n"
    << (c.decideSubTiles ? "using GeneratedVariant = fjv::Hooks;  // the prelude's adapter\n"
                         : "struct GeneratedVariant : fjv::Hooks {  // the prelude's adapter, sub-tiles undecided\n"
                           "  static constexpr bool kMaskIntervalIsCheap = false;\n};\n")
    << "using GeneratedFwdTraits = FwdTraits<" << (bf16 ? "true" : "false") << ", " << c.headDim << ", "
    << c.headDimV << ", " << c.blockM << ", " << c.blockN << ", " << c.numWarps << ", "
    << (c.qInRegs ? "true" : "false") << ", " << c.subN << ">;\n"
    << "}  // namespace fjk\n"
    << fwdEntryPoints(c, "fjk::FwdParams", "fjk::attention_fwd<fjk::GeneratedFwdTraits, fjk::GeneratedVariant, PASS>(p)");
  return s.str();
}

std::string sm90Instantiation(const FwdKernelConfig& c) {
  std::ostringstream s;
  s << "namespace fjk {\n"
    << "using GeneratedFwdTraits = Sm90FwdTraits<" << (c.dtype == DType::BF16 ? "true" : "false") << ", "
    << c.headDim << ", " << c.headDimV << ", " << c.blockN << ", " << c.stages << ", " << kSm90Consumers << ">;\n"
    << "}  // namespace fjk\n"
    << fwdEntryPoints(c, "fjk::Sm90FwdParams", "fjk::attention_fwd_sm90<fjk::GeneratedFwdTraits, fjv::Hooks, PASS>(p)");
  return s.str();
}

}  // namespace

std::string fwdInstantiationSource(const FwdKernelConfig& c) {
  const bool bf16 = c.dtype == DType::BF16;
  std::ostringstream s;
  s << "// flexjit attention forward, " << familyName(c.family) << " family: " << (bf16 ? "bf16" : "fp16")
    << ", D=" << c.headDim << ", Dv=" << c.headDimV << ", tile " << c.blockM << "x" << c.blockN;
  if (c.family == KernelFamily::Sm90)
    s << ", " << c.stages << "-stage TMA ring, " << c.numWarps << " warps (1 producer + 2 consumer warpgroups)";
  else if (c.family == KernelFamily::Decode)
    s << " (packed rows x kv rows per warp), " << c.numWarps << " warps, split KV";
  else
    s << " (S " << c.subN << " wide), " << c.numWarps << " warps, Q in " << (c.qInRegs ? "registers" : "shared memory");
  s << ", sm_" << c.archMajor << c.archMinor << ".\n";
  if (c.family == KernelFamily::Decode) return s.str() + decodeInstantiation(c);
  return s.str() + (c.family == KernelFamily::Sm90 ? sm90Instantiation(c) : sm80Instantiation(c));
}

}  // namespace flexjit
