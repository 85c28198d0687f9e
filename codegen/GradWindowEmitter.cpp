// The gradient windows of score_mod_grad: per accumulation site (fj.grad_accumulate), the interval of the
// offset it writes in its gradient buffer over one tile's box of positions. The dK/dV kernel sizes a
// shared-memory window with it (docs/kernels-backward.md); only the ops the indices depend on are emitted,
// in their interval forms (IntervalEmitter), so the function is as sound as the block classifier.
#include <fmt/format.h>

#include "codegen/FunctionEmitter.h"
#include "compiler/Dialect.h"

using namespace mlir;

namespace flexjit {

std::string GradWindowEmitter::emitWindows(func::FuncOp fn, const std::string& name) {
  slice_.clear();  // every op that the indices of some accumulation site depend on
  fn.walk([&](fjir::GradAccumulateOp site) { indexDependencies(site, slice_); });
  emitBody(fn, name);
  return fmt::format("FJ_HD void {}({}) {{\n{}}}\n", name, paramList(fn), body());
}

std::string GradWindowEmitter::argExpr(func::FuncOp fn, unsigned index) const {
  // An index computed from the score or the incoming gradient may be anything they allow.
  if (auto p = fn.getArgAttrOfType<StringAttr>(index, fjir::kParamAttr))
    if (p.getValue() == "score" || p.getValue() == "grad_out") return "fj::ivFloatFull()";
  return IntervalEmitter::argExpr(fn, index);
}

std::string GradWindowEmitter::paramList(func::FuncOp) const {
  return "fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap, "
         "const fj::GradArgs& grads, fj::IvOffset* offsets, int* slots";
}

bool GradWindowEmitter::emitOp(Operation* op) {
  if (auto acc = dyn_cast<fjir::GradAccumulateOp>(op)) {
    auto fn = op->getParentOfType<func::FuncOp>();
    const int site = gradSiteOf(op), slot = slotOf(fn, acc.getGrad(), fjir::kGradSlotAttr);
    std::string idx = fresh(), list;
    for (Value v : acc.getIndices()) list += (list.empty() ? "" : ", ") + use(v);
    statement(fmt::format("const fj::IvInt {}[] = {{{}}};", idx, list));
    statement(fmt::format("offsets[{0}] = fj::ivGradOffset(cap.tensor[{1}], grads.stride[{1}], {2}, {3});", site, slot,
                          acc.getIndices().size(), idx));
    statement(fmt::format("slots[{}] = {};", site, slot));
    return true;
  }
  if (!slice_.contains(op)) return true;  // the value or derivative of the score: not needed here
  return IntervalEmitter::emitOp(op);
}

}  // namespace flexjit
