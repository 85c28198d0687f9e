// Environment overrides of kernel configurations, for tuning and experiments without rebuilding:
// FLEXJIT_FWD_CONFIG (forward, runtime/KernelBuild.cpp) and FLEXJIT_BWD_CONFIG (backward,
// runtime/AttentionBackwardGpu.cpp), each a list "key=value,key=value" of integer fields; and the integer
// parser they share with the command-line tool.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace flexjit {

/// `text` as a base-10 integer in [min, max]; nullopt for anything else (empty, not a number, trailing
/// characters, out of range): a value is never truncated to fit.
std::optional<int64_t> parseInteger(const std::string& text, int64_t min, int64_t max);

/// Sets the fields named in the environment variable `envName` ("key=value,..."); an unknown key or a
/// value that is not an int throws flexjit::Error naming the keys it accepts. Unset or empty: no change.
void applyConfigOverrides(const char* envName, const std::map<std::string, int*>& fields);

/// The value of one key of `envName`'s list, without judging the other keys (applyConfigOverrides does that
/// where the key's fields are applied): for a key such as family= that decides which fields exist.
std::optional<int> readConfigKey(const char* envName, const std::string& key);

}  // namespace flexjit
