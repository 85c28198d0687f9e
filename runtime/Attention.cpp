// flex_attention: validation, then the CPU reference or the GPU kernel.
#include "runtime/Attention.h"

#include "dsl/Error.h"
#include "runtime/AttentionGpu.h"
#include "runtime/Reference.h"

namespace flexjit {

namespace {

constexpr uint32_t kNegInfBits = 0xff800000u;  // -inf in float32

void forwardInto(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                 const BlockMask* blockMask, const TensorView& out, const TensorView& lse, const TensorView* maxScores,
                 const AttentionOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  checkOutputView(out, {s.B, s.Hq, s.Lq, s.Dv}, q.dtype, q.device, "out");
  checkOutputView(lse, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "lse");
  if (maxScores) checkOutputView(*maxScores, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "max_scores");
  const ForwardOutputs outputs{out, lse, maxScores};
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
    if (maxScores) fillWords(*maxScores, kNegInfBits, options.stream, "flex_attention: max_scores");
    return;
  }
  gpuForward(q, k, v, scoreModForScale(scoreMod, s.scale), blockMask ? *blockMask : fullMaskFor(s.Lq, s.Lkv, q.device),
             s, outputs, options);
}

}  // namespace

void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const AttentionOptions& options) {
  forwardInto(q, k, v, scoreMod, blockMask, out, lse, nullptr, options);
}

void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const TensorView& maxScores, const AttentionOptions& options) {
  forwardInto(q, k, v, scoreMod, blockMask, out, lse, &maxScores, options);
}

AttentionResult flex_attention(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                               const BlockMask* blockMask, const AttentionOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  AttentionResult r;
  r.out = Tensor::empty(q.dtype, {s.B, s.Hq, s.Lq, s.Dv}, q.device);
  r.lse = Tensor::empty(DType::F32, {s.B, s.Hq, s.Lq}, q.device);
  if (options.returnMaxScores) {
    r.maxScores = Tensor::empty(DType::F32, {s.B, s.Hq, s.Lq}, q.device);
    flex_attention_into(q, k, v, scoreMod, blockMask, r.out.view(), r.lse.view(), r.maxScores.view(), options);
  } else {
    flex_attention_into(q, k, v, scoreMod, blockMask, r.out.view(), r.lse.view(), options);
  }
  return r;
}

}  // namespace flexjit
