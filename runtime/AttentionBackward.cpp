// flex_attention_backward: validation, then the CPU reference or the GPU kernels.
#include "runtime/AttentionBackward.h"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/AttentionGpu.h"
#include "runtime/Reference.h"

namespace flexjit {

const Tensor* AttentionGradients::gradFor(const CapturedTensor& t) const {
  for (const auto& [capture, grad] : captureGrads)
    if (capture == t.impl()) return &grad;
  return nullptr;
}

std::vector<std::shared_ptr<TensorCapture>> gradientCaptures(const ScoreMod& score, const ExtraHooks& extra) {
  std::vector<std::shared_ptr<TensorCapture>> out;
  auto add = [&](const Mod& mod) {
    for (const auto& t : mod.tensors())
      if (t->requiresGrad && isFloat(t->dtype) && std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  };
  add(score);
  if (extra.sink) add(*extra.sink);
  if (extra.prob) add(*extra.prob);
  return out;
}

void flex_attention_backward_into(const TensorView& q, const TensorView& k, const TensorView& v,
                                  const TensorView& out, const TensorView& lse, const TensorView& dout,
                                  const ScoreMod& scoreMod, const BlockMask* blockMask, const TensorView& dq,
                                  const TensorView& dk, const TensorView& dv,
                                  const std::vector<TensorView>& captureGrads, const BackwardOptions& options) {
  AttentionShape s = checkAttentionInputs(q, k, v, blockMask, options);
  checkOutputView(out, {s.B, s.Hq, s.Lq, s.Dv}, q.dtype, q.device, "out");
  checkOutputView(dout, {s.B, s.Hq, s.Lq, s.Dv}, q.dtype, q.device, "grad_out");
  checkOutputView(lse, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "lse");
  if (options.dlse) checkOutputView(*options.dlse, {s.B, s.Hq, s.Lq}, DType::F32, q.device, "grad_lse");
  checkOutputView(dq, q.shape, q.dtype, q.device, "dq");
  checkOutputView(dk, k.shape, k.dtype, k.device, "dk");
  checkOutputView(dv, v.shape, v.dtype, v.device, "dv");
  std::vector<std::shared_ptr<TensorCapture>> wanted = gradientCaptures(scoreMod, options.extraHooks());
  if (captureGrads.size() != wanted.size())
    throw Error(fmt::format("flex_attention_backward: {} captured tensors require a gradient but {} gradient buffers "
                            "were given", wanted.size(), captureGrads.size()));
  for (size_t w = 0; w < wanted.size(); ++w) {
    const TensorView& g = captureGrads[w];
    if (!wanted[w]->view) throw Error(fmt::format("flex_attention_backward: captured tensor '{}' is not bound", wanted[w]->name));
    if (g.dtype != DType::F32 || g.shape != wanted[w]->view->shape || !g.isContiguous() || g.device != q.device)
      throw Error(fmt::format("flex_attention_backward: the gradient buffer of '{}' must be a contiguous float32 "
                              "tensor shaped like it on {}, got {}", wanted[w]->name, q.device.str(), g.describe()));
  }
  if (q.device.kind == DeviceKind::CPU) {
    referenceBackward(q, k, v, dout, scoreMod, blockMask, s, dq, dk, dv, captureGrads, options.extraHooks(),
                      options.dlse);
    return;
  }
  if (out.numel() == 0 || s.Lkv == 0) {
    // No query or no key attends: the gradients are 0 (captured ones were zero-filled by the caller), and
    // the kernels need at least one q and one kv block.
    fillWords(dq, 0, options.stream, "flex_attention_backward: dq");
    fillWords(dk, 0, options.stream, "flex_attention_backward: dk");
    fillWords(dv, 0, options.stream, "flex_attention_backward: dv");
    return;
  }
  gpuBackward(q, k, v, out, lse, dout, scoreModForScale(scoreMod, s.scale),
              blockMask ? *blockMask : fullMaskFor(s.Lq, s.Lkv, q.device), s, dq, dk, dv, captureGrads, options);
}

AttentionGradients flex_attention_backward(const TensorView& q, const TensorView& k, const TensorView& v,
                                           const TensorView& out, const TensorView& lse, const TensorView& dout,
                                           const ScoreMod& scoreMod, const BlockMask* blockMask,
                                           const BackwardOptions& options) {
  AttentionGradients g;
  g.dq = Tensor::empty(q.dtype, q.shape, q.device);
  g.dk = Tensor::empty(k.dtype, k.shape, k.device);
  g.dv = Tensor::empty(v.dtype, v.shape, v.device);
  std::vector<TensorView> views;
  for (const auto& t : gradientCaptures(scoreMod, options.extraHooks())) {
    if (!t->view) throw Error(fmt::format("flex_attention_backward: captured tensor '{}' is not bound", t->name));
    g.captureGrads.emplace_back(t, Tensor::zeros(DType::F32, t->view->shape, q.device));
    views.push_back(g.captureGrads.back().second.view());
  }
  flex_attention_backward_into(q, k, v, out, lse, dout, scoreMod, blockMask, g.dq.view(), g.dk.view(), g.dv.view(),
                               views, options);
  return g;
}

}  // namespace flexjit
