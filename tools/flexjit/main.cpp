// flexjit: compile, inspect and run attention variants.
//
//   flexjit demo   compile the seed variants, show a block mask and generated code; run and time them on
//                  a GPU when one is present
//   flexjit show VARIANT [--stage summary|mlir|hooks|cuda|ptx|sass|mask]
//   flexjit list   the seed variants
//   flexjit bench  time flexjit's kernels (JSON), used by bench/run_bench.py
//   flexjit compile VARIANT   cold compile times
// Every command checks its options against the table below (`flexjit CMD --help` prints it): an unknown
// option, an integer outside its range or a value outside its choices is an error, never ignored.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "Cli.h"
#include "dsl/Error.h"
#include "runtime/Attention.h"

namespace {

using flexjit::cli::CommandSpec;
using flexjit::cli::OptionSpec;
using Kind = OptionSpec::Kind;

using flexjit::cli::kMaxGridDim;
using flexjit::cli::kMaxHeadDim;
using flexjit::cli::kMaxLength;
using flexjit::cli::kMinHeadDim;
constexpr int64_t kMaxReps = 1000000;

OptionSpec intOption(const char* name, const char* value, int64_t min, int64_t max, const char* help) {
  return OptionSpec{name, Kind::Int, value, help, min, max, {}};
}

OptionSpec choiceOption(const char* name, const char* value, std::vector<std::string> choices, const char* help) {
  return OptionSpec{name, Kind::Choice, value, help, 0, 0, std::move(choices)};
}

OptionSpec textOption(const char* name, const char* value, const char* help) {
  return OptionSpec{name, Kind::Text, value, help, 0, 0, {}};
}

OptionSpec dtypeOption() {
  return choiceOption("dtype", "bf16|fp16", {"bf16", "fp16", "bfloat16", "float16", "half"}, "input dtype (default bf16)");
}

OptionSpec headDimOption() {
  return intOption("head-dim", "D", kMinHeadDim, kMaxHeadDim, "head dim, a multiple of 16 (default 128)");
}

const std::vector<CommandSpec>& commands() {
  static const std::vector<CommandSpec> table = {
      {"demo", "", 0,
       "compile the seed variants, print a block mask and generated code; on a GPU also run and time them",
       {intOption("seq", "N", 1, kMaxLength, "sequence length of the timed runs (default 4096)"),
        intOption("batch", "B", 1, kMaxGridDim, "batch size (default 4)"),
        intOption("heads", "H", 1, kMaxGridDim, "heads (default 16)"), headDimOption(), dtypeOption(),
        textOption("variants", "a,b|all", "seed variants to compile and run (default all)"),
        intOption("reps", "N", 1, kMaxReps, "timed repetitions per variant (default 10)")},
       flexjit::cli::runDemo},
      {"show", "VARIANT", 1, "the generated MLIR, CUDA, PTX statistics and block mask of one variant",
       {choiceOption("stage", "STAGE", {"summary", "mlir", "hooks", "cuda", "ptx", "sass", "mask"},
                     "summary|mlir|hooks|cuda|ptx|sass|mask (default summary)"),
        intOption("seq", "N", 1, kMaxLength, "sequence length of the block mask (default 2048)"), headDimOption(),
        dtypeOption(), textOption("arch", "sm_XY", "target GPU (default this GPU, else sm_90a)")},
       flexjit::cli::runShow},
      {"list", "", 0, "the seed variants", {}, flexjit::cli::runList},
      {"compile", "VARIANT", 1, "cold compile time of the forward and backward kernels (no GPU needed)",
       {choiceOption("mode", "parallel|serial", {"parallel", "serial"},
                     "backward compiled beside the forward or after it (default parallel)"),
        dtypeOption(), headDimOption(), intOption("cc-major", "N", 8, 99, "compute capability major (default 9)"),
        intOption("cc-minor", "N", 0, 9, "compute capability minor (default 0)")},
       flexjit::cli::runCompile},
      {"bench", "", 0, "time flexjit's forward (and backward) kernels on the GPU and write JSON",
       {textOption("shapes", "B,H,S,D,dtype;...|none", "shapes to time (default 8,16,8192,128,bf16;16,16,8192,64,fp16)"),
        textOption("variants", "a,b|all", "seed variants (default all)"),
        intOption("reps", "N", 1, kMaxReps, "timed repetitions (default 20)"),
        textOption("json", "FILE", "where to write the JSON (default -: stdout)"),
        textOption("mask-seqs", "S1,S2", "also time create_block_mask(causal) at these lengths"),
        OptionSpec{"backward", Kind::Flag, "", "also time the backward", 0, 0, {}}},
       flexjit::cli::runBench},
  };
  return table;
}

std::string usage() {
  std::string out = "usage: flexjit <command> [options]   (flexjit <command> --help lists its options)\n";
  for (const CommandSpec& c : commands())
    out += "  " + c.name + (c.arguments.empty() ? "" : " " + c.arguments) + "\n        " + c.summary + "\n";
  return out;
}

int run(const CommandSpec& spec, int argc, char** argv) {
  flexjit::cli::Args args = flexjit::cli::parseArgs(spec, argc, argv, 2);
  if (args.help) {
    std::fputs(spec.help().c_str(), stdout);
    return 0;
  }
  if (static_cast<int>(args.positional.size()) < spec.positional)
    throw flexjit::Error(spec.name + " needs " + spec.arguments + "; `flexjit list` shows the variants");
  return spec.run(args);
}

/// Joins the backward compiles `compile` (or a training-style run) started, on every way out of main:
/// exiting under a running compile would crash in NVRTC's destroyed statics.
struct WaitForBackgroundCompiles {
  ~WaitForBackgroundCompiles() { flexjit::waitForBackgroundCompiles(); }
};

}  // namespace

int main(int argc, char** argv) {
  WaitForBackgroundCompiles waitAtExit;
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::fputs(usage().c_str(), argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  for (const CommandSpec& spec : commands()) {
    if (spec.name != command) continue;
    try {
      return run(spec, argc, argv);
    } catch (const flexjit::Error& e) {
      std::fprintf(stderr, "flexjit %s: %s\n", command.c_str(), e.what());
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "flexjit %s: out of memory (std::bad_alloc); try smaller sizes\n", command.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "flexjit %s: internal error: %s\n", command.c_str(), e.what());
    }
    return 1;
  }
  std::fprintf(stderr, "flexjit: unknown command '%s'\n%s", command.c_str(), usage().c_str());
  return 2;
}
