// flex_attention: validation, then the CPU reference or the GPU kernel.
#include "runtime/Attention.h"

#include <fmt/format.h>

#include "dsl/Error.h"
#include "runtime/AttentionGpu.h"
#include "runtime/Reference.h"

namespace flexjit {

namespace {

constexpr uint32_t kNegInfBits = 0xff800000u;  // -inf in float32

/// The optional outputs of a prob_mod variant, checked: only with a prob_mod, probDelta shaped like O,
/// rowVisible int32 [B, Hq, Lq] and contiguous (the kernels index it as such).
void checkProbOutputs(const ForwardOutputs& outputs, const AttentionShape& s, const TensorView& q,
                      const AttentionOptions& options, const char* api) {
  if (!options.prob && (outputs.probDelta || outputs.rowVisible))
    throw Error(fmt::format("{}: probDelta / rowVisible are the saved state of a prob_mod, but these options have "
                            "no prob_mod; leave them out", api));
  if (outputs.probDelta) checkOutputView(*outputs.probDelta, {s.B, s.Hq, s.Lq, s.Dv}, q.dtype, q.device, "prob_delta");
  if (outputs.rowVisible) {
    checkOutputView(*outputs.rowVisible, {s.B, s.Hq, s.Lq}, DType::I32, q.device, "row_visible");
    if (!outputs.rowVisible->isContiguous())
      throw Error(fmt::format("{}: row_visible must be contiguous ({}); allocate it with contiguous strides", api,
                              outputs.rowVisible->describe()));
  }
}

void forwardInto(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                 const BlockMask* blockMask, const ForwardOutputs& outputs, const AttentionOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  const TensorView &out = outputs.out, &lse = outputs.lse;
  checkOutputView(out, {s.B, s.Hq, s.Lq, s.Dv}, q.dtype, q.device, "out");
  checkOutputView(lse, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "lse");
  if (outputs.maxScores) checkOutputView(*outputs.maxScores, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "max_scores");
  checkProbOutputs(outputs, s, q, options, "flex_attention");
  if (q.device.kind == DeviceKind::CPU) {
    referenceForward(q, k, v, scoreMod, blockMask, s, outputs, options.extraHooks());
    return;
  }
  if (out.numel() == 0) return;  // no rows (B, Hq or Q_LEN is 0): nothing to launch
  if (s.Lkv == 0) {  // no keys: every row is fully masked (O = 0, LSE = -inf), and the kernels need a block
    if (options.sink)
      throw Error("flex_attention: KV_LEN = 0 with a sink_mod is not supported on the GPU (each row's LSE would be "
                  "its sink); give at least one key, or run it on the CPU");
    fillWords(out, 0, options.stream, "flex_attention: out");
    fillWords(lse, kNegInfBits, options.stream, "flex_attention: lse");
    if (outputs.maxScores) fillWords(*outputs.maxScores, kNegInfBits, options.stream, "flex_attention: max_scores");
    if (outputs.probDelta) fillWords(*outputs.probDelta, 0, options.stream, "flex_attention: prob_delta");
    if (outputs.rowVisible) fillWords(*outputs.rowVisible, 0, options.stream, "flex_attention: row_visible");
    return;
  }
  gpuForward(q, k, v, scoreModForScale(scoreMod, s.scale), blockMask ? *blockMask : fullMaskFor(s.Lq, s.Lkv, q.device),
             s, outputs, options);
}

}  // namespace

void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const AttentionOptions& options) {
  forwardInto(q, k, v, scoreMod, blockMask, ForwardOutputs{out, lse}, options);
}

void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const TensorView& maxScores, const AttentionOptions& options) {
  forwardInto(q, k, v, scoreMod, blockMask, ForwardOutputs{out, lse, &maxScores}, options);
}

void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const ForwardOutputs& outputs, const AttentionOptions& options) {
  forwardInto(q, k, v, scoreMod, blockMask, outputs, options);
}

AttentionResult flex_attention(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                               const BlockMask* blockMask, const AttentionOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  AttentionResult r;
  r.out = Tensor::empty(q.dtype, {s.B, s.Hq, s.Lq, s.Dv}, q.device);
  r.lse = Tensor::empty(DType::F32, {s.B, s.Hq, s.Lq}, q.device);
  if (options.returnMaxScores) r.maxScores = Tensor::empty(DType::F32, {s.B, s.Hq, s.Lq}, q.device);
  const bool saveProb = options.prob && options.saveForBackward;
  if (saveProb) {
    r.probDelta = Tensor::empty(q.dtype, {s.B, s.Hq, s.Lq, s.Dv}, q.device);
    r.rowVisible = Tensor::empty(DType::I32, {s.B, s.Hq, s.Lq}, q.device);
  }
  const TensorView out = r.out.view(), lse = r.lse.view(), maxScores = r.maxScores.view(),
                   probDelta = r.probDelta.view(), rowVisible = r.rowVisible.view();
  ForwardOutputs outputs{out, lse, options.returnMaxScores ? &maxScores : nullptr, saveProb ? &probDelta : nullptr,
                         saveProb ? &rowVisible : nullptr};
  forwardInto(q, k, v, scoreMod, blockMask, outputs, options);
  return r;
}

}  // namespace flexjit
