// Running and timing one seed variant on the GPU (shared by demo and bench).
#pragma once

#include <string>

#include "dsl/Types.h"

namespace flexjit::cli {

struct RunShape {
  int64_t B = 4, H = 16, Lq = 4096, Lkv = 4096, D = 128;
  DType dtype = DType::BF16;
};

struct RunResult {
  double maskMs = 0;     ///< create_block_mask on the GPU (median)
  double fwdMs = 0;      ///< forward kernel (median)
  double density = 0;    ///< fraction of blocks computed
  double tflops = 0;     ///< forward TFLOP/s at that density
  double firstCallMs = 0;  ///< first flex_attention call: lowering + compile (or cache load) + run
  double bwdMs = 0;        ///< backward (median), when timed
  double bwdTflops = 0;    ///< backward TFLOP/s (2.5 x the forward's FLOPs)
};

/// Times `variant` at `shape` (random inputs, warmup, median of `reps`); the backward too if `backward`.
RunResult timeVariant(const std::string& variant, const RunShape& shape, int reps, bool backward = false);

/// Max |O - reference| and LSE error of the GPU forward on a small problem (B1 H2 S300 D64 bf16 by default).
struct Accuracy {
  double outError = 0, lowPrecisionError = 0, lseError = 0;
};
Accuracy checkVariant(const std::string& variant, int64_t seq = 300, int64_t headDim = 64);

}  // namespace flexjit::cli
