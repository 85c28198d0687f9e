// The permanent differential fuzzer (docs/testing.md): random score_mods and mask_mods (FuzzGen.h) through
// every stage of the compiler, checked by the oracles of FuzzOracles.h. CI runs a fixed seed; longer runs
// and other seeds on demand:
//
//   FLEXJIT_FUZZ_CASES=200000 FLEXJIT_FUZZ_SEED=$RANDOM build/tests/flexjit_tests --gtest_filter='DifferentialFuzz.*'
//
// Host compilation dominates the run time, so cases go through in batches (shared libraries per batch and
// stage, kCompileParts of them), and the next batch is generated and compiled while the current one is checked.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>

#include "FuzzOracles.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

constexpr uint64_t kCiSeed = 20261201;
/// Variants (each one score_mod and one mask_mod, a quarter also a sink_mod, a quarter a prob_mod): 12,477
/// random mods, about 2 minutes on two cores (docs/testing.md).
constexpr uint64_t kCiCases = 5000;
/// Cases per host library: large enough to amortise the compiler's start, small enough to overlap.
constexpr int kBatchCases = 250;
/// Host compilers per stage and batch: the simplified stage is the larger one, so two keep both cores busy.
constexpr int kCompileParts = 2;

uint64_t envOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : fallback;
}

}  // namespace

TEST(DifferentialFuzz, EveryStageAgreesOnRandomMods) {
  const uint64_t seed = envOr("FLEXJIT_FUZZ_SEED", kCiSeed), cases = envOr("FLEXJIT_FUZZ_CASES", kCiCases);
  const auto start = std::chrono::steady_clock::now();
  FuzzStats stats;
  FuzzFailures failures;
  auto prepare = [&](uint64_t first) {
    const int n = static_cast<int>(std::min<uint64_t>(kBatchCases, cases - first));
    return std::make_unique<FuzzBatch>(prepareFuzzBatch(seed, first, n, failures));
  };
  auto compile = [&](FuzzBatch* batch, uint64_t first) {
    return std::async(std::launch::async,
                      [batch, first] { compileFuzzBatch(*batch, fmt::format("fuzz{}", first), kCompileParts); });
  };
  std::unique_ptr<FuzzBatch> current = prepare(0);
  std::future<void> compiled = compile(current.get(), 0);
  for (uint64_t first = 0; first < cases; first += kBatchCases) {
    std::unique_ptr<FuzzBatch> next;
    if (first + kBatchCases < cases) next = prepare(first + kBatchCases);  // overlaps the compile
    compiled.get();
    std::future<void> nextCompiled;
    if (next) nextCompiled = compile(next.get(), first + kBatchCases);
    ASSERT_TRUE(current->ok());
    for (size_t k = 0; k < current->cases.size(); ++k) checkFuzzCase(*current, k, stats, failures);
    current = std::move(next);
    compiled = std::move(nextCompiled);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ fuzz ] seed %llu: %s; %.1f s\n", static_cast<unsigned long long>(seed), stats.summary().c_str(),
              seconds);
  EXPECT_EQ(failures.count(), 0) << failures.report();
  if (failures.first() && envOr("FLEXJIT_FUZZ_SHRINK", 0)) {
    const auto& [failing, oracle] = *failures.first();
    std::printf("[ fuzz ] shrunk while '%s' fails:\n%s\n", oracle.c_str(),
                shrinkFuzzCase(failing, oracle).describe().c_str());
  }
  if (cases < kCiCases) return;  // replaying a few cases: the coverage minimums are for full runs
  EXPECT_GE(stats.cases, static_cast<long>(cases) * 99 / 100);
  EXPECT_GT(stats.split, stats.values / 10) << "the row / column split should apply to many random mods";
  EXPECT_GT(stats.gradientBits, stats.cases * 3) << "every score_mod_grad is compared bit for bit";
  EXPECT_GT(stats.gradients, stats.cases / 2) << "finite differences should be stable at many points";
  EXPECT_GT(stats.tensorGradients, stats.cases / 4);
}
