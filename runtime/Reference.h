// The CPU reference attention: float64 accumulation, the interpreter's semantics for the mods. It is the
// oracle for every GPU test and the CPU path of the API (correct, not fast; threads over rows).
#pragma once

#include "runtime/Attention.h"

namespace flexjit {

/// Forward on CPU views (any float dtype): writes out [B, Hq, Lq, Dv] and lse [B, Hq, Lq] (float32).
/// With `roundProbs` set to F16/BF16, the unnormalised probabilities are rounded to that type before
/// they multiply V, as the GPU kernels do: the "low-precision reference" of FlashAttention-3's test rule
/// (a kernel passes when its error is within twice this reference's error plus a small atol).
void referenceForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                      const BlockMask* blockMask, const AttentionShape& shape, const TensorView& out,
                      const TensorView& lse, std::optional<DType> roundProbs = std::nullopt);
/// The same with the extra hooks (a sink_mod joins every row's denominator) and, where outputs.maxScores
/// is set, each row's max score.
void referenceForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                      const BlockMask* blockMask, const AttentionShape& shape, const ForwardOutputs& outputs,
                      const ExtraHooks& extra, std::optional<DType> roundProbs = std::nullopt);

/// Backward on CPU views, in float64: recomputes the attention from q, k, v (ignoring the forward's
/// rounding) and writes dq/dk/dv (their views' dtypes) and adds captured-tensor gradients into the float32
/// `captureGrads` (one per gradientCaptures(score, extra) entry: the score_mod's, then the sink_mod's, then
/// the prob_mod's). `dlse` (optional, float32 [B, Hq, Lq]) is the upstream gradient of the forward's LSE.
void referenceBackward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& dout,
                       const ScoreMod& scoreMod, const BlockMask* blockMask, const AttentionShape& shape,
                       const TensorView& dq, const TensorView& dk, const TensorView& dv,
                       const std::vector<TensorView>& captureGrads, const ExtraHooks& extra = {},
                       const TensorView* dlse = nullptr);

}  // namespace flexjit
