// Source assembly and cached compilation of the attention backward programs (see BackwardBuild.h).
#include "runtime/BackwardBuild.h"

#include <fmt/format.h>

#include <map>
#include <mutex>

#include "dsl/Error.h"
#include "runtime/KernelCache.h"

namespace flexjit {

std::string backwardSource(const Variant* variant, const BwdKernelConfig& config, BwdKernelKind kind) {
  std::string src;
  if (kind == BwdKernelKind::Aux) {
    src = fmt::format("#include \"{}\"\n", bwdKernelTemplate(config, kind));
  } else {
    if (!variant) throw Error("flex_attention_backward: internal error: the backward kernels need a variant");
    src = "#include \"dsl/Interval.h\"\n#include \"codegen/templates/fastmath.cuh\"\n" + variant->prelude;
    src += fmt::format("#include \"{}\"\n", bwdKernelTemplate(config, kind));
  }
  src += bwdInstantiationSource(config, kind);
  return expandIncludes(src);
}

const CompiledKernel& backwardKernel(const Variant* variant, const BwdKernelConfig& config, BwdKernelKind kind,
                                     const std::string& tag) {
  // Indexed by the variant object (cachedVariant keeps one per structure), the kind and every config
  // field, so a repeated call skips source assembly and hashing entirely.
  static std::mutex mutex;
  static std::map<std::string, const CompiledKernel*> index;
  const void* owner = kind == BwdKernelKind::Aux ? nullptr : static_cast<const void*>(variant);
  const BwdKernelConfig& c = config;
  std::string key = fmt::format(
      "{}/{}/{}/{}/{}/{}/{}.{}/{}x{}x{}/{}.{}.{}/{}/{}/{}.{}/{}x{}x{}/{}x{}/{}", owner, bwdKindName(kind),
      familyName(c.family),
      static_cast<int>(c.dtype), c.headDim, c.headDimV, c.archMajor, c.archMinor, c.blockM, c.blockN, c.numWarps, c.sdpWarpsM, c.dkvWarpsN,
      c.dqWarpsM, c.stages, c.gemmUnroll, c.atomicDq, c.dqFirst, c.dqBlockM, c.dqBlockN, c.dqNumWarps, c.gradWindows,
      c.gradWindowFloats, c.sinkGrads);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = index.find(key);
    if (it != index.end()) return *it->second;
  }
  std::string arch = config.archMajor >= 9 ? fmt::format("sm_{}{}a", config.archMajor, config.archMinor)
                                           : fmt::format("sm_{}{}", config.archMajor, config.archMinor);
  std::string name = fmt::format("bwd_{}_{}", bwdKindName(kind), kind == BwdKernelKind::Aux ? "shared" : tag);
  const CompiledKernel& k = KernelCache::global().getOrCompile(
      KernelRequest{backwardSource(variant, config, kind), name, CompileOptions{arch, {}, false}});
  std::lock_guard<std::mutex> lock(mutex);
  index.emplace(key, &k);
  return k;
}

}  // namespace flexjit
