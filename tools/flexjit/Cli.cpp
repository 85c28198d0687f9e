#include "Cli.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>

#include "dsl/Error.h"
#include "runtime/ConfigOverrides.h"
#include "runtime/CudaDriver.h"

namespace flexjit::cli {

std::string Args::get(const std::string& key, const std::string& fallback) const {
  auto it = options.find(key);
  return it == options.end() ? fallback : it->second;
}

int64_t Args::getInt(const std::string& key, int64_t fallback) const {
  auto it = options.find(key);
  return it == options.end() ? fallback : std::stoll(it->second);
}

int64_t parseIntIn(const std::string& text, int64_t min, int64_t max, const std::string& what) {
  std::optional<int64_t> value = parseInteger(text, min, max);
  if (!value) throw Error(fmt::format("{} expects an integer in [{}, {}], got '{}'", what, min, max, text));
  return *value;
}

std::string CommandSpec::help() const {
  std::string out = fmt::format("usage: flexjit {}{}{}\n  {}\n", name, arguments.empty() ? "" : " " + arguments,
                                options.empty() ? "" : " [options]", summary);
  if (!options.empty()) out += "options:\n";
  for (const OptionSpec& o : options)
    out += fmt::format("  {:<28} {}{}\n", "--" + o.name + (o.value.empty() ? "" : " " + o.value), o.help,
                       o.kind == OptionSpec::Kind::Int ? fmt::format("; {} to {}", o.min, o.max) : "");
  return out;
}

namespace {

const OptionSpec& findOption(const CommandSpec& spec, const std::string& name) {
  for (const OptionSpec& o : spec.options)
    if (o.name == name) return o;
  std::string known;
  for (const OptionSpec& o : spec.options) known += (known.empty() ? "--" : ", --") + o.name;
  throw Error(fmt::format("unknown option --{} for `flexjit {}`; {} (`flexjit {} --help` explains them)", name, spec.name,
                          known.empty() ? "it takes no options" : "its options are " + known, spec.name));
}

void checkValue(const OptionSpec& o, const std::string& value) {
  if (o.kind == OptionSpec::Kind::Int) parseIntIn(value, o.min, o.max, "--" + o.name);
  if (o.kind == OptionSpec::Kind::Choice && std::find(o.choices.begin(), o.choices.end(), value) == o.choices.end()) {
    std::string choices;
    for (const std::string& c : o.choices) choices += (choices.empty() ? "" : ", ") + c;
    throw Error(fmt::format("--{} expects one of {}, got '{}'", o.name, choices, value));
  }
}

}  // namespace

Args parseArgs(const CommandSpec& spec, int argc, char** argv, int first) {
  Args a;
  for (int i = first; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      a.help = true;
    } else if (s.rfind("--", 0) == 0) {
      const size_t eq = s.find('=');
      const OptionSpec& o = findOption(spec, s.substr(2, eq == std::string::npos ? std::string::npos : eq - 2));
      std::string value = "1";
      if (o.kind == OptionSpec::Kind::Flag) {
        if (eq != std::string::npos) throw Error(fmt::format("--{} takes no value", o.name));
      } else if (eq != std::string::npos) {
        value = s.substr(eq + 1);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        throw Error(fmt::format("--{} needs a value ({})", o.name, o.value));
      }
      checkValue(o, value);
      a.options[o.name] = value;
    } else {
      a.positional.push_back(s);
    }
  }
  if (!a.help && static_cast<int>(a.positional.size()) > spec.positional)
    throw Error(fmt::format("`flexjit {}` takes {}; unexpected argument '{}'", spec.name,
                            spec.positional == 0 ? "no arguments" : spec.arguments, a.positional[spec.positional]));
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
