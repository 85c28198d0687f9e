// Implementation of CompiledKernel.h.
#include "runtime/CompiledKernel.h"

#include <cstdint>
#include <functional>
#include <string_view>

namespace flexjit {

const char* cacheSourceName(CacheSource source) {
  switch (source) {
    case CacheSource::Memory: return "memory";
    case CacheSource::Disk: return "disk";
    case CacheSource::Compiled: return "compiled";
  }
  return "unknown";
}

namespace {

/// Folds one field's hash into the running one: xor, then multiply by the 64-bit FNV prime to spread it.
void combine(size_t& seed, size_t value) {
  constexpr uint64_t kFnvPrime = 0x100000001b3ull;
  seed = static_cast<size_t>((static_cast<uint64_t>(seed) ^ value) * kFnvPrime);
}

}  // namespace

bool operator==(const KernelRequest& a, const KernelRequest& b) {
  return a.name == b.name && a.options.arch == b.options.arch && a.options.lineInfo == b.options.lineInfo &&
         a.options.extra == b.options.extra && a.source == b.source;
}

size_t KernelRequestHash::operator()(const KernelRequest& r) const {
  std::hash<std::string_view> hash;
  size_t seed = hash(r.source);
  combine(seed, hash(r.name));
  combine(seed, hash(r.options.arch));
  combine(seed, std::hash<bool>()(r.options.lineInfo));
  for (const std::string& option : r.options.extra) combine(seed, hash(option));
  return seed;
}

const ResourceUsage& CompiledKernel::usage(const std::string& function) const {
  return resourceUsageOf(resources, function.empty() ? name : function);
}

}  // namespace flexjit
