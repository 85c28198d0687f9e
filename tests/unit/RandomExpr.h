// Random expression generator for property tests: typed DSL expressions over the mod parameters,
// constants and captured tensors, with a fixed seed so failures reproduce.
#pragma once

#include <functional>
#include <random>
#include <vector>

#include "dsl/Capture.h"
#include "dsl/Expr.h"

namespace flexjit::testing {

struct RandomExprOptions {
  int maxDepth = 4;
  /// Only ops with finite, smooth derivatives almost everywhere (for finite-difference checks).
  bool smooth = false;
  bool allowScore = true;
  /// Captured tensors expressions may read (a float one, an int one).
  const CapturedTensor* floatTensor = nullptr;  // rank 1
  const CapturedTensor* intTensor = nullptr;    // rank 1
  int tensorLength = 64;
};

class RandomExprGen {
 public:
  RandomExprGen(uint32_t seed, RandomExprOptions options) : rng_(seed), opt_(options) {}

  Expr floatExpr(int depth = 0);
  Expr intExpr(int depth = 0);
  Expr boolExpr(int depth = 0);
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng_); }
  std::mt19937& rng() { return rng_; }

 private:
  bool leaf(int depth) { return depth >= opt_.maxDepth || pick(4) == 0; }
  /// An index into the rank-1 test tensors, kept in range [0, tensorLength).
  Expr index(int depth) { return intExpr(depth + 1) % opt_.tensorLength; }

  std::mt19937 rng_;
  RandomExprOptions opt_;
};

}  // namespace flexjit::testing
