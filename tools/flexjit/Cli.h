// The `flexjit` command-line tool: shared helpers of its subcommands.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dsl/Types.h"
#include "examples/SeedVariants.h"

namespace flexjit::cli {

/// Parsed `--key value` options and positional arguments.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::string get(const std::string& key, const std::string& fallback) const;
  int64_t getInt(const std::string& key, int64_t fallback) const;
  bool has(const std::string& key) const { return options.count(key) != 0; }
};
Args parseArgs(int argc, char** argv, int first);

/// "bf16" / "fp16" / "bfloat16" / "float16" -> DType (raises flexjit::Error otherwise).
DType parseDType(const std::string& s);
/// "sm_90a" / "sm_80" -> (9, 0) / (8, 0); raises flexjit::Error for anything else.
std::pair<int, int> parseArchNumber(const std::string& arch);
/// The variants named by a comma-separated list ("all" = every seed variant).
std::vector<std::string> variantList(const std::string& list);

/// Whether a CUDA GPU is usable (never throws).
bool gpuAvailable();
/// Median time in ms of `fn` over `reps` runs after `warmup` runs, timed with CUDA events.
double medianMs(const std::function<void()>& fn, int warmup, int reps);
/// Wall-clock milliseconds of `fn`.
double wallMs(const std::function<void()>& fn);

/// Forward FLOPs of attention with a block density in [0, 1] (4 * B * H * Lq * Lkv * D * density).
double attentionFlops(int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int64_t D, double density);

int runDemo(const Args& args);
int runShow(const Args& args);
int runBench(const Args& args);
int runList(const Args& args);
int runCompile(const Args& args);

}  // namespace flexjit::cli
