#include "Cli.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>

#include "dsl/Error.h"
#include "runtime/CudaDriver.h"

namespace flexjit::cli {

std::string Args::get(const std::string& key, const std::string& fallback) const {
  auto it = options.find(key);
  return it == options.end() ? fallback : it->second;
}

int64_t Args::getInt(const std::string& key, int64_t fallback) const {
  auto it = options.find(key);
  if (it == options.end()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    throw Error(fmt::format("--{} expects an integer, got '{}'", key, it->second));
  }
}

Args parseArgs(int argc, char** argv, int first) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      std::string key = s.substr(2), value = "1";
      size_t eq = key.find('=');
      if (eq != std::string::npos) {
        value = key.substr(eq + 1);
        key = key.substr(0, eq);
      } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
        value = argv[++i];
      }
      a.options[key] = value;
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

DType parseDType(const std::string& s) {
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "fp16" || s == "float16" || s == "half") return DType::F16;
  throw Error(fmt::format("unknown dtype '{}'; use bf16 or fp16", s));
}

std::vector<std::string> variantList(const std::string& list) {
  if (list == "all") return examples::seedVariantNames();
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) {
      examples::makeSeedVariant(item);  // raises a helpful error for unknown names
      out.push_back(item);
    }
  return out;
}

bool gpuAvailable() {
  try {
    return CudaDriver::available() && CudaDriver::get().deviceCount() > 0;
  } catch (const Error&) {
    return false;
  }
}

double medianMs(const std::function<void()>& fn, int warmup, int reps) {
  const CudaDriver& d = CudaDriver::get();
  for (int i = 0; i < warmup; ++i) fn();
  CUevent start = d.eventCreate(), stop = d.eventCreate();
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    d.eventRecord(start, nullptr);
    fn();
    d.eventRecord(stop, nullptr);
    d.eventSynchronize(stop);
    times.push_back(d.eventElapsedMs(start, stop));
  }
  d.eventDestroy(start);
  d.eventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double wallMs(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double attentionFlops(int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int64_t D, double density) {
  return 4.0 * B * H * double(Lq) * double(Lkv) * D * density;
}

std::pair<int, int> parseArchNumber(const std::string& arch) {
  std::smatch m;
  if (!std::regex_match(arch, m, std::regex("sm_(\\d+)(\\d)a?")))
    throw Error(fmt::format("--arch expects sm_XY or sm_XYa (e.g. sm_90a), got '{}'", arch));
  return {std::stoi(m[1]), std::stoi(m[2])};
}

int runList(const Args&) {
  for (const std::string& name : examples::seedVariantNames()) {
    examples::SeedVariant v = examples::makeSeedVariant(name);
    fmt::print("{:<16} {}\n", name, v.description);
  }
  return 0;
}

}  // namespace flexjit::cli
