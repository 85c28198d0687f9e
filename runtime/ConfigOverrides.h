// Environment overrides of kernel configurations, for tuning and experiments without rebuilding:
// FLEXJIT_FWD_CONFIG (forward, runtime/KernelBuild.cpp) and FLEXJIT_BWD_CONFIG (backward,
// runtime/AttentionBackwardGpu.cpp), each a list "key=value,key=value" of integer fields.
#pragma once

#include <map>
#include <string>

namespace flexjit {

/// Sets the fields named in the environment variable `envName` ("key=value,..."); an unknown key or a
/// value that is not an integer throws flexjit::Error naming the keys it accepts. Unset or empty: no change.
void applyConfigOverrides(const char* envName, const std::map<std::string, int*>& fields);

}  // namespace flexjit
