// The differential fuzzer's oracles (docs/testing.md): for one case (a score_mod and a mask_mod, at times a
// sink_mod and a prob_mod too, FuzzGen.h) compiled as two variants, the simplified one (what the kernels
// run) and the unsimplified one (the IR as imported), every check that must hold:
//   values    the interpreter (dsl/Interpreter, the meaning) == the hooks of the imported IR == the hooks of
//             the simplified IR, bit for bit (NaN equals NaN; -0.0 differs from 0.0): a difference between
//             the two emitted forms is a folder or rewrite pattern, one shared by both is the emitter;
//             for every hook of the case;
//   split     NAME_split(NAME_row, NAME_col) == NAME, bit for bit;
//   facts     kMaskModIsNoop / kScoreModIsNoop / !kScoreCanBeNegInf hold at every position tried;
//   intervals every value of the mod over a box (and a score range) lies in the interval forms' result
//             (the generated mask_mod_interval / score_mod_interval and the interpreter's own);
//   gradient  score_mod_grad, prob_mod_grad and sink_mod_grad (d/dscore, d/dp and every captured-tensor
//             gradient) equal the interpreter's float32 reverse mode bit for bit (NaN equals NaN), and for
//             smooth score_mods score_mod_grad and the float64 reverse mode (the CPU reference) match central
//             finite differences where those are stable;
//   windows   every gradient write of score_mod_grad over a box lies in its site's gradient window.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "FuzzGen.h"
#include "HostCompile.h"
#include "codegen/Variant.h"

namespace flexjit::testing {

/// What a run checked (printed at the end; the CI test asserts minimums so the oracles stay meaningful).
struct FuzzStats {
  long cases = 0, values = 0, split = 0, boxes = 0, intervalValues = 0, gradientBits = 0, gradients = 0,
       tensorGradients = 0, gradWrites = 0;
  long splitScores = 0, splitMasks = 0, maskNoops = 0, scoreNoops = 0, neverNegInf = 0, sinks = 0, probs = 0;
  std::string summary() const;
};

/// Failures of a run, each with its case (seed, captures, both mods) and what disagreed.
class FuzzFailures {
 public:
  void add(const FuzzCase& c, const std::string& oracle, const std::string& detail);
  int count() const { return count_; }
  /// The first failures in full, then a count.
  std::string report() const;
  /// The first failing case and the oracle that failed (for the shrinker).
  const std::optional<std::pair<FuzzCase, std::string>>& first() const { return first_; }

 private:
  std::vector<std::string> messages_;
  int count_ = 0;
  std::optional<std::pair<FuzzCase, std::string>> first_;
};

/// A batch of cases with their two variants each, compiled into host libraries: one per stage and part
/// (consecutive parts of partSize cases, compiled concurrently to use every core).
struct FuzzBatch {
  std::vector<FuzzCase> cases;
  std::vector<Variant> simplified, imported;
  std::vector<std::unique_ptr<HostLibrary>> libs, importedLibs;
  size_t partSize = 1;
  bool ok() const;
};

/// Lowers cases into a batch (a lowering error is a failure of its case, which is then left out).
FuzzBatch lowerFuzzCases(std::vector<FuzzCase> cases, FuzzFailures& failures);
/// Generates cases [first, first + count) of base seed `base` and lowers them.
FuzzBatch prepareFuzzBatch(uint64_t base, uint64_t first, int count, FuzzFailures& failures);
/// Host-compiles a prepared batch in `parts` parts per stage, all concurrently.
void compileFuzzBatch(FuzzBatch& batch, const std::string& tag, int parts);
/// Runs every oracle on case `k` of a compiled batch; returns the oracles that failed.
std::set<std::string> checkFuzzCase(const FuzzBatch& batch, size_t k, FuzzStats& stats, FuzzFailures& failures);
/// Shrinks a failing case (fuzz_shrink_support_test.cpp): replaces one node of either mod at a time by one
/// of its operands or a constant while `oracle` still fails; returns the smallest case found.
FuzzCase shrinkFuzzCase(const FuzzCase& failing, const std::string& oracle, int maxRounds = 60);

}  // namespace flexjit::testing
