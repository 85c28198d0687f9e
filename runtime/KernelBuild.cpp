#include "runtime/KernelBuild.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "dsl/Error.h"
#include "runtime/KernelCache.h"

namespace flexjit {

const DeviceInfo& cachedDeviceInfo(int ordinal) {
  static std::mutex mutex;
  static std::map<int, DeviceInfo> infos;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = infos.find(ordinal);
  if (it == infos.end()) it = infos.emplace(ordinal, deviceInfo(ordinal)).first;
  return it->second;
}

std::string forwardSource(const Variant& variant, const FwdKernelConfig& config) {
  std::string src = "#include \"dsl/Interval.h\"\n#include \"codegen/templates/fastmath.cuh\"\n" + variant.prelude;
  src += fmt::format("#include \"{}\"\n", fwdKernelTemplate(config.family));
  src += fwdInstantiationSource(config);
  return expandIncludes(src);
}

std::string archOf(const FwdKernelConfig& config) {
  return config.archMajor >= 9 ? fmt::format("sm_{}{}a", config.archMajor, config.archMinor)
                               : fmt::format("sm_{}{}", config.archMajor, config.archMinor);
}

namespace {

/// Configurations to try, in order, when the previous one spills more than it may (spillBudget): sm80, Q in
/// shared memory, then S computed in narrower slices (each halving saves subN / 4 registers per thread);
/// sm90, kv tiles of 64 instead of 128 (32 fewer S registers per consumer thread, and they still divide the
/// BlockMask's blocks).
std::vector<FwdKernelConfig> spillFallbacks(const FwdKernelConfig& base) {
  std::vector<FwdKernelConfig> out{base};
  if (base.family == KernelFamily::Sm90) {
    FwdKernelConfig narrow = base;
    narrow.blockN = narrow.subN = 64;
    if (base.blockN > narrow.blockN && checkFwdConfig(narrow).ok()) out.push_back(narrow);
    return out;
  }
  FwdKernelConfig c = base;
  if (c.qInRegs) {
    c.qInRegs = false;
    out.push_back(c);
  }
  constexpr int kMinSubN = 16;
  while (c.subN / 2 >= kMinSubN) {
    c.subN /= 2;
    if (checkFwdConfig(c).ok()) out.push_back(c);
  }
  return out;
}

/// Spill bytes a configuration may have and still be taken: the sm80 defaults spill a few registers' worth
/// and are measured faster than their narrower fallbacks (kToleratedSpillBytes); the sm90 family's
/// consumers have the registers to spill nothing.
int spillBudget(const FwdKernelConfig& c) { return c.family == KernelFamily::Sm90 ? 0 : kToleratedSpillBytes; }

ForwardBuild compileFirstWithinSpillBudget(const Variant& variant, const FwdKernelConfig& base, const std::string& tag) {
  ForwardBuild best;
  for (const FwdKernelConfig& c : spillFallbacks(base)) {
    const CompiledKernel& k = KernelCache::global().getOrCompile(
        KernelRequest{forwardSource(variant, c), fmt::format("fwd_{}_{}", familyName(c.family), tag),
                      CompileOptions{archOf(c), {}, false}});
    // The worst entry point counts (a prob_mod variant's program has three passes). A kernel without a
    // ptxas report (e.g. a PTX-only build JIT-compiled by the driver) counts as not spilling: the search
    // can only judge what it can see.
    int spills = 0;
    for (const auto& [name, usage] : k.resources) spills = std::max(spills, static_cast<int>(usage.spillStoreBytes));
    if (!best.kernel || spills < best.spillBytes) best = ForwardBuild{&k, c, spills};
    if (spills <= spillBudget(c)) break;
  }
  return best;
}

}  // namespace

ForwardBuild forwardKernel(const Variant& variant, const FwdKernelConfig& config, const std::string& tag) {
  // Index by the variant object (cachedVariant keeps one per structure) and every field of the config, so a
  // repeated call skips source assembly, hashing and the spill search entirely.
  static std::mutex mutex;
  static std::map<std::string, ForwardBuild> index;
  const std::string key = fmt::format("{}/{}/{}", static_cast<const void*>(&variant), config.describe(), tag);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = index.find(key);
    if (it != index.end()) return it->second;
  }
  ForwardBuild build = compileFirstWithinSpillBudget(variant, config, tag);
  std::lock_guard<std::mutex> lock(mutex);
  return index.emplace(key, build).first->second;
}

}  // namespace flexjit
