// The decode family's host side (codegen/templates/decode/attention_decode.cuh): its default tiles, their
// checks, the split choice and launch geometry, and the instantiation's two entry points.
#include <algorithm>
#include <sstream>
#include <string>

#include "codegen/AttentionConfig.h"
#include "codegen/templates/decode/decode_params.h"
#include "dsl/Error.h"

namespace flexjit {

namespace {

constexpr int kWarpSize = 32;
constexpr int kDecodeWarps = 4;
/// 64 packed rows (four row tiles, so one kv slot of 4 warps): a ring of three tiles. Measured on the H200
/// (docs/performance.md, 2026-12-02, Q_LEN 16 x group 4, KV 32768, D128): 8 warps (two slots) x 2 stages
/// 254 us, x 3 240, x 4 237; 4 warps x 2 stages 282, x 3 197, x 4 226.
constexpr int kDecodeWideStages = 3;
constexpr int kDecodeBlockN = 32;
/// Shared memory the runtime keeps per CTA besides the dynamic part (the driver's reservation).
constexpr int kReservedSmemPerCta = 1024;
/// A split gives each kv slot at least this many tiles (fewer and the merge costs more than it saves).
constexpr int kDecodeMinTilesPerSlot = 2;
constexpr long long kMaxGridX = 2147483647LL;
constexpr long long kMaxGridYZ = 65535;

}  // namespace

int decodeRowTiles(const FwdKernelConfig& c) { return std::max(c.blockM / fjk::kDecodeRows, 1); }

FwdKernelConfig defaultDecodeConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                    long long packedRows) {
  FwdKernelConfig c = fwdConfigFor(KernelFamily::Decode, dtype, headDim, headDimV, archMajor, archMinor);
  // The rows of one (batch, head group) in one CTA where they fit, so that its K/V is read once (each
  // further row group streams the whole cache again); 3 row tiles round up to 4 (one kernel fewer).
  const int rowTiles = packedRows <= fjk::kDecodeRows       ? 1
                       : packedRows <= 2 * fjk::kDecodeRows ? 2
                                                            : fjk::kDecodeMaxRowTiles;
  c.blockM = rowTiles * fjk::kDecodeRows;
  c.blockN = kDecodeBlockN;
  c.subN = kDecodeBlockN;
  c.numWarps = kDecodeWarps;
  c.qInRegs = true;
  c.stages = rowTiles == fjk::kDecodeMaxRowTiles ? kDecodeWideStages : fjk::kDecodeStages;
  // Wide heads: fewer kv slots (each holds two K/V tiles) so that one CTA fits the GPU's shared memory.
  const int limit = maxSharedMemoryPerBlock(archMajor, archMinor) - kFwdStaticSmemBytes;
  auto bytes = [&] { return fjk::decode_smem_bytes(headDim, headDimV, c.blockN, c.numWarps, rowTiles, c.stages); };
  while (c.numWarps > std::max(2, rowTiles) && bytes() > limit) c.numWarps /= 2;
  // One kv slot left (64 rows): a shorter ring before giving up (sm_86's 99 KB at D = 192).
  while (c.stages > 2 && bytes() > limit) --c.stages;
  return c;
}

FwdConfigCheck checkDecodeConfig(const FwdKernelConfig& c) {
  const bool rowsOk = c.blockM == fjk::kDecodeRows || c.blockM == 2 * fjk::kDecodeRows ||
                      c.blockM == fjk::kDecodeMaxRowTiles * fjk::kDecodeRows;
  if (!rowsOk || (c.blockN != 32 && c.blockN != 64) || c.subN != c.blockN ||
      (c.numWarps != 2 && c.numWarps != 4 && c.numWarps != 8) || c.numWarps % decodeRowTiles(c) != 0 ||
      c.stages < 2 || c.stages > fjk::kDecodeMaxStages)
    return {FwdConfigStatus::BadTile,
            "flex attention: invalid decode tiles blockM=" + std::to_string(c.blockM) + " blockN=" +
                std::to_string(c.blockN) + " numWarps=" + std::to_string(c.numWarps) + " stages=" +
                std::to_string(c.stages) +
                " (blockM 16, 32 or 64; blockN 32 or 64; 2, 4 or 8 warps, a multiple of blockM / 16; 2 to 4 stages)"};
  return {};
}

int decodeCtasPerSm(const FwdKernelConfig& c) {
  const int perCta = fwdSharedMemoryBytes(c) + kReservedSmemPerCta;
  const int perSm = maxSharedMemoryPerBlock(c.archMajor, c.archMinor) + kReservedSmemPerCta;
  return std::max(1, perSm / perCta);
}

int decodeSplits(long long ctas, long long tiles, int smCount, int ctasPerSm, int kvSlots) {
  if (ctas <= 0 || tiles <= 0) return 1;
  // At most one full wave: the kernel streams K/V once, so a second, partial wave would idle most SMs.
  const long long slots = static_cast<long long>(std::max(smCount, 1)) * std::max(ctasPerSm, 1);
  const long long wanted = std::max<long long>(1, slots / ctas);
  const long long most = std::max<long long>(1, tiles / (static_cast<long long>(kvSlots) * kDecodeMinTilesPerSlot));
  return static_cast<int>(std::clamp<long long>(std::min(wanted, most), 1, fjk::kDecodeMaxSplits));
}

DecodeLaunch decodeLaunch(const FwdKernelConfig& c, int batch, int headsQ, int packHeads, int lenQ, int lenKV,
                          int smCount) {
  DecodeLaunch l{};
  l.packHeads = std::max(packHeads, 1);
  const long long rows = static_cast<long long>(l.packHeads) * std::max(lenQ, 0);
  l.rowGroups = static_cast<int>((rows + c.blockM - 1) / c.blockM);
  const long long groups = headsQ / l.packHeads;
  const long long ctas = static_cast<long long>(l.rowGroups) * groups * std::max(batch, 0);
  const long long tiles = (std::max(lenKV, 0) + c.blockN - 1) / c.blockN;
  l.splits = decodeSplits(ctas, tiles, smCount, decodeCtasPerSm(c), c.numWarps / decodeRowTiles(c));
  const long long gridX = static_cast<long long>(l.splits) * l.rowGroups;
  const long long outRows = static_cast<long long>(std::max(batch, 0)) * std::max(headsQ, 0) * std::max(lenQ, 0);
  const long long combine = (outRows + c.numWarps - 1) / c.numWarps;
  if (gridX > kMaxGridX || groups > kMaxGridYZ || batch > kMaxGridYZ || combine > kMaxGridX)
    throw Error("flex attention (decode): the grid exceeds CUDA's limits (B = " + std::to_string(batch) +
                ", head groups = " + std::to_string(groups) + "); split the batch");
  l.grid[0] = static_cast<unsigned>(gridX);
  l.grid[1] = static_cast<unsigned>(groups);
  l.grid[2] = static_cast<unsigned>(std::max(batch, 0));
  l.block[0] = static_cast<unsigned>(c.numWarps * kWarpSize);
  l.block[1] = l.block[2] = 1;
  l.sharedMemoryBytes = fwdSharedMemoryBytes(c);
  l.combineGrid = static_cast<unsigned>(combine);
  return l;
}

std::string decodeInstantiation(const FwdKernelConfig& c) {
  const int threads = c.numWarps * kWarpSize;
  std::ostringstream s;
  s << "namespace fjk {\n"
    // Packed rows mix heads, and a split mod's column part may read h: the decode family evaluates the mods
    // per element.
    << "struct GeneratedVariant : fjv::Hooks {\n"
    << "  static constexpr bool kScoreSplit = false;\n"
    << "  static constexpr bool kMaskSplit = false;\n"
    << "};\n"
    << "using GeneratedDecodeTraits = DecodeTraits<" << (c.dtype == DType::BF16 ? "true" : "false") << ", "
    << c.headDim << ", " << c.headDimV << ", " << c.blockN << ", " << c.numWarps << ", " << decodeRowTiles(c)
    << ", " << c.stages << ">;\n"
    << "}  // namespace fjk\n"
    << "extern \"C\" __global__ void __launch_bounds__(" << threads << ")\n"
    << kFwdKernelName << "(const __grid_constant__ fjk::DecodeParams p) {\n"
    << "  fjk::attention_decode<fjk::GeneratedDecodeTraits, fjk::GeneratedVariant>(p);\n"
    << "}\n"
    << "extern \"C\" __global__ void __launch_bounds__(" << threads << ")\n"
    << kDecodeCombineKernelName << "(const __grid_constant__ fjk::DecodeParams p) {\n"
    << "  fjk::attention_decode_combine<fjk::GeneratedDecodeTraits, fjk::GeneratedVariant>(p);\n"
    << "}\n";
  return s.str();
}

}  // namespace flexjit
