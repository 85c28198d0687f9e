#include "runtime/ConfigOverrides.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <sstream>

#include "dsl/Error.h"

namespace flexjit {

std::optional<int64_t> parseInteger(const std::string& text, int64_t min, int64_t max) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text.front()))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  // ERANGE: beyond 64 bits (strtoll saturates); the range check catches what fits 64 bits but not the field.
  if (errno == ERANGE || *end != '\0' || value < min || value > max) return std::nullopt;
  return value;
}

namespace {

/// Calls f(item) for every "key=value" entry of `envName`'s comma-separated list (none when unset or empty).
template <class F>
void forEachEntry(const char* envName, F&& f) {
  const char* env = std::getenv(envName);
  if (!env || !*env) return;
  std::stringstream ss(env);
  for (std::string item; std::getline(ss, item, ',');) f(item);
}

}  // namespace

void applyConfigOverrides(const char* envName, const std::map<std::string, int*>& fields) {
  std::string keys;
  for (const auto& [key, field] : fields) keys += (keys.empty() ? "" : ", ") + key;
  forEachEntry(envName, [&](const std::string& item) {
    const size_t eq = item.find('=');
    auto it = eq == std::string::npos ? fields.end() : fields.find(item.substr(0, eq));
    if (it == fields.end())
      throw Error(fmt::format("{}: bad entry '{}' (expected key=integer with a key among {})", envName, item, keys));
    std::optional<int64_t> value = parseInteger(item.substr(eq + 1), INT_MIN, INT_MAX);
    if (!value)
      throw Error(fmt::format("{}: bad entry '{}' (expected key=integer with a key among {}; the integer must fit "
                              "in [{}, {}])", envName, item, keys, INT_MIN, INT_MAX));
    *it->second = static_cast<int>(*value);
  });
}

std::optional<int> readConfigKey(const char* envName, const std::string& key) {
  std::optional<int> found;
  forEachEntry(envName, [&](const std::string& item) {
    if (found || item.compare(0, key.size() + 1, key + "=") != 0) return;  // the first entry of the key counts
    std::optional<int64_t> value = parseInteger(item.substr(key.size() + 1), INT_MIN, INT_MAX);
    if (!value)
      throw Error(fmt::format("{}: bad entry '{}' ({} takes an integer in [{}, {}])", envName, item, key, INT_MIN,
                              INT_MAX));
    found = static_cast<int>(*value);
  });
  return found;
}

}  // namespace flexjit
