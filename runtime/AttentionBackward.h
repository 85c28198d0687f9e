// The backward pass of flex_attention: dQ, dK, dV and the gradients of captured tensors that require
// one, derived from the score_mod by the compiler's autodiff (no user gradient code).
#pragma once

#include <memory>
#include <vector>

#include "runtime/Attention.h"

namespace flexjit {

struct BackwardOptions : AttentionOptions {
  /// dQ, dK and dV reduced in a fixed order (a separate dQ kernel instead of float atomics; about 27% more
  /// time, see docs/kernels-backward.md). Captured-tensor gradients stay float32 atomics in both modes, so
  /// their last bits can vary between runs.
  bool deterministic = false;
  /// With a prob_mod on the GPU: the forward's saved state (AttentionOptions::saveForBackward,
  /// ForwardOutputs::probDelta / rowVisible). Missing ones are recomputed (one more forward). Ignored on
  /// the CPU, whose reference recomputes everything.
  const TensorView* probDelta = nullptr;
  const TensorView* rowVisible = nullptr;
  /// The upstream gradient of the forward's LSE (float32 [B, Hq, Lq], any strides), for losses that read
  /// it; null: zero.
  const TensorView* dlse = nullptr;
};

/// Gradients of one backward call. Captured-tensor gradients are float32, shaped like the capture, for
/// the tensors that require a gradient, in gradientCaptures order.
struct AttentionGradients {
  Tensor dq, dk, dv;
  std::vector<std::pair<std::shared_ptr<TensorCapture>, Tensor>> captureGrads;
  /// The gradient of a captured tensor, or nullptr if it had none.
  const Tensor* gradFor(const CapturedTensor& t) const;
};

/// The captured tensors that receive gradients (float, requiresGrad): the score_mod's in capture order,
/// then the sink_mod's, then the prob_mod's (a tensor read by several hooks appears once).
std::vector<std::shared_ptr<TensorCapture>> gradientCaptures(const ScoreMod& score, const ExtraHooks& extra = {});

/// Backward from the forward's `out` and `lse` and the upstream gradient `dout` (shape and dtype of out).
AttentionGradients flex_attention_backward(const TensorView& q, const TensorView& k, const TensorView& v,
                                           const TensorView& out, const TensorView& lse, const TensorView& dout,
                                           const ScoreMod& scoreMod = ScoreMod::noop(),
                                           const BlockMask* blockMask = nullptr, const BackwardOptions& options = {});

/// The same into caller-provided tensors: dq/dk/dv shaped like q/k/v (their dtype), and one float32
/// buffer per gradientCaptures(score) entry (shaped like the capture, zero-filled by the caller:
/// contributions are added).
void flex_attention_backward_into(const TensorView& q, const TensorView& k, const TensorView& v,
                                  const TensorView& out, const TensorView& lse, const TensorView& dout,
                                  const ScoreMod& scoreMod, const BlockMask* blockMask, const TensorView& dq,
                                  const TensorView& dk, const TensorView& dv,
                                  const std::vector<TensorView>& captureGrads, const BackwardOptions& options = {});

}  // namespace flexjit
