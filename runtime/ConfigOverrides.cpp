#include "runtime/ConfigOverrides.h"

#include <fmt/format.h>

#include <cstdlib>
#include <sstream>

#include "dsl/Error.h"

namespace flexjit {

void applyConfigOverrides(const char* envName, const std::map<std::string, int*>& fields) {
  const char* env = std::getenv(envName);
  if (!env || !*env) return;
  std::string keys;
  for (const auto& [key, field] : fields) keys += (keys.empty() ? "" : ", ") + key;
  std::stringstream ss(env);
  for (std::string item; std::getline(ss, item, ',');) {
    const size_t eq = item.find('=');
    auto it = eq == std::string::npos ? fields.end() : fields.find(item.substr(0, eq));
    char* end = nullptr;
    const long value = it == fields.end() ? 0 : std::strtol(item.c_str() + eq + 1, &end, 10);
    if (it == fields.end() || end == item.c_str() + eq + 1 || *end != '\0')
      throw Error(fmt::format("{}: bad entry '{}' (expected key=integer with a key among {})", envName, item, keys));
    *it->second = static_cast<int>(value);
  }
}

}  // namespace flexjit
