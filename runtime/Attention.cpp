// flex_attention: validation, then the CPU reference or the GPU kernel.
#include "runtime/Attention.h"

#include "runtime/AttentionGpu.h"
#include "runtime/Reference.h"

namespace flexjit {

namespace {

constexpr uint32_t kNegInfBits = 0xff800000u;  // -inf in float32

}  // namespace

void flex_attention_into(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                         const BlockMask* blockMask, const TensorView& out, const TensorView& lse,
                         const AttentionOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  checkOutputView(out, {s.B, s.Hq, s.Lq, s.Dv}, q.dtype, q.device, "out");
  checkOutputView(lse, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "lse");
  if (q.device.kind == DeviceKind::CPU) {
    referenceForward(q, k, v, scoreMod, blockMask, s, out, lse);
    return;
  }
  if (out.numel() == 0) return;  // no rows (B, Hq or Q_LEN is 0): nothing to launch
  if (s.Lkv == 0) {  // no keys: every row is fully masked (O = 0, LSE = -inf), and the kernels need a block
    fillWords(out, 0, options.stream, "flex_attention: out");
    fillWords(lse, kNegInfBits, options.stream, "flex_attention: lse");
    return;
  }
  gpuForward(q, k, v, scoreModForScale(scoreMod, s.scale), blockMask ? *blockMask : fullMaskFor(s.Lq, s.Lkv, q.device),
             s, out, lse, options);
}

AttentionResult flex_attention(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                               const BlockMask* blockMask, const AttentionOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  AttentionResult r;
  r.out = Tensor::empty(q.dtype, {s.B, s.Hq, s.Lq, s.Dv}, q.device);
  r.lse = Tensor::empty(DType::F32, {s.B, s.Hq, s.Lq}, q.device);
  flex_attention_into(q, k, v, scoreMod, blockMask, r.out.view(), r.lse.view(), options);
  return r;
}

}  // namespace flexjit
