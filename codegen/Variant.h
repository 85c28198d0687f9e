// A variant = one score_mod + one mask_mod (+ optionally a sink_mod), lowered through MLIR and emitted as the
// CUDA "prelude"
// every kernel template includes: the hooks fjv::score_mod, fjv::mask_mod, fjv::score_mod_grad (and, when
// it writes captured-tensor gradients, their windows fjv::score_mod_grad_windows) and the interval forms
// fjv::mask_mod_interval, fjv::score_mod_interval, plus compile-time facts.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compiler/ModFacts.h"
#include "dsl/Mods.h"

namespace flexjit {

/// Where each capture goes in fj::CaptureArgs (score_mod's first, then mask_mod's, then the sink_mod's).
struct CaptureLayout {
  std::vector<std::shared_ptr<TensorCapture>> tensors;  ///< index = slot
  std::vector<std::shared_ptr<ScalarCapture>> scalars;  ///< index = slot (cap.f or cap.i by type)
};

/// A readable, file-name-safe tag for dumps and kernel names: "<score name>__<mask name>".
std::string variantTag(const ScoreMod& score, const MaskMod& mask);

/// The capture layout of a variant: score_mod's captures first, then mask_mod's, then the extra hooks'.
CaptureLayout captureLayout(const ScoreMod& score, const MaskMod& mask, const ExtraHooks& extra = {});

struct VariantOptions {
  bool withGradient = true;
  /// false: emit the IR as imported, unsimplified (LowerOptions::simplify), for differential tests.
  bool simplify = true;
};

struct Variant {
  std::string prelude;  ///< CUDA source of namespace fjv (deterministic for equal mods)
  ModFacts facts;
  CaptureLayout captures;
  std::string importedIR, differentiatedIR, simplifiedIR;  ///< the MLIR stages, for dumps and `flexjit show`
  std::string scoreName, maskName;
  /// Accumulation sites (captured-tensor gradient writes) of score_mod_grad; each has a gradient window
  /// (fjv::score_mod_grad_windows) that the dK/dV kernel may give shared memory (BwdKernelConfig).
  int gradSites = 0;
  /// Some site's index depends on both q_idx and kv_idx (FunctionEmitter::gradSiteMixesQAndKv): the backward
  /// gives the sites shared-memory windows only then (measured, docs/kernels-backward.md).
  bool gradSitesMixQAndKv = false;
  /// score_mod's tensor loads that every element performs (SplitEmitter::elementLoads): the sm90 forward's
  /// 128-wide kv tiles spill with them (runtime/Planner.cpp).
  int scoreElementLoads = 0;
};

/// Lowers and emits a variant. Raises flexjit::Error (naming the mod) on any failure.
Variant generateVariant(const ScoreMod& score, const MaskMod& mask, const VariantOptions& options = {},
                        const ExtraHooks& extra = {});

/// The assembled source of the block-mask kernels (codegen/templates/block_mask.cuh) for a variant.
std::string blockMaskSource(const Variant& variant);

/// The assembled source of the hook-test kernel (codegen/templates/hook_test.cuh) for a variant made
/// with its gradient.
std::string hookTestSource(const Variant& variant);

/// Inlines every `#include "path"` of an embedded file (recursively, once each, dropping `#pragma once`),
/// so a kernel source is one self-contained text: its hash covers everything NVRTC compiles, and a dumped
/// .cu compiles on its own.
std::string expandIncludes(const std::string& text);

}  // namespace flexjit
