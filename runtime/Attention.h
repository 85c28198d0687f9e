// flexjit::flex_attention: the C++ API of the fused block-sparse attention (forward; backward in
// AttentionBackward.h). Tensors are views: Q [B, Hq, Lq, D], K [B, Hkv, Lkv, D], V [B, Hkv, Lkv, Dv] with
// any strides in B, H and L and a contiguous last dim; fp16 or bf16 on a CUDA device (the generated
// kernels), or fp16 / bf16 / fp32 on the CPU (the float64 reference: correct, not fast).
#pragma once

#include <optional>

#include "dsl/Mods.h"
#include "runtime/BlockMask.h"
#include "runtime/Tensor.h"

namespace flexjit {

struct AttentionOptions {
  /// Multiplies q . k before score_mod; default 1 / sqrt(D) like torch. Any finite value, as in torch: 0
  /// weighs every kept position equally, a negative scale gives the highest weight to the lowest q . k.
  std::optional<float> scale;
  /// CUstream to run on (nullptr: the legacy default stream). Ignored on the CPU.
  void* stream = nullptr;
  /// Training: on a forward call, start compiling this variant's backward kernels on a background thread
  /// (alongside the forward's own compile), so the first backward does not wait for NVRTC.
  bool compileBackwardAhead = false;
  /// A sink_mod (dsl/Mods.h): per-row logits whose exp joins each row's softmax denominator (attention
  /// sinks). Its captured tensors may require a gradient. The backward must be given the same options.
  std::optional<SinkMod> sink;
  /// A prob_mod (dsl/Mods.h): rewrites each kept position's normalised probability before P @ V (Lazy
  /// Attention's offset and ReLU). The output is not renormalised. The backward must be given the same options.
  std::optional<ProbMod> prob;
  /// Also compute each row's max score (after score_mod and masking, natural units; -inf for a row with every
  /// key masked): AttentionResult::maxScores, torch's return_aux max_scores.
  bool returnMaxScores = false;
  /// With a prob_mod: also produce what its backward reads (AttentionResult::probDelta and rowVisible; one
  /// more pass over K and V on the GPU). Handing them to flex_attention_backward (BackwardOptions) saves it
  /// from recomputing them.
  bool saveForBackward = false;

  /// The hooks beyond score_mod and mask_mod that these options add to a variant.
  ExtraHooks extraHooks() const { return ExtraHooks{sink, prob}; }
};

/// O [B, Hq, Lq, Dv] in Q's dtype and LSE [B, Hq, Lq] float32 (natural log; -inf for fully masked rows,
/// whose O is 0; with a sink, LSE includes it and such rows get LSE = the sink), and with
/// AttentionOptions::returnMaxScores the max scores [B, Hq, Lq] float32.
struct AttentionResult {
  Tensor out;
  Tensor lse;
  Tensor maxScores;
  /// With a prob_mod and saveForBackward: ForwardOutputs::probDelta and rowVisible.
  Tensor probDelta;
  Tensor rowVisible;
};

/// Attention with a score_mod and a block mask (nullptr: every position kept). The block mask's
/// mask_mod is applied in partial blocks. Raises flexjit::Error for wrong shapes, dtypes, strides,
/// devices, or a block mask made for other lengths.
AttentionResult flex_attention(const TensorView& q, const TensorView& k, const TensorView& v,
                               const ScoreMod& scoreMod = ScoreMod::noop(), const BlockMask* blockMask = nullptr,
                               const AttentionOptions& options = {});

/// The same, writing into caller-provided `out` [B, Hq, Lq, Dv] (Q's dtype, contiguous last dim) and
/// `lse` [B, Hq, Lq] float32 (any strides). Used by the Python frontend to fill torch tensors.
void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const AttentionOptions& options = {});
/// The same, also writing each row's max score into `maxScores` [B, Hq, Lq] float32 (any strides).
void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const TensorView& maxScores, const AttentionOptions& options = {});
struct ForwardOutputs;
/// The same into every output a forward can write (ForwardOutputs: O, LSE and the optional ones).
void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const ForwardOutputs& outputs, const AttentionOptions& options = {});

/// Waits for the backward compiles that compileBackwardAhead started in the background. A program that
/// can exit while they run (its first forward failed) must call this before it returns from main:
/// static destructors at exit (NVRTC's own among them) would otherwise run under the compile and crash.
/// The flexjit tool calls it on every exit, the Python package at interpreter exit.
void waitForBackgroundCompiles();

/// Problem sizes after validation.
struct AttentionShape {
  int64_t B = 0, Hq = 0, Hkv = 0, Lq = 0, Lkv = 0, D = 0, Dv = 0;
  float scale = 1.0f;
};

/// Where a forward writes (validated views): O, LSE and, when asked for, the max scores.
struct ForwardOutputs {
  const TensorView& out;
  const TensorView& lse;
  const TensorView* maxScores = nullptr;
  /// With a prob_mod, what its backward reads (both optional; only with a prob_mod):
  /// [B, Hq, Lq, Dv] in O's dtype, sum_j p_ij g'(p_ij) v_j (g = prob_mod; the backward's
  /// D'_i = dO_i . this replaces rowsum(dO * O));
  const TensorView* probDelta = nullptr;
  /// [B, Hq, Lq] int32, contiguous: each row's num_visible (the keys the mask keeps). On the GPU it is
  /// counted only when the prob_mod reads num_visible (zeros otherwise: nothing needs it then).
  const TensorView* rowVisible = nullptr;
};

/// Validates Q/K/V (and the block mask) and returns the sizes; raises flexjit::Error naming the problem.
AttentionShape checkAttentionInputs(const TensorView& q, const TensorView& k, const TensorView& v,
                                    const BlockMask* blockMask, const AttentionOptions& options);
/// The score_mod the GPU kernels run for `scale`. They fold the scale into their exp2 factor when the
/// score_mod is the identity, which needs scale > 0 (the row max of q . k is then the max of the scores,
/// and -inf * scale stays -inf). For a zero or negative scale the call gets the score_mod plus a captured
/// zero, which the compiler cannot prove to be the identity: the kernels then scale q . k before the mod.
ScoreMod scoreModForScale(const ScoreMod& scoreMod, float scale);
/// Validates an output view against the expected shape and dtype.
void checkOutputView(const TensorView& t, const std::vector<int64_t>& shape, DType dtype, Device device,
                     const char* what);

}  // namespace flexjit
