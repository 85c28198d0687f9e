// What the compiler proved about a variant; consumed by codegen and the runtime (no MLIR types here).
#pragma once

namespace flexjit {

/// What the range analysis and simplification proved about a variant (over all parameter values).
struct ModFacts {
  bool scoreIsNoop = false;      ///< score_mod returns its score unchanged
  bool maskIsNoop = false;       ///< mask_mod keeps every position
  bool scoreCanBeNegInf = true;  ///< score_mod may return -inf (masks through the score)
  bool hasTensorGrads = false;   ///< some captured tensor requires a gradient
  bool maskReadsTensors = false; ///< mask_mod reads a captured tensor (its interval form then scans values)
  int maskOps = 0;               ///< operations in the simplified mask_mod (constants and return not counted)
  bool hasSink = false;          ///< the variant has a sink_mod (a softmax-denominator term per row)
  bool sinkHasTensorGrads = false; ///< the sink_mod reads a captured tensor that requires a gradient
  bool hasProb = false;          ///< the variant has a prob_mod (the forward runs a statistics pass first)
  bool probHasTensorGrads = false; ///< the prob_mod reads a captured tensor that requires a gradient
  bool probReadsVisible = false; ///< the prob_mod reads num_visible (the statistics pass then counts each row's keys)
};

}  // namespace flexjit
