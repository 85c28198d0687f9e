#include "runtime/Captures.h"

#include <fmt/format.h>

#include <map>
#include <mutex>

#include "dsl/Error.h"
#include "runtime/Dump.h"
#include "runtime/Tensor.h"

namespace flexjit {

namespace {

/// checkInt64Values for a device tensor: its extent (the lowest to the highest element offset, strides of
/// either sign) is copied to the host first, synchronously.
void checkDeviceInt64Values(const std::string& what, const TensorCapture& t) {
  const TensorView& v = *t.view;
  if (v.numel() == 0) return;
  int64_t first = 0, last = 0;
  for (int d = 0; d < v.rank(); ++d) (v.strides[d] < 0 ? first : last) += (v.shape[d] - 1) * v.strides[d];
  std::vector<int64_t> host(static_cast<size_t>(last - first + 1));
  copyBytes(host.data(), Device::cpu(), static_cast<const int64_t*>(v.data) + first, v.device,
            host.size() * sizeof(int64_t));
  checkInt64Values(what, t, host.data() - first);
}

}  // namespace

fj::CaptureArgs packCaptures(const CaptureLayout& layout, Device device, const std::string& what) {
  fj::CaptureArgs cap{};
  for (size_t k = 0; k < layout.tensors.size(); ++k) {
    const TensorCapture& t = *layout.tensors[k];
    if (!t.view)
      throw Error(fmt::format("{}: captured tensor '{}' is not bound to data; call bind() (C++) before the call",
                              what, t.name));
    const TensorView& v = *t.view;
    if (v.device != device)
      throw Error(fmt::format("{}: captured tensor '{}' is {}, but the attention runs on {}; move it to {}", what,
                              t.name, v.describe(), device.str(), device.str()));
    if (v.dtype == DType::I64) checkDeviceInt64Values(what, t);
    cap.tensor[k].data = v.data;
    for (int d = 0; d < t.rank; ++d) {
      cap.tensor[k].stride[d] = v.strides[d];
      cap.tensor[k].size[d] = static_cast<int>(v.shape[d]);
    }
  }
  for (size_t k = 0; k < layout.scalars.size(); ++k) {
    cap.f[k] = static_cast<float>(layout.scalars[k]->value);
    cap.i[k] = static_cast<int>(layout.scalars[k]->value);
  }
  return cap;
}

std::shared_ptr<const Variant> cachedVariant(const ScoreMod& score, const MaskMod& mask, bool withGradient,
                                             const ExtraHooks& extra) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const Variant>> cache;
  std::string gradFlags;
  for (const auto& t : score.tensors()) gradFlags += t->requiresGrad ? '1' : '0';
  std::string key = fmt::format("{}/{}/{}/{}", score.key(), mask.key(), gradFlags, withGradient);
  if (extra.sink) {
    key += "/sink " + extra.sink->key() + "/";
    for (const auto& t : extra.sink->tensors()) key += t->requiresGrad ? '1' : '0';
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Generate outside the lock: two threads may both generate a new variant; both results are identical.
  auto v = std::make_shared<const Variant>(generateVariant(score, mask, VariantOptions{withGradient}, extra));
  if (dumpDir()) {
    std::string tag = variantTag(score, mask);
    dumpStage(tag, "imported.mlir", v->importedIR);
    dumpStage(tag, "differentiated.mlir", v->differentiatedIR);
    dumpStage(tag, "simplified.mlir", v->simplifiedIR);
    dumpStage(tag, "hooks.cu", v->prelude);
  }
  std::lock_guard<std::mutex> lock(mutex);
  return cache.emplace(key, v).first->second;
}

}  // namespace flexjit
