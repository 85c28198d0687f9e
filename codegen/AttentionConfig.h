// Host-side configuration of the attention forward kernel: which tiles to use for a head dim / dtype /
// GPU, whether a BlockMask's block sizes fit those tiles, the launch geometry, and the short generated
// "instantiation" source that follows the kernel templates in the NVRTC program.
//
// The NVRTC source of one forward kernel is the include-expansion (codegen/Variant.cpp's
// expandIncludes) of: #include "dsl/Interval.h" (which brings dsl/Semantics.h),
// #include "codegen/templates/fastmath.cuh", the generated variant prelude (namespace fjv),
// #include kFwdKernelTemplate (which includes the other attention templates), and
// fwdInstantiationSource(config). Everything here is pure and deterministic: the same config gives
// byte-identical text.
#pragma once

#include <string>

#include "dsl/Types.h"

namespace flexjit {

/// The forward kernel families. Each has its own mainloop template over the shared pieces of
/// codegen/templates/common/; runtime/Planner.h picks one per problem.
enum class KernelFamily {
  Sm80,    ///< mma.sync + ldmatrix + cp.async (FlashAttention-2 style); any GPU from sm_80 on
  Sm90,    ///< wgmma + TMA + mbarrier ring, warp-specialised (Hopper, sm_90a only)
  Decode,  ///< few query rows over a long KV: GQA heads packed into rows, split KV, a combine kernel
};
/// "sm80" / "sm90" / "decode", for dump names, messages and FLEXJIT_FWD_CONFIG.
const char* familyName(KernelFamily family);

/// The inputs of one forward-kernel build, the forward's KernelSpec: what the kernel template is
/// specialised on. Its field list (forEachField) drives equality, the readable description, the index key
/// of built kernels and the FLEXJIT_FWD_CONFIG overrides, so a new field is written down once.
struct FwdKernelConfig {
  KernelFamily family = KernelFamily::Sm80;
  DType dtype = DType::BF16;  ///< of Q, K, V and O: F16 or BF16
  int headDim = 128;          ///< D of Q and K; a multiple of 16, at most 256
  int headDimV = 128;         ///< Dv of V and O; a multiple of 16, at most 256
  int archMajor = 9;          ///< compute capability of the target GPU (8.0 or newer)
  int archMinor = 0;
  int blockM = 128;       ///< query rows per CTA (kBlockM)
  int blockN = 64;        ///< kv rows per pipeline tile (kBlockN)
  int subN = 32;          ///< columns of S computed at once (kSubN); divides blockN
  int numWarps = 4;       ///< warps per CTA; each owns blockM / numWarps rows
  bool qInRegs = false;   ///< keep Q fragments in registers instead of re-reading shared memory
  /// In partial blocks, decide each warp's sub-tile with mask_mod's interval form where the variant allows it
  /// (fjv::Hooks::kMaskIntervalIsCheap). Off by default: on H100 it gained 3% on causal D128 but lost 6% on
  /// causal D64 and 5-8% on NATTEN / SASA (the interval code costs registers); FLEXJIT_FWD_CONFIG turns it on.
  bool decideSubTiles = false;
  int stages = 2;  ///< depth of the K/V ring (sm90; the sm80 family always double-buffers)
  /// The variant has a prob_mod: the program defines its three passes (common/prob_pass.cuh), the
  /// statistics pass as kFwdKernelName, then kFwdApplyKernelName and kFwdDeltaKernelName.
  bool probPasses = false;
  /// With probPasses: the program also defines the delta-weights pass, which only a forward that saves
  /// the backward's state runs. Without it (inference, a forward without gradients) the program is one
  /// kernel shorter: the delta pass inlines g'(p), often the largest piece of code (NVRTC time).
  bool probDelta = false;

  /// Calls f(name, field) for every field, in declaration order (field is an lvalue of its own type).
  template <class Self, class F>
  static void forEachField(Self& c, F&& f) {
    f("family", c.family), f("dtype", c.dtype), f("D", c.headDim), f("Dv", c.headDimV), f("archMajor", c.archMajor),
        f("archMinor", c.archMinor), f("blockM", c.blockM), f("blockN", c.blockN), f("subN", c.subN),
        f("numWarps", c.numWarps), f("qInRegs", c.qInRegs), f("decideSubTiles", c.decideSubTiles),
        f("stages", c.stages), f("probPasses", c.probPasses), f("probDelta", c.probDelta);
  }
  bool operator==(const FwdKernelConfig& o) const;
  /// "family=sm90 dtype=bf16 D=128 ...": every field, for messages, dumps and index keys.
  std::string describe() const;
};

/// A short readable summary for tables and headers: "sm90 family, tile 128x128, 2-stage TMA ring, 12 warps" or
/// "sm80 family, tile 128x64, S slices of 64, 4 warps, Q in shared memory".
std::string fwdConfigSummary(const FwdKernelConfig& config);

/// Why a configuration or a BlockMask cannot run; Ok otherwise.
enum class FwdConfigStatus {
  Ok,
  UnsupportedDType,    ///< Q/K/V must be fp16 or bf16
  UnsupportedHeadDim,  ///< D and Dv must be multiples of 16 in [16, 256]
  UnsupportedArch,     ///< sm_80 or newer is required (bf16 mma.sync, cp.async); sm90 needs exactly sm_90
  BadTile,             ///< blockM / blockN / subN / numWarps do not form a valid tiling
  SharedMemoryTooLarge,///< the tiles need more shared memory than one block may have on this GPU
  BadMaskBlock,        ///< BlockMask block sizes are not multiples of the kernel tiles
};

/// A status and, when not Ok, a message that says what to change (for flexjit::Error).
struct FwdConfigCheck {
  FwdConfigStatus status = FwdConfigStatus::Ok;
  std::string message;
  bool ok() const { return status == FwdConfigStatus::Ok; }
};

/// Largest dynamic shared memory one block may opt into on compute capability major.minor.
int maxSharedMemoryPerBlock(int archMajor, int archMinor);

/// The default tiles for a dtype / head dims / GPU, shrunk where needed so that they divide the
/// BlockMask's block sizes (maskBlockQ % blockM == 0, maskBlockKV % blockN == 0) and fit in shared
/// memory. Run checkFwdConfig / checkFwdMaskBlocks on the result: impossible inputs stay impossible.
FwdKernelConfig defaultFwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                 int maskBlockQ = 128, int maskBlockKV = 128);

/// The default tiles of the sm90 family for a dtype / head dims: 128 query rows (two consumer warpgroups),
/// kv tiles of 128 (64 for 256-wide heads, whose O accumulator needs the registers), a two-stage ring.
/// Run checkFwdConfig / checkFwdMaskBlocks on the result.
FwdKernelConfig defaultSm90FwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor);

/// What every family's defaults start from: the family, the dtype, the head dims and the arch.
FwdKernelConfig fwdConfigFor(KernelFamily family, DType dtype, int headDim, int headDimV, int archMajor,
                             int archMinor);

/// The decode family's tiles (codegen/templates/decode/attention_decode.cuh) for `packedRows` query rows
/// per (batch, head group) (Q_LEN x packed heads): blockM = 16, 32 or 64 packed rows per CTA (the fewest
/// row tiles of 16 that hold them, at most 4), kv tiles of 32 rows (blockN), 4 warps (kv slots of blockM / 16
/// warps each), a ring of two K/V tiles per kv slot (three for 64 rows).
FwdKernelConfig defaultDecodeConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                    long long packedRows);
/// Row tiles of 16 packed rows in a decode CTA of `config` (blockM / 16).
int decodeRowTiles(const FwdKernelConfig& config);

/// Launch geometry of the decode family: the split kernel's grid (splits * rowGroups, Hq / packHeads, B)
/// and the combine kernel's (one warp per output row).
struct DecodeLaunch {
  unsigned grid[3];
  unsigned block[3];
  int sharedMemoryBytes;
  unsigned combineGrid;  ///< CTAs of the combine kernel (block as above)
  int packHeads;
  int rowGroups;
  int splits;
};
/// Decode CTAs of `config` that fit one SM's shared memory at once.
int decodeCtasPerSm(const FwdKernelConfig& config);
/// kv splits for `ctas` CTAs before splitting and `tiles` kv tiles per row: enough CTAs to fill every SM
/// slot (smCount * ctasPerSm) once, never fewer than two tiles per kv slot in a split, at most
/// fjk::kDecodeMaxSplits.
int decodeSplits(long long ctas, long long tiles, int smCount, int ctasPerSm, int kvSlots);
/// The geometry for B x Hq query heads of Q_LEN rows, packHeads heads per CTA (1 or Hq / Hkv) and Lkv keys
/// (walked in tiles of config.blockN) on a GPU of smCount SMs. Throws flexjit::Error past CUDA's grid limits.
DecodeLaunch decodeLaunch(const FwdKernelConfig& config, int batch, int headsQ, int packHeads, int lenQ, int lenKV,
                          int smCount);

/// Validates a configuration (dtype, head dims, arch, tiling, shared memory).
FwdConfigCheck checkFwdConfig(const FwdKernelConfig& config);

/// Validates BlockMask block sizes against the tiles: a CTA's rows must lie in one mask row block, and
/// every mask kv block must split into whole kernel tiles.
FwdConfigCheck checkFwdMaskBlocks(const FwdKernelConfig& config, int maskBlockQ, int maskBlockKV);

/// Throws flexjit::Error with the check's message unless both checks pass.
void requireFwdSupported(const FwdKernelConfig& config, int maskBlockQ, int maskBlockKV);

/// Bound on the kernel's static shared memory (fjk::CtaWork), which counts against the same per-block
/// limit as the dynamic part.
inline constexpr int kFwdStaticSmemBytes = 128;

/// Dynamic shared memory of one CTA, in bytes (equals the family's traits' kSmemBytes: both compute it with
/// the same layout header).
int fwdSharedMemoryBytes(const FwdKernelConfig& config);
/// Threads per CTA.
int fwdThreads(const FwdKernelConfig& config);

/// Launch geometry of the forward kernel.
struct FwdLaunch {
  unsigned grid[3];   ///< (ceil(Lq / blockM) * Hq * B, 1, 1); a zero entry means "nothing to launch"
  unsigned block[3];  ///< (numWarps * 32, 1, 1)
  int sharedMemoryBytes;  ///< dynamic; above 48 KiB the launcher must raise the function's limit
                          ///< (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) first
  int scheduleHeads;      ///< the launcher copies it into FwdParams::sched_heads
};
/// Geometry for B x Hq heads of Lq queries. The grid is 1-D: CTAs take (batch, head) pairs in groups of
/// scheduleHeads and, within a group, row blocks longest first (see schedule_cta in the kernel).
/// Throws flexjit::Error when the grid would exceed 2^31 - 1 CTAs.
FwdLaunch fwdLaunch(const FwdKernelConfig& config, int batch, int headsQ, int lenQ);

/// (batch, head) pairs per scheduling group: 8 heads of K/V (32 MiB at S = 8192, D = 128) stay in L2.
inline constexpr int kFwdScheduleHeads = 8;

/// Spill stores (bytes per thread, ptxas's report) a forward configuration may have and still be taken:
/// the defaults spill a few registers' worth and are measured faster than narrower S slices without
/// spills (see defaultFwdConfig). Past this the runtime steps to narrower slices (runtime/KernelBuild.cpp).
inline constexpr int kToleratedSpillBytes = 64;

/// mask_mod operations past which the forward computes S at most kCostlyMaskSubN columns at a time: in
/// the partial blocks such masks (NATTEN, SASA: 18 operations with floor divisions) evaluate per element,
/// and on H100 they ran 25-55% faster with 32-column slices than with the wide defaults (docs/performance.md),
/// while cheap masks (causal: 1 operation, sliding window, prefix LM: 3-5) gain from the wide ones.
inline constexpr int kCostlyMaskOps = 8;
inline constexpr int kCostlyMaskSubN = 32;

/// Name of the extern "C" kernel that fwdInstantiationSource defines (with probPasses: the statistics pass).
inline constexpr const char* kFwdKernelName = "flexjit_attention_fwd";
/// With probPasses: O = sum_j prob_mod(p_ij) v_j from the statistics pass's LSE.
inline constexpr const char* kFwdApplyKernelName = "flexjit_attention_fwd_apply";
/// With probPasses: sum_j p_ij g'(p_ij) v_j into the output O's place (the backward's D' comes from it).
inline constexpr const char* kFwdDeltaKernelName = "flexjit_attention_fwd_delta_weights";
/// The decode family's second kernel (kFwdKernelName is its split kernel): merges the splits of each row.
inline constexpr const char* kDecodeCombineKernelName = "flexjit_attention_decode_combine";

/// The kernel template of a family to #include after the variant prelude (repository-root path, as
/// embedded): codegen/templates/sm80/attention_fwd.cuh, sm90/attention_fwd.cuh or decode/attention_decode.cuh.
const char* fwdKernelTemplate(KernelFamily family);

/// The generated tail of the NVRTC source: adapts fjv:: to the kernel's Variant interface and defines
/// extern "C" __global__ flexjit_attention_fwd(const __grid_constant__ fjk::FwdParams) (sm80) or
/// (const __grid_constant__ fjk::Sm90FwdParams) (sm90).
std::string fwdInstantiationSource(const FwdKernelConfig& config);
/// The decode family's part of fwdInstantiationSource (codegen/DecodeConfig.cpp).
std::string decodeInstantiation(const FwdKernelConfig& config);
/// Validates the decode family's tiles (checkFwdConfig's family part).
FwdConfigCheck checkDecodeConfig(const FwdKernelConfig& config);

}  // namespace flexjit
