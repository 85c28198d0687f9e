// The kernel planner: which kernel family and configuration runs a problem. One place decides, from the
// GPU (compute capability, driver features), the shapes (dtype, head dims), the BlockMask's block sizes,
// the tensors' layout and what the compiler proved about the mods; the launchers, `flexjit show`,
// `flexjit compile` and the demo all ask it, so what they build is what runs.
//
// Today's families: the sm90 forward (wgmma + TMA, Hopper) where it applies, otherwise the sm80 forward
// (mma.sync, any GPU from sm_80). FLEXJIT_FWD_CONFIG overrides the choice (family=80 or family=90) and
// the family's tunables (sm80: subN, qInRegs, decideSubTiles; sm90: stages).
#pragma once

#include <string>

#include "codegen/AttentionConfig.h"
#include "compiler/ModFacts.h"
#include "dsl/Types.h"

namespace flexjit {

/// What the forward planner looks at.
struct ForwardProblem {
  DType dtype = DType::BF16;
  int headDim = 128;
  int headDimV = 128;
  int archMajor = 9;
  int archMinor = 0;
  int maskBlockQ = 128;   ///< the BlockMask's block sizes (the kernel's tiles must divide them)
  int maskBlockKV = 128;
  /// q, k, v and out can be described by TMA tensor maps (16-byte-aligned bases, nonzero strides that are
  /// multiples of 16 bytes: runtime/TmaMaps.h's tmaDescribable). False for broadcast (stride-0) tensors.
  bool tmaDescribable = true;
  bool driverHasTensorMaps = true;  ///< the driver exports cuTensorMapEncodeTiled (CUDA 12.0 and later)
  ModFacts facts;                   ///< of the variant (mask cost decides the sm80 S width)
};

/// The chosen configuration and, in words, why that family (for `flexjit show` and error messages).
struct ForwardPlan {
  FwdKernelConfig config;
  std::string reason;
};

/// Plans the forward for `problem`, applies FLEXJIT_FWD_CONFIG and validates the result: throws
/// flexjit::Error with what to change when no configuration can run it (or an override asks for one that
/// cannot).
ForwardPlan planForward(const ForwardProblem& problem);

/// The plan for contiguous tensors and the default 128 x 128 BlockMask blocks on a GPU of compute capability
/// major.minor (what `flexjit show`, `compile` and the demo build, with or without a GPU).
ForwardPlan planContiguousForward(DType dtype, int headDim, int headDimV, int archMajor, int archMinor,
                                  const ModFacts& facts);

/// Why the sm90 family cannot run `problem` ("" when it can).
std::string sm90ForwardUnsupported(const ForwardProblem& problem);

}  // namespace flexjit
