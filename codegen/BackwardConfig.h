// Host-side configuration of the attention backward kernels: tiles per head dim / dtype / GPU, whether a
// BlockMask's block sizes fit them, launch geometry, and the short generated "instantiation" sources that
// follow the kernel templates in the NVRTC programs.
//
// The backward is three NVRTC programs:
//   Aux   preprocess (Delta, LSE2) and the dQ convert kernel; depends only on dtype and head dims.
//   DkDv  the main kernel (codegen/templates/sm80/attention_bwd_dkdv.cuh): dK, dV and, unless deterministic,
//         dQ through float atomics into a float32 accumulator.
//   Dq    the deterministic dQ kernel (attention_bwd_dq.cuh), built only when it is asked for.
// The source of DkDv / Dq is the include-expansion of dsl/Interval.h, fastmath.cuh, the variant prelude
// (namespace fjv, built with its gradient), the kernel template and bwdInstantiationSource(); Aux needs no
// variant. Everything here is pure and deterministic: the same config gives byte-identical text.
#pragma once

#include <string>

#include "codegen/AttentionConfig.h"
#include "dsl/Types.h"

namespace flexjit {

/// The inputs of one backward build: what the kernel templates are specialised on.
struct BwdKernelConfig {
  /// Sm80: the mma.sync kernels below (any GPU from sm_80). Sm90: the dK/dV kernel of
  /// codegen/templates/sm90/attention_bwd_dkdv.cuh (wgmma + TMA, Hopper), whose tiles are fixed (blockM 64,
  /// blockN 128, three warpgroups); of the fields below it reads dtype, the head dims, the arch, stages,
  /// atomicDq (false: the sm80 dQ kernel's dqBlockM / dqBlockN / dqNumWarps) and sinkGrads.
  KernelFamily family = KernelFamily::Sm80;
  DType dtype = DType::BF16;  ///< of Q, K, V, O, dO and the gradients: F16 or BF16
  int headDim = 128;          ///< D of Q and K; a multiple of 16, at most 256
  int headDimV = 128;         ///< Dv of V and O; a multiple of 16, at most 256
  int archMajor = 9;          ///< compute capability of the target GPU (8.0 or newer)
  int archMinor = 0;

  // The dK/dV kernel (fjk::BwdTraits).
  int blockM = 64;       ///< q rows per tile of the walk (a divisor of 128)
  int blockN = 128;      ///< kv rows per CTA
  int numWarps = 8;
  int sdpWarpsM = 2;     ///< warps along q of S = Q K^T and dP = dO V^T (the rest along kv)
  int dkvWarpsN = 4;     ///< warps along kv of dK / dV (the rest along the head dim)
  int dqWarpsM = 2;      ///< warps along q of dQ = dS K (the rest along the head dim)
  int stages = 2;        ///< Q / dO ring depth: 2 overlaps the next tile's loads with this one's math
  int gemmUnroll = 16;   ///< k-steps of each warp product unrolled together (16: all)
  bool atomicDq = true;  ///< dQ from float atomics here; false = deterministic (the dQ kernel)
  int dqFirst = 0;       ///< 1: the atomic dQ product runs before dV / dK instead of after them
  /// Accumulation sites of score_mod_grad (the first gradWindows, at most the variant's gradSites) that
  /// add their captured-tensor gradients into a shared-memory window of gradWindowFloats floats per tile;
  /// both 0 when the variant has none (no shared memory, no code).
  int gradWindows = 0;
  int gradWindowFloats = 0;
  /// The variant's sink_mod reads a tensor that requires a gradient: the DkDv program also defines the
  /// sink-gradient kernel (common/sink_grad.cuh), launched after the preprocess.
  bool sinkGrads = false;

  // The deterministic dQ kernel (fjk::DqTraits).
  int dqBlockM = 64;   ///< q rows per CTA
  int dqBlockN = 64;   ///< kv rows per tile
  int dqNumWarps = 4;  ///< each warp owns dqBlockM / dqNumWarps rows

  bool operator==(const BwdKernelConfig& o) const;
};

/// The three NVRTC programs of the backward.
enum class BwdKernelKind { Aux, DkDv, Dq };

/// A readable name ("aux", "dkdv", "dq") for cache entries and dumps.
const char* bwdKindName(BwdKernelKind kind);

/// Whether a configuration or a BlockMask can run, and if not what to change (for flexjit::Error).
struct BwdConfigCheck {
  bool ok = true;
  std::string message;  ///< what is wrong
  std::string advice;   ///< what to change when the configuration is the default one ("; use ...")
};

/// The default configuration for a dtype / head dims / GPU, shrunk where needed so that the tiles divide
/// the BlockMask's block sizes and fit in shared memory. `deterministic` selects the dQ kernel instead of
/// atomics; `gradSites` is the variant's Variant::gradSites (gradient windows, see fitGradWindows). Run
/// checkBwdConfig / checkBwdMaskBlocks on the result: impossible inputs stay impossible.
BwdKernelConfig defaultBwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                 int maskBlockQ = 128, int maskBlockKV = 128, bool deterministic = false,
                                 int gradSites = 0);

/// The sm90 family's configuration (Hopper): the fixed tiles of its dK/dV kernel, a two-stage Q / dO ring,
/// dQ through TMA reductions, or (deterministic) by the sm80 family's dQ kernel with its default tiles. Run
/// checkBwdConfig / checkBwdMaskBlocks on the result.
BwdKernelConfig defaultSm90BwdConfig(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                     bool deterministic = false);

/// Gives the first min(gradSites, 4) accumulation sites a shared-memory window each: 2048 floats for one
/// or two sites, 1024 for three or four (16 KiB in all), halved down to 256 while the dK/dV kernel would
/// exceed the GPU's shared memory; none when even that does not fit. docs/kernels-backward.md says why.
void fitGradWindows(BwdKernelConfig& config, int gradSites);

/// Validates dtype, head dims, arch, warp grids and shared memory of both kernels.
BwdConfigCheck checkBwdConfig(const BwdKernelConfig& config);

/// Validates BlockMask block sizes against the tiles: a dK/dV CTA's kv rows must lie in one mask kv
/// block and every mask q block must split into whole q tiles (likewise for the dQ kernel's tiles).
BwdConfigCheck checkBwdMaskBlocks(const BwdKernelConfig& config, int maskBlockQ, int maskBlockKV);

/// The fields under their FLEXJIT_BWD_CONFIG names: "blockM=64 blockN=128 warps=8 ...".
std::string describeBwdConfig(const BwdKernelConfig& config);

/// Throws flexjit::Error with the check's message and advice unless both checks pass.
void requireBwdSupported(const BwdKernelConfig& config, int maskBlockQ, int maskBlockKV);

/// Dynamic shared memory of one CTA, in bytes (equal to fjk::BwdTraits / DqTraits::kSmemBytes).
int bwdDkDvSharedMemoryBytes(const BwdKernelConfig& config);
int bwdDqSharedMemoryBytes(const BwdKernelConfig& config);

/// Query rows per head of the workspace arrays (LSE2, Delta, the dQ accumulator): Lq rounded up to
/// fjk::kBwdLenPad, so that every q tile of every kernel lies inside them.
int bwdPaddedLenQ(int lenQ);

/// Launch geometry of one backward kernel; a zero grid entry means "nothing to launch".
struct BwdLaunch {
  unsigned grid[3];
  unsigned block[3];
  int sharedMemoryBytes;  ///< dynamic; above 48 KiB the launcher raises the function's limit first
};
BwdLaunch bwdPreprocessLaunch(int batch, int headsQ, int lenQ);
BwdLaunch bwdDkDvLaunch(const BwdKernelConfig& config, int batch, int headsKv, int lenKv);
BwdLaunch bwdDqLaunch(const BwdKernelConfig& config, int batch, int headsQ, int lenQ);
BwdLaunch bwdConvertLaunch(int batch, int headsQ, int lenQ);
BwdLaunch bwdSinkLaunch(int batch, int headsQ, int lenQ);

/// Names of the extern "C" kernels the instantiation sources define.
inline constexpr const char* kBwdPreprocessKernelName = "flexjit_attention_bwd_preprocess";
inline constexpr const char* kBwdConvertKernelName = "flexjit_attention_bwd_convert";
inline constexpr const char* kBwdDkDvKernelName = "flexjit_attention_bwd_dkdv";
inline constexpr const char* kBwdDqKernelName = "flexjit_attention_bwd_dq";
inline constexpr const char* kBwdSinkKernelName = "flexjit_attention_bwd_sink";

/// The kernel template each program of `config`'s family includes (repository-root path, as embedded).
const char* bwdKernelTemplate(const BwdKernelConfig& config, BwdKernelKind kind);

/// The generated tail of an NVRTC program: for DkDv / Dq the adapter from fjv:: to the kernel's Variant
/// interface and the extern "C" __global__ entry; for Aux the two small kernels' entries.
std::string bwdInstantiationSource(const BwdKernelConfig& config, BwdKernelKind kind);

}  // namespace flexjit
