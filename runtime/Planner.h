// The kernel planner: which kernel family and configuration runs a problem. One place decides, from the
// GPU (compute capability, driver features), the shapes (dtype, head dims), the BlockMask's block sizes,
// the tensors' layout and what the compiler proved about the mods; the launchers, `flexjit show`,
// `flexjit compile` and the demo all ask it, so what they build is what runs.
//
// Today's families: the decode family (split KV, GQA heads packed into rows) for a few query rows
// (Q_LEN <= kDecodeMaxQueries) over any GPU from sm_80, by default where one (batch, KV head)'s packed
// rows fit one decode CTA (Q_LEN x group <= 64, Planner.cpp's kDecodeAutoRows); otherwise the sm90 forward
// (wgmma + TMA, Hopper) where it applies, otherwise the sm80 forward (mma.sync, any GPU from sm_80).
// FLEXJIT_FWD_CONFIG overrides the choice (decode=0 never takes the decode family, decode=1 requires it;
// family=80 or family=90 for the prefill families) and the family's tunables (sm80: subN, qInRegs,
// decideSubTiles; sm90: stages; decode: blockM, blockN, warps, stages).
#pragma once

#include <string>

#include "codegen/AttentionConfig.h"
#include "codegen/Variant.h"
#include "compiler/ModFacts.h"
#include "dsl/Types.h"

namespace flexjit {

/// What every planner looks at: the shapes, the GPU, the BlockMask's blocks and whether TMA can be used.
struct KernelProblem {
  DType dtype = DType::BF16;
  int headDim = 128;
  int headDimV = 128;
  int archMajor = 9;
  int archMinor = 0;
  int maskBlockQ = 128;   ///< the BlockMask's block sizes (the kernel's tiles must divide them)
  int maskBlockKV = 128;
  /// The call's tensors can be described by TMA tensor maps (16-byte-aligned bases, nonzero strides that are
  /// multiples of 16 bytes: runtime/TmaMaps.h's tmaDescribable). False for broadcast (stride-0) tensors.
  bool tmaDescribable = true;
  bool driverHasTensorMaps = true;  ///< the driver exports cuTensorMapEncodeTiled (CUDA 12.0 and later)
};

/// Why a Hopper family (wgmma + TMA) cannot run `problem` at all: not an sm_90 GPU, no tensor maps in the
/// driver, a layout TMA cannot describe ("" when those hold).
std::string sm90Unavailable(const KernelProblem& problem);

/// What the forward planner looks at.
struct ForwardProblem : KernelProblem {
  ModFacts facts;                   ///< of the variant (mask cost decides the sm80 S width)
  /// score_mod's per-element tensor loads (Variant::scoreElementLoads): the sm90 family then starts at kv
  /// tiles of 64 (see planForward).
  int scoreElementLoads = 0;
  // The sizes the decode family is chosen and launched by (the prefill families' tiles do not depend on them).
  int batch = 1;
  int headsQ = 1;
  int headsKV = 1;
  int lenQ = 128;
  int lenKV = 128;
  int smCount = 132;
  /// The BlockMask's lists are one for every head (H = 1, broadcast): the query heads of a GQA group may
  /// share a decode CTA (they walk the same kv blocks).
  bool maskSameForEveryHead = true;
  /// A paged KV cache (its page size) or per-sequence kv lengths: only the decode family reads them.
  int pageSize = 0;
  bool kvLengths = false;
  /// A prob_mod variant's forward saves the backward's state (its delta weights): the program needs the
  /// delta-weights pass (FwdKernelConfig::probDelta). True unless the caller knows it does not.
  bool probDelta = true;
};

/// Query rows per head up to which the planner takes the decode family (the decode range).
inline constexpr int kDecodeMaxQueries = 16;

/// The chosen configuration and, in words, why that family (for `flexjit show` and error messages).
struct ForwardPlan {
  FwdKernelConfig config;
  std::string reason;
  /// Decode family: query heads per CTA (the GQA group when the mask is the same for every head, else 1).
  int decodePackHeads = 1;
};

/// Plans the forward for `problem`, applies FLEXJIT_FWD_CONFIG and validates the result: throws
/// flexjit::Error with what to change when no configuration can run it (or an override asks for one that
/// cannot).
ForwardPlan planForward(const ForwardProblem& problem);

/// The plan for contiguous tensors and the default 128 x 128 BlockMask blocks on a GPU of compute capability
/// major.minor (what `flexjit show`, `compile` and the demo build, with or without a GPU).
ForwardPlan planContiguousForward(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                  const Variant& variant);

/// Fills what the forward planner reads of a variant (its facts, its per-element loads).
void describeVariant(ForwardProblem& problem, const Variant& variant);

/// Why the sm90 family cannot run `problem` ("" when it can).
std::string sm90ForwardUnsupported(const ForwardProblem& problem);

/// What the backward's family choice looks at (the tiles themselves come from codegen/BackwardConfig.h);
/// tmaDescribable covers q, k, v, dO, dK and dV.
struct BackwardProblem : KernelProblem {
  bool deterministic = false;       ///< a fixed reduction order for dQ (the sm80 family's dQ kernel after either dK/dV)
  int gradSites = 0;                ///< captured-tensor gradient sites of score_mod_grad
  bool gradSitesMixQAndKv = false;  ///< some site is indexed by q and kv together (bias[h][q - kv])
  long long accumRows = 0;          ///< B * Hq * len_q_pad: the dQ accumulator's rows (TMA coordinates are int32)
};

/// Why the sm90 backward family cannot run `problem` ("" when it can).
std::string sm90BackwardUnsupported(const BackwardProblem& problem);

/// The backward family FLEXJIT_BWD_CONFIG asks for: 0 (the planner decides), 80 or 90.
int requestedBackwardFamily();

/// The backward's family: true for the sm90 one. FLEXJIT_BWD_CONFIG=family=80|90 decides when given
/// (family=90 on a problem it cannot run throws flexjit::Error naming why); otherwise the sm90 family
/// wherever it applies (sm90BackwardUnsupported).
bool planSm90Backward(const BackwardProblem& problem);

/// Why the decode family cannot run `problem` ("" when it can).
std::string decodeForwardUnsupported(const ForwardProblem& problem);

}  // namespace flexjit
