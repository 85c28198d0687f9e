// The `flexjit` command-line tool on bad input: every mistake is one line on stderr and exit status 1
// (never a crash, never ignored), every command has --help. Runs the built tool (no GPU needed).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct CliRun {
  int status = -1;  ///< exit status; -1 when the tool did not exit normally
  std::string output;  ///< stdout and stderr
};

/// Runs the tool with `arguments` (and `env` assignments); `memoryKiB` > 0 caps its address space, so an
/// allocation too large fails at once whatever the machine's overcommit policy.
CliRun runCli(const std::string& arguments, const std::string& env = "", long memoryKiB = 0) {
  CliRun r;
  const std::string limit = memoryKiB > 0 ? "ulimit -v " + std::to_string(memoryKiB) + "; " : "";
  const std::string command = limit + "env " + env + " '" FLEXJIT_CLI "' " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  for (size_t n; (n = fread(buf.data(), 1, buf.size(), pipe)) > 0;) r.output.append(buf.data(), n);
  const int wait = pclose(pipe);
  if (WIFEXITED(wait)) r.status = WEXITSTATUS(wait);
  return r;
}

void expectError(const std::string& arguments, const std::string& message) {
  CliRun r = runCli(arguments);
  EXPECT_EQ(r.status, 1) << arguments << "\n" << r.output;
  EXPECT_NE(r.output.find(message), std::string::npos) << arguments << "\n" << r.output;
}

}  // namespace

TEST(Cli, IntegerOptionsAreRangeCheckedNotTruncated) {
  // 4294967424 is 128 after truncation to int.
  expectError("demo --head-dim 4294967424", "--head-dim expects an integer in [16, 256], got '4294967424'");
  expectError("show causal --seq 4294967424", "--seq expects an integer in [1, 2147483647], got '4294967424'");
  expectError("compile causal --cc-major 4294967305", "--cc-major expects an integer in [8, 99]");
  expectError("demo --batch 0", "--batch expects an integer in [1, 65535], got '0'");
  expectError("demo --reps 10x", "--reps expects an integer");
  expectError("bench --shapes 1,1,4294967424,64,bf16", "--shapes S expects an integer in [1, 2147483647]");
  expectError("bench --mask-seqs 1024,x", "--mask-seqs expects an integer");
}

TEST(Cli, UnknownOptionsValuesAndArgumentsAreRefused) {
  expectError("show causal --stage bogus", "--stage expects one of summary, mlir, hooks, cuda, ptx, sass, mask, got 'bogus'");
  expectError("demo --bogus 3", "unknown option --bogus for `flexjit demo`; its options are --seq, --batch");
  expectError("list --seq 4", "unknown option --seq for `flexjit list`; it takes no options");
  expectError("compile causal --mode fast", "--mode expects one of parallel, serial, got 'fast'");
  expectError("show causal --dtype fp8", "--dtype expects one of bf16, fp16");
  expectError("show causal extra", "unexpected argument 'extra'");
  expectError("show", "show needs VARIANT");
  expectError("show causal --seq", "--seq needs a value");
  expectError("bench --backward=yes", "--backward takes no value");
  CliRun unknown = runCli("frobnicate");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.output.find("unknown command 'frobnicate'"), std::string::npos) << unknown.output;
}

TEST(Cli, EveryCommandHasHelpThatRunsNothing) {
  for (const char* command : {"demo", "show", "list", "compile", "bench"}) {
    CliRun r = runCli(std::string(command) + " --help");
    EXPECT_EQ(r.status, 0) << command << "\n" << r.output;
    EXPECT_EQ(r.output.rfind(std::string("usage: flexjit ") + command, 0), 0u) << r.output;
  }
  CliRun demo = runCli("demo -h");
  EXPECT_NE(demo.output.find("--head-dim D"), std::string::npos) << demo.output;
  EXPECT_EQ(demo.output.find("flexjit demo: NVRTC"), std::string::npos) << "demo --help ran the demo";
}

TEST(Cli, OutOfMemoryIsAnErrorNotAnAbort) {
  // 2^23 x 2^23 blocks: the block classes alone would take 64 TiB (the cap makes that fail even where the
  // kernel would overcommit it).
  CliRun r = runCli("show causal --stage mask --seq 1073741824", "", 4L << 20);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("flexjit show: out of memory (std::bad_alloc)"), std::string::npos) << r.output;
}

// A failed forward in `compile` (parallel) returns while the backward compiles in the background: the tool
// waits for it instead of exiting under it (which crashed in NVRTC's destroyed statics).
TEST(Cli, ExitAfterAFailedForwardWaitsForTheBackgroundCompile) {
  for (int run = 0; run < 2; ++run) {
    CliRun r = runCli("compile relative_bias", "FLEXJIT_FWD_CONFIG=subN=24");
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("FLEXJIT_FWD_CONFIG"), std::string::npos) << r.output;
  }
}
