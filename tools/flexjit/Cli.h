// The `flexjit` command-line tool: shared helpers of its subcommands.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dsl/Types.h"
#include "examples/SeedVariants.h"

namespace flexjit::cli {

/// Ranges of the integer options, and of the numbers inside --shapes and --mask-seqs.
inline constexpr int64_t kMaxLength = INT32_MAX;  ///< sequence lengths are int32 indices
inline constexpr int64_t kMaxGridDim = 65535;     ///< batch and heads index CUDA grid dimensions
inline constexpr int64_t kMinHeadDim = 16, kMaxHeadDim = 256;

/// One `--name VALUE` option of a command: an integer in [min, max], one of `choices`, free text, or a
/// flag without a value.
struct OptionSpec {
  enum class Kind { Flag, Int, Choice, Text };
  std::string name;
  Kind kind = Kind::Text;
  std::string value;  ///< how the value reads in the help ("N", "bf16|fp16"); empty for a flag
  std::string help;   ///< what it does, with the default
  int64_t min = 0, max = 0;
  std::vector<std::string> choices;
};

struct Args;

/// A subcommand: `flexjit NAME ARGUMENTS [options]`.
struct CommandSpec {
  std::string name;
  std::string arguments;  ///< positional arguments in the help ("VARIANT"); empty for none
  int positional = 0;     ///< how many positional arguments it takes
  std::string summary;
  std::vector<OptionSpec> options;
  int (*run)(const Args&) = nullptr;
  /// `flexjit NAME --help`: the synopsis, the summary and every option.
  std::string help() const;
};

/// The positional arguments and the options of one command line, validated against its CommandSpec.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  bool help = false;  ///< --help or -h was given
  std::string get(const std::string& key, const std::string& fallback) const;
  /// An Int option's value (already range-checked by parseArgs), or `fallback` when absent.
  int64_t getInt(const std::string& key, int64_t fallback) const;
  bool has(const std::string& key) const { return options.count(key) != 0; }
};
/// Parses argv[first..] for `spec`: raises flexjit::Error for an unknown option, a missing or bad value
/// (an integer outside its range, a value not among the choices) or a wrong number of positional arguments.
Args parseArgs(const CommandSpec& spec, int argc, char** argv, int first);

/// `text` as an integer in [min, max] for `what` in messages (flexjit::Error otherwise: never truncated).
int64_t parseIntIn(const std::string& text, int64_t min, int64_t max, const std::string& what);

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
