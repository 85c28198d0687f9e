// flexjit: compile, inspect and run attention variants.
//
//   flexjit demo   compile the seed variants, show a block mask and generated code; run and time them on
//                  a GPU when one is present
//   flexjit show VARIANT [--stage summary|mlir|hooks|cuda|ptx|sass|mask]
//   flexjit list   the seed variants
//   flexjit bench  time flexjit's kernels (JSON), used by bench/run_bench.py
#include <cstdio>
#include <string>

#include "Cli.h"
#include "dsl/Error.h"

namespace {

constexpr const char* kUsage =
    "usage: flexjit <command> [options]\n"
    "  demo  [--seq N] [--batch B] [--heads H] [--head-dim D] [--dtype bf16|fp16] [--variants a,b|all]\n"
    "        compile the seed variants, print a block mask and generated code; on a GPU also run and time them\n"
    "  show VARIANT [--stage summary|mlir|hooks|cuda|ptx|sass|mask] [--seq N] [--head-dim D] [--dtype bf16|fp16]\n"
    "        [--arch sm_90a]   the generated MLIR, CUDA, PTX statistics and block mask of one variant\n"
    "  list  the seed variants\n"
    "  compile VARIANT [--mode parallel|serial] [--dtype bf16|fp16] [--head-dim D] [--cc-major 9 --cc-minor 0]\n"
    "        cold compile time of the forward and backward kernels (no GPU needed)\n"
    "  bench [--shapes B,H,S,D,dtype;...|none] [--variants a,b|all] [--reps N] [--json FILE] [--mask-seqs S1,S2]\n"
    "        [--backward]   (also time the backward)\n"
    "        time flexjit's forward kernels on the GPU and write JSON\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1];
  try {
    flexjit::cli::Args args = flexjit::cli::parseArgs(argc, argv, 2);
    if (command == "demo") return flexjit::cli::runDemo(args);
    if (command == "show") return flexjit::cli::runShow(args);
    if (command == "list") return flexjit::cli::runList(args);
    if (command == "bench") return flexjit::cli::runBench(args);
    if (command == "compile") return flexjit::cli::runCompile(args);
    std::fprintf(stderr, "flexjit: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const flexjit::Error& e) {
    std::fprintf(stderr, "flexjit %s: %s\n", command.c_str(), e.what());
    return 1;
  }
}
