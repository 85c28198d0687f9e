// GPU paths of flex_attention (internal).
#pragma once

#include "runtime/AttentionBackward.h"

namespace flexjit {

/// A cached all-full block mask for inputs without one.
const BlockMask& fullMaskFor(int64_t Lq, int64_t Lkv, Device device);

/// Launches the generated forward kernel (asynchronously, on options.stream).
void gpuForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                const BlockMask& blockMask, const AttentionShape& shape, const TensorView& out, const TensorView& lse,
                const AttentionOptions& options);

/// Launches the generated backward kernels (preprocess, dK/dV, dQ) asynchronously on options.stream.
void gpuBackward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                 const TensorView& lse, const TensorView& dout, const ScoreMod& scoreMod, const BlockMask& blockMask,
                 const AttentionShape& shape, const TensorView& dq, const TensorView& dk, const TensorView& dv,
                 const std::vector<TensorView>& captureGrads, const BackwardOptions& options);

}  // namespace flexjit
