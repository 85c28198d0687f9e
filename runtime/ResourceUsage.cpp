// Implementation of ResourceUsage.h: a line-by-line parser of ptxas -v output.
#include "runtime/ResourceUsage.h"

#include <cstdlib>
#include <sstream>

#include <fmt/format.h>

#include "dsl/Error.h"

namespace flexjit {

namespace {

constexpr const char* kEntryMarker = "Compiling entry function '";
constexpr const char* kPropertiesMarker = "Function properties for ";

/// The integer immediately before `label` in `line` ("256 bytes stack frame" -> 256), or -1.
int64_t numberBefore(const std::string& line, const std::string& label) {
  size_t at = line.find(label);
  if (at == std::string::npos) return -1;
  size_t end = at;
  while (end > 0 && line[end - 1] == ' ') --end;
  size_t begin = end;
  while (begin > 0 && line[begin - 1] >= '0' && line[begin - 1] <= '9') --begin;
  if (begin == end) return -1;
  return std::strtoll(line.substr(begin, end - begin).c_str(), nullptr, 10);
}

/// The integer immediately after `label` in `line` ("Used 32 registers" with "Used " -> 32), or -1.
int64_t numberAfter(const std::string& line, const std::string& label) {
  size_t at = line.find(label);
  if (at == std::string::npos) return -1;
  return std::strtoll(line.c_str() + at + label.size(), nullptr, 10);
}

/// Copies `value` into `field` when the line carried it.
void setIfPresent(int64_t value, int64_t& field) {
  if (value >= 0) field = value;
}

/// The name between the marker and the next quote, or the rest of the line.
std::string nameAfter(const std::string& line, size_t markerEnd, char terminator) {
  size_t end = line.find(terminator, markerEnd);
  return line.substr(markerEnd, end == std::string::npos ? std::string::npos : end - markerEnd);
}

}  // namespace

bool ResourceUsage::operator==(const ResourceUsage& o) const {
  return registers == o.registers && barriers == o.barriers && staticSharedBytes == o.staticSharedBytes &&
         constantBytes == o.constantBytes && stackFrameBytes == o.stackFrameBytes &&
         spillStoreBytes == o.spillStoreBytes && spillLoadBytes == o.spillLoadBytes;
}

ResourceUsageMap parsePtxasInfo(const std::string& log) {
  ResourceUsageMap usage;
  // ptxas reports each entry as: "Compiling entry function 'k'", then "Function properties for k" with
  // its stack/spill line, then "Used N registers ...". Non-entry (noinline device) functions get their
  // own "Function properties" block, which must not be charged to the entry being compiled.
  std::string entry;
  std::string propertiesOf;
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    if (size_t at = line.find(kEntryMarker); at != std::string::npos) {
      entry = nameAfter(line, at + std::char_traits<char>::length(kEntryMarker), '\'');
      usage[entry];
      propertiesOf.clear();
    } else if (size_t at = line.find(kPropertiesMarker); at != std::string::npos) {
      propertiesOf = nameAfter(line, at + std::char_traits<char>::length(kPropertiesMarker), ' ');
    } else if (line.find("bytes stack frame") != std::string::npos) {
      if (entry.empty() || propertiesOf != entry) continue;
      ResourceUsage& u = usage[entry];
      setIfPresent(numberBefore(line, "bytes stack frame"), u.stackFrameBytes);
      setIfPresent(numberBefore(line, "bytes spill stores"), u.spillStoreBytes);
      setIfPresent(numberBefore(line, "bytes spill loads"), u.spillLoadBytes);
    } else if (line.find("Used ") != std::string::npos && line.find("registers") != std::string::npos) {
      if (entry.empty()) continue;
      ResourceUsage& u = usage[entry];
      setIfPresent(numberAfter(line, "Used "), u.registers);
      setIfPresent(numberAfter(line, "used "), u.barriers);
      setIfPresent(numberBefore(line, "bytes smem"), u.staticSharedBytes);
      setIfPresent(numberBefore(line, "bytes cmem[0]"), u.constantBytes);
    }
  }
  return usage;
}

const ResourceUsage& resourceUsageOf(const ResourceUsageMap& usage, const std::string& function) {
  auto it = usage.find(function);
  if (it != usage.end()) return it->second;
  std::string known;
  for (const auto& entry : usage) known += (known.empty() ? "" : ", ") + entry.first;
  throw Error(fmt::format(
      "no resource usage for kernel function '{}': the ptxas report lists [{}]. Use the extern \"C\" name "
      "of a __global__ function, and compile for a real target (sm_XX), not a PTX-only compute_XX.",
      function, known));
}

std::string formatResourceUsage(const ResourceUsageMap& usage) {
  std::string out;
  for (const auto& [name, u] : usage)
    out += fmt::format(
        "{}: registers={} barriers={} static_smem={} cmem0={} stack={} spill_stores={} spill_loads={}\n",
        name, u.registers, u.barriers, u.staticSharedBytes, u.constantBytes, u.stackFrameBytes,
        u.spillStoreBytes, u.spillLoadBytes);
  return out;
}

}  // namespace flexjit
