// Tile choice, validation, launch geometry and the instantiation sources of the attention backward.
//
// The shared-memory formulas and tiling rules mirror fjk::BwdTraits / DqTraits in
// codegen/templates/sm80/attention_bwd_traits.cuh (whose static_asserts would reject what checkBwdConfig lets
// through); tests/unit/attention_backward_compile_test.cpp compiles the defaults for every seed variant.
#include "codegen/BackwardConfig.h"

#include <algorithm>
#include <sstream>

#include "codegen/AttentionConfig.h"
#include "codegen/templates/sm90/bwd_layout.h"
#include "dsl/Error.h"

namespace flexjit {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMmaRows = 16;      // rows of one mma.m16n8k16 tile
constexpr int kMmaK = 16;         // tiles and head dims step in 16s
constexpr int kMaxHeadDim = 256;  // larger heads do not fit the dK / dV accumulators in registers
constexpr int kRowPadElems = 8;   // 16 bytes of padding per shared-memory row
constexpr int kElemBytes = 2;
constexpr int kStatBytes = 4;     // one float of LSE2 / Delta per q row
constexpr int kLenPad = 128;      // fjk::kBwdLenPad
constexpr int kMinBlock = 16;
/// Shared memory the main kernels reserve after their tiles for the tile ring (fjk::kBwdRingBytes).
constexpr int kRingBytes = 128;
/// Threads of the preprocess and convert kernels, and their rows per CTA (kBwdPreRows, kBwdConvertRows).
constexpr int kAuxThreads = 256;
constexpr int kPreRows = kLenPad;
constexpr int kConvertRows = 64;
constexpr int kSinkRows = 128;  // rows (threads) per CTA of the sink-gradient kernel
/// Widest kv tile of the dK/dV kernel for head dims up to 128; the dK + dV accumulators take
/// blockN * (D + Dv) / threads registers per thread, so wider heads halve it.
constexpr int kWideBlockN = 128;
constexpr int kWideHeadDim = 128;
constexpr int kBlockM = 64;
/// k-steps unrolled together in the warp products: all of them (head dims and tiles have at most 16).
/// Measured on H100 (docs/kernels-backward.md): full unrolling lets ptxas load fragments early and beats
/// 2-step unrolling by 6-7% at the cost of a few spilled loop scalars in some variants.
constexpr int kFullUnroll = 16;
/// Gradient windows (fjk::GradWindowSlot, attention_bwd_grad_window.cuh). A window must hold the offsets
/// one site can touch in a tile: 191 for bias[h][q - kv] over 64 x 128 tiles, 64 / 128 for G[b][h][q] /
/// G[b][h][kv]. 16 KiB in all keeps the dK/dV kernel in the same shared-memory carveout step as without
/// windows (H100: 171 -> 188 KiB of 196; A100: 137 -> 153 KiB of 164; D64: 107 -> 124 KiB of 132), so
/// L1 does not shrink; one CTA per SM is fixed by the registers anyway.
constexpr int kMaxGradWindows = 4;
constexpr int kGradWindowBudgetBytes = 16 * 1024;
constexpr int kMaxGradWindowFloats = 2048;
constexpr int kMinGradWindowFloats = 256;
constexpr int kGradWindowSlotBytes = 32;  // fjk::kGradWindowSlotBytes
constexpr int kRingSlots = 3;             // fjk::BwdTileRing::kSlots
constexpr int kFloatBytes = 4;
/// CTAs of the dQ kernel per SM its launch bounds ask for: two 4-warp CTAs (about 105 KiB of shared
/// memory each at D = 128) share an SM, each thread keeping up to 255 registers.
constexpr int kDqCtasPerSm = 2;

/// Bounds on fields an override may set, far below where the shared-memory sums could overflow an int:
/// 1024 threads per CTA, tiles and windows no GPU's shared memory could hold beyond these.
constexpr int kMaxWarps = 32;
constexpr int kMaxTileRows = 1024;
constexpr int kMaxWindowFloats = 1 << 16;

/// `value` is a positive multiple of a positive `unit` (a zero unit from an override must not divide).
bool isPositiveMultiple(int value, int unit) { return unit > 0 && value >= unit && value % unit == 0; }

BwdConfigCheck fail(const std::string& message, const std::string& advice = "") { return {false, message, advice}; }

/// Threads of the sm90 dK/dV kernel: a producer and two consumer warpgroups (fjk::Sm90BwdTraits).
constexpr int kSm90BwdThreads = 3 * 128;

/// What the sm90 dK/dV kernel's static_asserts require, as messages (fjk::Sm90BwdTraits).
BwdConfigCheck checkSm90BwdConfig(const BwdKernelConfig& c) {
  if (c.archMajor != 9 || c.archMinor != 0)
    return fail("flex_attention_backward: the sm90 family needs an sm_90 GPU, found sm_" + std::to_string(c.archMajor) +
                    std::to_string(c.archMinor),
                "; use FLEXJIT_BWD_CONFIG=family=80");
  auto dimOk = [](int d) { return d == 64 || d == 128; };
  if (!dimOk(c.headDim) || !dimOk(c.headDimV))
    return fail("flex_attention_backward: the sm90 family takes head dims 64 and 128 (got D=" +
                    std::to_string(c.headDim) + ", Dv=" + std::to_string(c.headDimV) + ")",
                "; use FLEXJIT_BWD_CONFIG=family=80 (every head dim)");
  if (c.blockM != fjk::kSm90BwdBlockM || c.blockN != fjk::kSm90BwdBlockN || c.numWarps * kWarpSize != kSm90BwdThreads ||
      c.stages < 1 || c.stages > 3 || c.gradWindows != 0)
    return fail("flex_attention_backward: the sm90 family runs blockM=64 blockN=128 warps=12, stages 1 to 3, no "
                "gradient windows (got " + describeBwdConfig(c) + ")");
  // Deterministic mode: the sm80 family's dQ kernel runs after the dK/dV kernel.
  if (!c.atomicDq && (!isPositiveMultiple(kLenPad, c.dqBlockM) || c.dqBlockM < kMinBlock ||
                      !isPositiveMultiple(c.dqBlockM, c.dqNumWarps * kMmaRows) || !isPositiveMultiple(c.dqBlockN, kMmaK)))
    return fail("flex_attention_backward: no valid dQ kernel tiles for " + describeBwdConfig(c));
  const int limit = maxSharedMemoryPerBlock(c.archMajor, c.archMinor);
  if (!c.atomicDq && bwdDqSharedMemoryBytes(c) > limit)
    return fail("flex_attention_backward: the dQ kernel's tiles need " + std::to_string(bwdDqSharedMemoryBytes(c)) +
                " bytes of shared memory, more than the " + std::to_string(limit) + " this GPU allows");
  if (bwdDkDvSharedMemoryBytes(c) > limit)
    return fail("flex_attention_backward: the sm90 tiles need " + std::to_string(bwdDkDvSharedMemoryBytes(c)) +
                " bytes of shared memory, more than the " + std::to_string(limit) + " this GPU allows",
                "; use fewer stages");
  return {};
}

/// Whether `rows` x `cols` splits into warpsRows x (numWarps / warpsRows) warp tiles of whole 16-row
/// m-tiles and an even number of 8-column n-tiles (ldmatrix.x4 loads two at a time).
bool gridFits(int rows, int cols, int numWarps, int warpsRows) {
  if (warpsRows < 1 || numWarps % warpsRows != 0) return false;
  const int warpsCols = numWarps / warpsRows;
  return isPositiveMultiple(rows, warpsRows * kMmaRows) && isPositiveMultiple(cols, warpsCols * kMmaK);
}

/// The warps along the rows of a rows x cols product that fit and read the fewest shared-memory bytes per
/// multiply-add (A and B fragments are re-read by every warp of a row / column: (r + c) / (r * c) per
/// warp tile); 0 when none fits. Ties go to `preferred` (FlashAttention-2's choice).
int chooseGrid(int rows, int cols, int numWarps, int preferred) {
  int best = 0;
  double bestCost = 0;
  for (int wr = 1; wr <= numWarps; wr *= 2) {
    if (!gridFits(rows, cols, numWarps, wr)) continue;
    const double r = double(rows) / wr, c = double(cols) / (numWarps / wr);
    const double cost = (r + c) / (r * c);
    if (best == 0 || cost < bestCost - 1e-12 || (cost <= bestCost + 1e-12 && wr == preferred)) {
      best = wr;
      bestCost = cost;
    }
  }
  return best;
}

/// Picks the three warp grids of the dK/dV kernel for the current tiles.
void chooseGrids(BwdKernelConfig& c) {
  const int dims = std::max(c.headDim, c.headDimV);
  const int minDims = std::min(c.headDim, c.headDimV);
  c.sdpWarpsM = chooseGrid(c.blockM, c.blockN, c.numWarps, 2);
  // dK and dV share the warp grid: both head dims must split over its columns.
  c.dkvWarpsN = chooseGrid(c.blockN, minDims, c.numWarps, std::max(1, std::min(4, c.blockN / 32)));
  if (c.dkvWarpsN != 0 && !gridFits(c.blockN, dims, c.numWarps, c.dkvWarpsN)) c.dkvWarpsN = 0;
  c.dqWarpsM = chooseGrid(c.blockM, c.headDim, c.numWarps, 2);
}

}  // namespace

bool BwdKernelConfig::operator==(const BwdKernelConfig& o) const {
  return family == o.family && dtype == o.dtype && headDim == o.headDim && headDimV == o.headDimV && archMajor == o.archMajor &&
         archMinor == o.archMinor && blockM == o.blockM && blockN == o.blockN && numWarps == o.numWarps &&
         sdpWarpsM == o.sdpWarpsM && dkvWarpsN == o.dkvWarpsN && dqWarpsM == o.dqWarpsM && stages == o.stages &&
         gemmUnroll == o.gemmUnroll && atomicDq == o.atomicDq && dqFirst == o.dqFirst && dqBlockM == o.dqBlockM &&
         dqBlockN == o.dqBlockN && dqNumWarps == o.dqNumWarps && gradWindows == o.gradWindows &&
         gradWindowFloats == o.gradWindowFloats && sinkGrads == o.sinkGrads;
}

const char* bwdKindName(BwdKernelKind kind) {
  switch (kind) {
    case BwdKernelKind::Aux: return "aux";
    case BwdKernelKind::DkDv: return "dkdv";
    case BwdKernelKind::Dq: return "dq";
  }
  return "?";
}

int bwdDkDvSharedMemoryBytes(const BwdKernelConfig& c) {
  if (c.family == KernelFamily::Sm90) return fjk::sm90_bwd_layout(c.headDim, c.headDimV, c.stages, c.atomicDq).bytes;
  const int qPitch = c.headDim + kRowPadElems, vPitch = c.headDimV + kRowPadElems;
  const int kv = c.blockN * (qPitch + vPitch) * kElemBytes;
  const int qdo = c.stages * c.blockM * (qPitch + vPitch) * kElemBytes;
  const int pds = 2 * c.blockM * (c.blockN + kRowPadElems) * kElemBytes;
  const int stats = 2 * c.stages * c.blockM * kStatBytes;
  const int windows = c.gradWindows * (kRingSlots * kGradWindowSlotBytes + c.gradWindowFloats * kFloatBytes);
  return kv + qdo + pds + stats + kRingBytes + windows;
}

int bwdDqSharedMemoryBytes(const BwdKernelConfig& c) {
  const int qPitch = c.headDim + kRowPadElems, vPitch = c.headDimV + kRowPadElems;
  constexpr int kKvStages = 2;
  const int discard = c.dqNumWarps * kWarpSize * kStatBytes;  // DqTraits::kDiscardOffset's floats
  return (c.dqBlockM + kKvStages * c.dqBlockN) * (qPitch + vPitch) * kElemBytes + kRingBytes + discard;
}

int bwdPaddedLenQ(int lenQ) { return (std::max(lenQ, 0) + kLenPad - 1) / kLenPad * kLenPad; }

void fitGradWindows(BwdKernelConfig& c, int gradSites) {
  c.gradWindows = std::clamp(gradSites, 0, kMaxGradWindows);
  c.gradWindowFloats = 0;
  if (c.gradWindows == 0) return;
  c.gradWindowFloats = kMaxGradWindowFloats;
  while (c.gradWindows * c.gradWindowFloats * kFloatBytes > kGradWindowBudgetBytes) c.gradWindowFloats /= 2;
  const int limit = maxSharedMemoryPerBlock(c.archMajor, c.archMinor);
  while (bwdDkDvSharedMemoryBytes(c) > limit && c.gradWindowFloats > kMinGradWindowFloats) c.gradWindowFloats /= 2;
  if (bwdDkDvSharedMemoryBytes(c) > limit) c.gradWindows = c.gradWindowFloats = 0;  // global atomics only
}

BwdKernelConfig defaultBwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor, int maskBlockQ,
                                 int maskBlockKV, bool deterministic, int gradSites) {
  BwdKernelConfig c;
  c.dtype = dtype;
  c.headDim = headDim;
  c.headDimV = headDimV;
  c.archMajor = archMajor;
  c.archMinor = archMinor;
  c.atomicDq = !deterministic;
  const int dims = std::max(headDim, headDimV);
  // FlashAttention-2's shape: 8 warps, 64 q rows x 128 kv rows; wide heads halve the kv rows so that
  // the dK + dV accumulators stay at 128 registers per thread. (FlashAttention-2 walks 128 q rows for
  // D <= 64; FLEXJIT_BWD_CONFIG=blockM=128 does that here and passes the GPU tests, but it has not been
  // timed yet, so the measured 64 stays the default: docs/kernels-backward.md.)
  c.numWarps = 8;
  c.blockM = kBlockM;
  c.blockN = dims <= kWideHeadDim ? kWideBlockN : kWideBlockN / 2;
  c.dqBlockM = kBlockM;
  c.dqBlockN = dims <= kWideHeadDim ? 64 : 32;
  while (c.blockN > kMinBlock && maskBlockKV > 0 && maskBlockKV % c.blockN != 0) c.blockN /= 2;
  while (c.blockM > kMinBlock && maskBlockQ > 0 && maskBlockQ % c.blockM != 0) c.blockM /= 2;
  while (c.dqBlockN > kMinBlock && maskBlockKV > 0 && maskBlockKV % c.dqBlockN != 0) c.dqBlockN /= 2;
  while (c.dqBlockM > kMinBlock && maskBlockQ > 0 && maskBlockQ % c.dqBlockM != 0) c.dqBlockM /= 2;
  c.dqNumWarps = std::max(1, std::min(4, c.dqBlockM / kMmaRows));
  c.gemmUnroll = kFullUnroll;
  // Without room for two Q / dO stages (A100: 163 KiB, sm_86/89: 99 KiB) the ring drops to one stage,
  // then the kv rows shrink.
  const int limit = maxSharedMemoryPerBlock(archMajor, archMinor);
  if (bwdDkDvSharedMemoryBytes(c) > limit) c.stages = 1;
  while (bwdDkDvSharedMemoryBytes(c) > limit && c.blockN > 2 * kMinBlock) c.blockN /= 2;
  while (bwdDqSharedMemoryBytes(c) > limit && c.dqBlockN > kMinBlock) c.dqBlockN /= 2;
  chooseGrids(c);
  // A head dim of an odd number of 16-column units (48, 80, 112, 144, ...) splits over no more than one warp
  // column, and 8 warps in one column leave the 64-row products 8 rows each, under the mma's 16: such dims
  // take 4 warps (16 rows each in dQ = dS K) and half the kv rows, so that each thread's dK + dV
  // accumulators stay those of the 8-warp tiles.
  auto gridsFit = [](const BwdKernelConfig& k) { return k.sdpWarpsM != 0 && k.dkvWarpsN != 0 && k.dqWarpsM != 0; };
  if (!gridsFit(c)) {
    c.numWarps = 4;
    BwdKernelConfig narrow = c;
    narrow.blockN = std::max(kMinBlock, c.blockN / 2);
    chooseGrids(narrow);
    if (gridsFit(narrow)) {
      c = narrow;
    } else {  // the kv rows cannot halve (wide heads are at 64 already): keep them
      chooseGrids(c);
    }
  }
  // The windows take what the tiles leave; they never shrink the tiles.
  fitGradWindows(c, gradSites);
  return c;
}

BwdKernelConfig defaultSm90BwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                     bool deterministic) {
  // The deterministic dQ kernel's tiles are the sm80 family's (it is that kernel).
  // (It has no gradient windows: no gradient sites are passed.)
  BwdKernelConfig c = defaultBwdConfig(dtype, headDim, headDimV, archMajor, archMinor, 128, 128, deterministic);
  c.family = KernelFamily::Sm90;
  c.blockM = fjk::kSm90BwdBlockM;
  c.blockN = fjk::kSm90BwdBlockN;
  c.numWarps = kSm90BwdThreads / kWarpSize;
  c.stages = 2;
  return c;
}

BwdConfigCheck checkBwdConfig(const BwdKernelConfig& c) {
  if (c.dtype != DType::F16 && c.dtype != DType::BF16)
    return fail("flex_attention_backward: q, k and v must be float16 or bfloat16");
  if (c.family == KernelFamily::Sm90) return checkSm90BwdConfig(c);
  auto badDim = [](int d) { return !isPositiveMultiple(d, kMmaK) || d > kMaxHeadDim; };
  if (badDim(c.headDim) || badDim(c.headDimV))
    return fail("flex_attention_backward: head dims must be multiples of 16 between 16 and 256 (got D=" +
                std::to_string(c.headDim) + ", Dv=" + std::to_string(c.headDimV) + ")");
  if (c.archMajor < 8)
    return fail("flex_attention_backward needs an sm_80 (Ampere) or newer GPU, found sm_" +
                std::to_string(c.archMajor) + std::to_string(c.archMinor));
  const bool inBounds = c.numWarps >= 1 && c.numWarps <= kMaxWarps && c.dqNumWarps >= 1 && c.dqNumWarps <= kMaxWarps &&
                        c.blockN <= kMaxTileRows && c.dqBlockN <= kMaxTileRows && c.gradWindowFloats <= kMaxWindowFloats;
  const bool tilesOk = inBounds && isPositiveMultiple(kLenPad, c.blockM) && isPositiveMultiple(kLenPad, c.dqBlockM) &&
                       c.blockM >= kMinBlock && c.dqBlockM >= kMinBlock && (c.stages == 1 || c.stages == 2) &&
                       c.gemmUnroll >= 1 && (c.dqFirst == 0 || c.dqFirst == 1) &&
                       2 * (c.blockM / 4) <= c.numWarps * kWarpSize &&
                       gridFits(c.blockM, c.blockN, c.numWarps, c.sdpWarpsM) &&
                       gridFits(c.blockN, c.headDim, c.numWarps, c.dkvWarpsN) &&
                       gridFits(c.blockN, c.headDimV, c.numWarps, c.dkvWarpsN) &&
                       gridFits(c.blockM, c.headDim, c.numWarps, c.dqWarpsM) &&
                       isPositiveMultiple(c.dqBlockM, c.dqNumWarps * kMmaRows) && isPositiveMultiple(c.dqBlockN, kMmaK) &&
                       c.gradWindows >= 0 && c.gradWindows <= kMaxGradWindows && c.gradWindowFloats >= 0 &&
                       (c.gradWindows == 0) == (c.gradWindowFloats == 0);
  if (!tilesOk)
    return fail("flex_attention_backward: no valid tiling with D=" + std::to_string(c.headDim) + " Dv=" +
                    std::to_string(c.headDimV) + " for " + describeBwdConfig(c),
                "; use a BlockMask with BLOCK_SIZE=128 (the default)");
  const int limit = maxSharedMemoryPerBlock(c.archMajor, c.archMinor);
  const int smem = std::max(bwdDkDvSharedMemoryBytes(c), c.atomicDq ? 0 : bwdDqSharedMemoryBytes(c));
  if (smem > limit)
    return fail("flex_attention_backward: the tiles need " + std::to_string(smem) +
                " bytes of shared memory, more than the " + std::to_string(limit) + " this GPU allows");
  return {};
}

BwdConfigCheck checkBwdMaskBlocks(const BwdKernelConfig& c, int maskBlockQ, int maskBlockKV) {
  // (The sm90 family's tiles are fixed at 64 x 128: the same rule, with those tiles.)
  bool ok = maskBlockQ > 0 && maskBlockKV > 0 && maskBlockQ % c.blockM == 0 && maskBlockKV % c.blockN == 0;
  if (!c.atomicDq) ok = ok && maskBlockQ % c.dqBlockM == 0 && maskBlockKV % c.dqBlockN == 0;
  if (!ok)
    return fail("flex_attention_backward: BlockMask block size (" + std::to_string(maskBlockQ) + ", " +
                    std::to_string(maskBlockKV) + ") must be a multiple of the kernel tiles (" +
                    std::to_string(c.blockM) + ", " + std::to_string(c.blockN) + ")",
                "; create the BlockMask with BLOCK_SIZE=128 (the default) or a multiple of the tile");
  return {};
}

std::string describeBwdConfig(const BwdKernelConfig& c) {
  std::ostringstream out;
  out << "family=" << familyName(c.family) << " blockM=" << c.blockM << " blockN=" << c.blockN << " warps=" << c.numWarps << " sdpWarpsM=" << c.sdpWarpsM
      << " dkvWarpsN=" << c.dkvWarpsN << " dqWarpsM=" << c.dqWarpsM << " stages=" << c.stages
      << " unroll=" << c.gemmUnroll << " dqFirst=" << c.dqFirst << " gradWindows=" << c.gradWindows
      << " gradWindowFloats=" << c.gradWindowFloats << " dqBlockM=" << c.dqBlockM << " dqBlockN=" << c.dqBlockN
      << " dqWarps=" << c.dqNumWarps;
  return out.str();
}

void requireBwdSupported(const BwdKernelConfig& config, int maskBlockQ, int maskBlockKV) {
  BwdConfigCheck check = checkBwdConfig(config);
  if (check.ok) check = checkBwdMaskBlocks(config, maskBlockQ, maskBlockKV);
  if (!check.ok) throw Error(check.message + check.advice);
}

namespace {

BwdLaunch makeLaunch(long long blocks, int y, int z, int threads, int smem) {
  BwdLaunch l;
  l.grid[0] = static_cast<unsigned>(std::max(blocks, 0LL));
  l.grid[1] = static_cast<unsigned>(std::max(y, 0));
  l.grid[2] = static_cast<unsigned>(std::max(z, 0));
  l.block[0] = static_cast<unsigned>(threads);
  l.block[1] = 1;
  l.block[2] = 1;
  l.sharedMemoryBytes = smem;
  return l;
}

long long ceilDiv(int a, int b) { return a > 0 ? (static_cast<long long>(a) + b - 1) / b : 0; }

}  // namespace

BwdLaunch bwdPreprocessLaunch(int batch, int headsQ, int lenQ) {
  return makeLaunch(ceilDiv(bwdPaddedLenQ(lenQ), kPreRows), headsQ, batch, kAuxThreads, 0);
}

BwdLaunch bwdDkDvLaunch(const BwdKernelConfig& c, int batch, int headsKv, int lenKv) {
  // (The sm90 family's warps are its three warpgroups.)
  return makeLaunch(ceilDiv(lenKv, c.blockN), headsKv, batch, c.numWarps * kWarpSize, bwdDkDvSharedMemoryBytes(c));
}

BwdLaunch bwdDqLaunch(const BwdKernelConfig& c, int batch, int headsQ, int lenQ) {
  return makeLaunch(ceilDiv(lenQ, c.dqBlockM), headsQ, batch, c.dqNumWarps * kWarpSize, bwdDqSharedMemoryBytes(c));
}

BwdLaunch bwdConvertLaunch(int batch, int headsQ, int lenQ) {
  return makeLaunch(ceilDiv(lenQ, kConvertRows), headsQ, batch, kAuxThreads, 0);
}

BwdLaunch bwdSinkLaunch(int batch, int headsQ, int lenQ) {
  return makeLaunch(ceilDiv(lenQ, kSinkRows), headsQ, batch, kSinkRows, 0);
}

const char* bwdKernelTemplate(const BwdKernelConfig& c, BwdKernelKind kind) {
  switch (kind) {
    case BwdKernelKind::Aux: return "codegen/templates/sm80/attention_bwd_aux.cuh";
    case BwdKernelKind::DkDv:
      return c.family == KernelFamily::Sm90 ? "codegen/templates/sm90/attention_bwd_dkdv.cuh"
                                            : "codegen/templates/sm80/attention_bwd_dkdv.cuh";
    case BwdKernelKind::Dq: return "codegen/templates/sm80/attention_bwd_dq.cuh";
  }
  return "";
}

namespace {

const char* boolText(bool b) { return b ? "true" : "false"; }

/// The kernels take the variant prelude's adapter (fjv::Hooks, with score_mod_grad).
void writeVariantAdapter(std::ostringstream& s) { s << "using GeneratedVariant = fjv::Hooks;\n"; }

/// The sink-gradient kernel's entry, in the program of whichever dK/dV family runs (common/sink_grad.cuh).
void writeSinkKernel(std::ostringstream& s, const BwdKernelConfig& c) {
  if (c.sinkGrads)
    s << "extern \"C\" __global__ void __launch_bounds__(" << kSinkRows << ")\n"
      << kBwdSinkKernelName << "(const __grid_constant__ fjk::BwdParams p) {\n"
      << "  fjk::attention_bwd_sink<fjk::GeneratedVariant>(p);\n"
      << "}\n";
}

}  // namespace

std::string bwdInstantiationSource(const BwdKernelConfig& c, BwdKernelKind kind) {
  const bool bf16 = c.dtype == DType::BF16;
  std::ostringstream s;
  // (The deterministic dQ kernel is the sm80 family's for both families.)
  const std::string family = kind != BwdKernelKind::DkDv ? "" : std::string(", ") + familyName(c.family) + " family";
  s << "// flexjit attention backward (" << bwdKindName(kind) << family << "): " << (bf16 ? "bf16" : "fp16")
    << ", D=" << c.headDim << ", Dv=" << c.headDimV << ", sm_" << c.archMajor << c.archMinor << ".\n";
  if (kind == BwdKernelKind::Aux) {
    s << "extern \"C\" __global__ void __launch_bounds__(" << kAuxThreads << ")\n"
      << kBwdPreprocessKernelName << "(const __grid_constant__ fjk::BwdParams p) {\n"
      << "  fjk::attention_bwd_preprocess<" << boolText(bf16) << ", " << c.headDimV << ", " << kAuxThreads << ">(p);\n"
      << "}\n"
      << "extern \"C\" __global__ void __launch_bounds__(" << kAuxThreads << ")\n"
      << kBwdConvertKernelName << "(const __grid_constant__ fjk::BwdParams p) {\n"
      << "  fjk::attention_bwd_convert<" << boolText(bf16) << ", " << c.headDim << ", " << kAuxThreads << ">(p);\n"
      << "}\n";
    return s.str();
  }
  s << "namespace fjk {\n";
  writeVariantAdapter(s);
  if (kind == BwdKernelKind::DkDv && c.family == KernelFamily::Sm90) {
    s << "using GeneratedBwdTraits = Sm90BwdTraits<" << boolText(bf16) << ", " << c.headDim << ", " << c.headDimV
      << ", " << c.stages << ", " << boolText(c.atomicDq) << ">;\n"
      << "}  // namespace fjk\n"
      << "extern \"C\" __global__ void __launch_bounds__(" << kSm90BwdThreads << ", 1)\n"
      << kBwdDkDvKernelName << "(const __grid_constant__ fjk::Sm90BwdParams P) {\n"
      << "  fjk::attention_bwd_dkdv_sm90<fjk::GeneratedBwdTraits, fjk::GeneratedVariant>(P);\n"
      << "}\n";
    writeSinkKernel(s, c);
  } else if (kind == BwdKernelKind::DkDv) {
    s << "using GeneratedBwdTraits = BwdTraits<" << boolText(bf16) << ", " << c.headDim << ", " << c.headDimV << ", "
      << c.blockM << ", " << c.blockN << ", " << c.numWarps << ", " << c.sdpWarpsM << ", " << c.dkvWarpsN << ", "
      << c.dqWarpsM << ", " << c.stages << ", " << boolText(c.atomicDq) << ", " << c.gemmUnroll << ", "
      << boolText(c.dqFirst != 0);
    // Without gradient windows the traits keep their defaults (and the source its text).
    if (c.gradWindows > 0) s << ", " << c.gradWindows << ", " << c.gradWindowFloats;
    s << ">;\n"
      << "}  // namespace fjk\n"
      << "extern \"C\" __global__ void __launch_bounds__(" << c.numWarps * kWarpSize << ", 1)\n"
      << kBwdDkDvKernelName << "(const __grid_constant__ fjk::BwdParams p) {\n"
      << "  fjk::attention_bwd_dkdv<fjk::GeneratedBwdTraits, fjk::GeneratedVariant>(p);\n"
      << "}\n";
    writeSinkKernel(s, c);
  } else {
    s << "using GeneratedDqTraits = DqTraits<" << boolText(bf16) << ", " << c.headDim << ", " << c.headDimV << ", "
      << c.dqBlockM << ", " << c.dqBlockN << ", " << c.dqNumWarps << ">;\n"
      << "}  // namespace fjk\n"
      << "extern \"C\" __global__ void __launch_bounds__(" << c.dqNumWarps * kWarpSize << ", " << kDqCtasPerSm << ")\n"
      << kBwdDqKernelName << "(const __grid_constant__ fjk::BwdParams p) {\n"
      << "  fjk::attention_bwd_dq<fjk::GeneratedDqTraits, fjk::GeneratedVariant>(p);\n"
      << "}\n";
  }
  return s.str();
}

}  // namespace flexjit
