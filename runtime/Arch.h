// GPU architecture names: which NVRTC target a device gets, and parsing of "sm_90a"-style names.
//
// flexjit needs Ampere or newer (cp.async, bf16 MMA). Hopper and Blackwell datacenter parts get the
// arch-specific "a" target so generated code may use their arch-only instructions (wgmma, setmaxnreg,
// tcgen05); those targets do not run on any other GPU, which is fine because kernels are compiled for the
// device they launch on.
#pragma once

#include <string>

namespace flexjit {

/// The oldest compute capability flexjit generates code for (Ampere).
constexpr int kMinComputeMajor = 8;

/// The NVRTC target for a device of compute capability major.minor: "sm_90a" for 9.0, "sm_100a" for
/// 10.0, "sm_XY" otherwise. Throws flexjit::Error below compute capability 8.0.
std::string archForDevice(int major, int minor);

/// A parsed target name: "sm_90a" -> {90, realTarget, archSpecific}; "compute_80" -> {80, virtual}.
struct ArchName {
  int number = 0;              ///< 80, 86, 90, 100, 120 ...
  bool real = true;            ///< sm_* (cubin) rather than compute_* (PTX only)
  bool archSpecific = false;   ///< the "a" suffix: runs only on this exact architecture
  bool familySpecific = false; ///< the "f" suffix: runs on this architecture family
};

/// Parses "sm_XY[a|f]" or "compute_XY[a|f]"; throws flexjit::Error naming the accepted forms otherwise.
ArchName parseArch(const std::string& arch);

}  // namespace flexjit
