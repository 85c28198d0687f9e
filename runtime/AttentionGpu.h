// GPU paths of flex_attention (internal).
#pragma once

#include "codegen/BackwardConfig.h"
#include "codegen/Variant.h"
#include "runtime/AttentionBackward.h"
#include "runtime/Device.h"
#include "runtime/Planner.h"

namespace flexjit {

/// Whether TMA can describe a [B, H, L, D] view (runtime/TmaMaps.h's rule over its pointer and strides).
bool tmaDescribable(const TensorView& t);

/// The planners' common view of a call (runtime/Planner.h): dtype, head dims, GPU, BlockMask blocks (TMA
/// taken as usable: the caller sets tmaDescribable / driverHasTensorMaps from its tensors and driver).
KernelProblem kernelProblem(DType dtype, const AttentionShape& shape, const DeviceInfo& info, const BlockMask& blockMask);

/// A cached all-full block mask for inputs without one.
const BlockMask& fullMaskFor(int64_t Lq, int64_t Lkv, Device device);

/// Launches the generated forward kernel (asynchronously, on options.stream).
void gpuForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                const BlockMask& blockMask, const AttentionShape& shape, const ForwardOutputs& outputs,
                const AttentionOptions& options);

/// The backward kernel configuration gpuBackward uses for these inputs and variant (made with its
/// gradient: its accumulation sites get gradient windows): the family from runtime/Planner.h's rules
/// (tmaDescribable: the tensors' layouts allow TMA; driverHasTensorMaps: the driver can encode the maps; both
/// true where no tensors or driver are at hand: `flexjit compile`, compiles ahead), overrides from
/// FLEXJIT_BWD_CONFIG applied, checked.
BwdKernelConfig backwardConfigFor(DType dtype, const AttentionShape& shape, const DeviceInfo& info,
                                  const BlockMask& blockMask, bool deterministic, const Variant& variant,
                                  bool tmaDescribable = true, bool driverHasTensorMaps = true);

/// Compiles the backward kernels gpuBackward would use for these inputs on a background thread; the
/// kernel cache lets a later backward wait for that compile instead of starting another. At most one
/// compile per (variant, config) is started; threads are joined at exit. Never throws: a backward that
/// cannot be built raises its error when it is called.
void compileBackwardAhead(const ScoreMod& scoreMod, const MaskMod& mask, DType dtype, const AttentionShape& shape,
                          const DeviceInfo& info, const BlockMask& blockMask, const ExtraHooks& extra = {});

/// Launches the generated backward kernels (preprocess, dK/dV, dQ) asynchronously on options.stream.
void gpuBackward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                 const TensorView& lse, const TensorView& dout, const ScoreMod& scoreMod, const BlockMask& blockMask,
                 const AttentionShape& shape, const TensorView& dq, const TensorView& dk, const TensorView& dv,
                 const std::vector<TensorView>& captureGrads, const BackwardOptions& options);

}  // namespace flexjit
