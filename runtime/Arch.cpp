// Implementation of Arch.h: device compute capability -> NVRTC target name, and target-name parsing.
#include "runtime/Arch.h"

#include <cctype>

#include <fmt/format.h>

#include "dsl/Error.h"

namespace flexjit {

namespace {

/// Compute capabilities whose datacenter parts have arch-specific ("a") instructions flexjit may use:
/// 9.0 (Hopper: wgmma, setmaxnreg) and 10.0 (Blackwell: tcgen05).
bool hasArchSpecificTarget(int major, int minor) { return minor == 0 && (major == 9 || major == 10); }

constexpr const char* kRealPrefix = "sm_";
constexpr const char* kVirtualPrefix = "compute_";

/// Consumes `prefix` at the start of `s`; returns whether it was there.
bool consumePrefix(std::string& s, const std::string& prefix) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  s.erase(0, prefix.size());
  return true;
}

}  // namespace

std::string archForDevice(int major, int minor) {
  if (major < kMinComputeMajor)
    throw Error(fmt::format(
        "flexjit needs compute capability {}.0 or newer (Ampere); this GPU is {}.{}", kMinComputeMajor,
        major, minor));
  std::string arch = fmt::format("sm_{}{}", major, minor);
  if (hasArchSpecificTarget(major, minor)) arch += 'a';
  return arch;
}

ArchName parseArch(const std::string& arch) {
  auto invalid = [&] {
    return Error(fmt::format(
        "invalid GPU architecture '{}': expected sm_XY, sm_XYa, compute_XY or compute_XYa (for example "
        "sm_80, sm_90a, compute_90a)",
        arch));
  };
  ArchName parsed;
  std::string rest = arch;
  if (consumePrefix(rest, kRealPrefix)) {
    parsed.real = true;
  } else if (consumePrefix(rest, kVirtualPrefix)) {
    parsed.real = false;
  } else {
    throw invalid();
  }
  if (!rest.empty() && (rest.back() == 'a' || rest.back() == 'f')) {
    parsed.archSpecific = rest.back() == 'a';
    parsed.familySpecific = rest.back() == 'f';
    rest.pop_back();
  }
  constexpr size_t kMaxDigits = 4;
  if (rest.empty() || rest.size() > kMaxDigits) throw invalid();
  for (char c : rest)
    if (!std::isdigit(static_cast<unsigned char>(c))) throw invalid();
  parsed.number = std::stoi(rest);
  return parsed;
}

}  // namespace flexjit
