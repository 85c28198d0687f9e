// The differential fuzzer's generator: random well-typed score_mods and mask_mods over every DSL op, with
// captured tensors (every dtype, ranks 1-3, random shapes and strides, stride-0 broadcasts, nested indexing
// t[u[q]], out-of-bounds indices), captured scalars, integer corner cases (INT_MIN // -1, x // 0, negative
// // and %, wrap-around, saturating casts) and float specials (inf, -inf, NaN, -0.0, subnormals) in
// constants, scalars and tensor data.
//
// Everything is deterministic from one 64-bit seed (a portable generator, no <random> distributions), so a
// failing case replays from the seed the fuzzer prints (docs/testing.md).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsl/Capture.h"
#include "dsl/Mods.h"

namespace flexjit::testing {

/// splitmix64: a small, portable, well-mixed generator.
class FuzzRng {
 public:
  explicit FuzzRng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n).
  int pick(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  /// True with probability num / den.
  bool chance(int num, int den) { return pick(den) < num; }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1p-53; }

 private:
  uint64_t state_;
};

/// A captured tensor with its own storage (elements at the offsets its strides give).
struct FuzzTensor {
  DType dtype;
  std::vector<int64_t> shape, strides;
  std::vector<unsigned char> bytes;  ///< never empty, so the data pointer is never null
  std::unique_ptr<CapturedTensor> capture;

  int rank() const { return static_cast<int>(shape.size()); }
  int64_t numel() const;
  /// Storage elements (the buffer may hold padding between strided elements).
  int64_t storageElements() const { return static_cast<int64_t>(bytes.size()) / dtypeSize(dtype); }
  /// Float32 storage element `k` (F32 tensors only); finite differences perturb these.
  float& f32(int64_t k) { return reinterpret_cast<float*>(bytes.data())[k]; }
  std::string describe() const;
};

/// Everything one case's mods may read besides their parameters.
struct FuzzEnv {
  std::vector<std::unique_ptr<FuzzTensor>> tensors;
  std::vector<CapturedScalar> scalars;
  std::string describe() const;
};

/// One case: a score_mod and a mask_mod (and at times a sink_mod and a prob_mod) over a shared environment,
/// compiled together as one variant.
struct FuzzCase {
  uint64_t seed = 0;
  std::shared_ptr<FuzzEnv> env;
  std::optional<ScoreMod> score;
  std::optional<MaskMod> mask;
  /// Some cases also have a sink_mod and / or a prob_mod (same captures), compiled into the same variant.
  std::optional<SinkMod> sink;
  std::optional<ProbMod> prob;
  ExtraHooks extra() const { return ExtraHooks{sink, prob}; }
  /// The score_mod was built from ops that are smooth almost everywhere, with guarded domains and float
  /// captures without huge values: its derivatives are checked against finite differences. (Elsewhere floor,
  /// casts and % of huge values act as the identity on floats, which finite differences cannot tell from a
  /// real slope.)
  bool smoothScore = false;
  std::string describe() const;
};

struct FuzzOptions {
  int maxDepth = 4;
  int maxTensors = 3;
  int maxScalars = 3;
};

/// The case of `seed` (the same seed always gives the same case).
FuzzCase makeFuzzCase(uint64_t seed, const FuzzOptions& options = {});

/// The seed of case `index` of a run with base seed `base`: case k of base S is case 0 of base S + k, so
/// FLEXJIT_FUZZ_SEED=<printed seed> FLEXJIT_FUZZ_CASES=1 replays exactly one failing case.
inline uint64_t fuzzCaseSeed(uint64_t base, uint64_t index) { return base + index; }

}  // namespace flexjit::testing
