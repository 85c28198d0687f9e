// The differential fuzzer's random mods through the GPU kernels (skipped without a GPU): 500 cases
// (FuzzGen.h: score_mod, mask_mod, sometimes a sink_mod and a prob_mod, captured tensors of every dtype)
// through both forward families against the float64 reference, by the FA3 rule on the rows that are not NaN;
// the NaN rows (a NaN score, a NaN sink) must be the reference's. FLEXJIT_FUZZ_GPU_CASES changes the count,
// FLEXJIT_FUZZ_GPU_SEEDS=s1,s2 replays the cases of those seeds. A case whose mods mean different things in
// float32 (the kernels) and float64 (the reference) is skipped and counted (float32Diverges).
//
// The run is compile-bound (two NVRTC programs per case). FLEXJIT_FUZZ_GPU_PRECOMPILE=90 on a machine
// without a GPU builds the kernels the cases would run on an sm_90 GPU into the disk cache instead
// (FLEXJIT_CACHE_DIR), the same sources and keys, so that a cache carried to the GPU machine
// (tools/make_dist.sh, FLEXJIT_DIST_KCACHE) lets the device run kernels instead of compiling them.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <utility>
#include <vector>

#include "AttentionTestUtil.h"
#include "FuzzGen.h"
#include "codegen/Variant.h"
#include "dsl/Interpreter.h"
#include "runtime/Captures.h"
#include "runtime/KernelBuild.h"
#include "runtime/Planner.h"
#include "runtime/Reference.h"
#include "runtime_test_support.h"

using namespace flexjit;
using namespace flexjit::testing;

namespace {

constexpr int64_t kB = 1, kH = 2, kLq = 67, kLkv = 131, kD = 64;

/// Binds every captured tensor of a case to a copy of its storage on `device` (the CPU: its own bytes).
struct PlacedCaptures {
  std::vector<Tensor> copies;
  void place(FuzzEnv& env, Device device) {
    copies.clear();
    for (auto& t : env.tensors) {
      if (device.kind == DeviceKind::CPU) {
        t->capture->bind(TensorView(t->bytes.data(), t->dtype, device, t->shape, t->strides));
        continue;
      }
      copies.push_back(Tensor::fromHost(t->bytes.data(), t->dtype, {t->storageElements()}, device));
      t->capture->bind(TensorView(copies.back().data(), t->dtype, device, t->shape, t->strides));
    }
  }
};

int fuzzGpuCases() {
  const char* env = std::getenv("FLEXJIT_FUZZ_GPU_CASES");
  return env ? std::atoi(env) : 500;
}

/// The case seeds chunk `chunk` checks: case n of the run (seed 20261202 + n) for n = chunk, chunk +
/// kChunks, ...; or, with FLEXJIT_FUZZ_GPU_SEEDS=s1,s2,... (seeds a failure printed), exactly those, in
/// chunk 0.
std::vector<uint64_t> chunkSeeds(int chunk, int chunks) {
  std::vector<uint64_t> seeds;
  if (const char* env = std::getenv("FLEXJIT_FUZZ_GPU_SEEDS")) {
    if (chunk != 0) return seeds;
    for (const char* p = env; *p;) {
      char* end = nullptr;
      seeds.push_back(std::strtoull(p, &end, 10));
      if (end == p) break;
      p = *end == ',' ? end + 1 : end;
    }
    return seeds;
  }
  for (int n = chunk; n < fuzzGpuCases(); n += chunks) seeds.push_back(20261202 + static_cast<uint64_t>(n));
  return seeds;
}

/// finite, +inf, -inf or NaN.
int valueClass(double x) { return std::isnan(x) ? 3 : x == INFINITY ? 1 : x == -INFINITY ? 2 : 0; }

/// Where the mods of a case mean different things in float32 (the kernels) and float64 (the reference
/// evaluates them in float64): a value finite in one and not in the other (exp2(130) overflows float32
/// only), two finite values further apart than bf16 rounding (x - float(x) of a large x), or a row whose
/// float32 scores are shifted against the float64 ones by amounts that differ by more than kRowSpread
/// among the positions that carry weight (a softmax sees only the differences inside a row: scores near
/// 2.7e8 are float32 multiples of 32, so an O(1) term of the mod vanishes in float32; seed 20261696). The reference
/// cannot judge the kernel there, so such a case is counted and skipped, not failed. `raw` holds the
/// reference's own scores (rawScores; rounded to float32 for the float32 evaluation); a prob_mod is probed
/// at p from 0 through tiny values (1 / p overflows float32 only) to 1. Returns a description of the first
/// such position, or "".
/// How far float32 rounding may move the scores of one row against each other (natural-log units: 2% on a
/// probability) before the case is out of the reference's reach.
constexpr double kRowSpread = 0.02;
/// Scores this far below the row's largest carry a weight under e^-30 and do not count.
constexpr double kNegligibleBelowMax = 30.0;

/// max - min of the float32 - float64 differences over the positions of a row within kNegligibleBelowMax
/// of its largest float64 score (pairs of (score, difference)); 0 for an empty row.
double weightedShiftSpread(const std::vector<std::pair<double, double>>& row) {
  double top = -INFINITY;
  for (const auto& [score, diff] : row) top = std::max(top, score);
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& [score, diff] : row)
    if (score >= top - kNegligibleBelowMax) lo = std::min(lo, diff), hi = std::max(hi, diff);
  return hi >= lo ? hi - lo : 0.0;
}

std::string float32Diverges(const FuzzCase& c, const std::vector<double>& raw) {
  auto differ = [](double f32, double f64) {
    const int a = valueClass(f32), b = valueClass(f64);
    return a != b || (a == 0 && std::fabs(f32 - f64) > 4e-3 * std::max(1.0, std::fabs(f64)));
  };
  Program score(*c.score);
  score.bindCaptures();
  std::optional<Program> sink, prob;
  if (c.sink) sink.emplace(*c.sink), sink->bindCaptures();
  if (c.prob) prob.emplace(*c.prob), prob->bindCaptures();
  for (int32_t b = 0; b < kB; ++b)
    for (int32_t h = 0; h < kH; ++h)
      for (int32_t i = 0; i < kLq; ++i) {
        if (sink) {
          const Position at{b, h, i, 0};
          const float f32 = sink->scoreF32(0.0f, at);
          const double f64 = sink->scoreF64(0.0, at);
          if (differ(f32, f64)) return fmt::format("sink at b{} h{} q{}: {} (float32) vs {} (float64)", b, h, i, f32, f64);
        }
        std::vector<std::pair<double, double>> row;  // (float64 score, float32 - float64) of finite scores
        for (int32_t j = 0; j < kLkv; ++j) {
          const double x = raw[static_cast<size_t>(((b * kH + h) * kLq + i) * kLkv + j)];
          const Position at{b, h, i, j, kLkv};
          const float f32 = score.scoreF32(static_cast<float>(x), at);
          const double f64 = score.scoreF64(x, at);
          if (differ(f32, f64))
            return fmt::format("score at b{} h{} q{} kv{}: {} (float32) vs {} (float64)", b, h, i, j, f32, f64);
          if (valueClass(f64) == 0) row.emplace_back(f64, static_cast<double>(f32) - f64);
          if (prob)
            for (double pr : {0.0, 1e-42, 1e-30, 1e-8, 1e-3, 0.25, 0.5, 1.0})
              if (differ(prob->scoreF32(static_cast<float>(pr), at), prob->scoreF64(pr, at)))
                return fmt::format("prob_mod at b{} h{} q{} kv{} p {}", b, h, i, j, pr);
        }
        if (const double spread = weightedShiftSpread(row); spread > kRowSpread)
          return fmt::format("scores of row b{} h{} q{}: float32 rounding moves them against each other by {}", b, h,
                             i, spread);
      }
  return "";
}

/// scale * q . k in float64 for every (b, h, q, kv), [kB, kH, kLq, kLkv]: the raw scores the reference's
/// score_mod sees (the same for every case).
std::vector<double> rawScores(const Tensor& q, const Tensor& k, double scale) {
  const std::vector<double> qd = asDoubles(q), kd = asDoubles(k);
  std::vector<double> raw(static_cast<size_t>(kB * kH * kLq * kLkv));
  for (int64_t bh = 0; bh < kB * kH; ++bh)
    for (int64_t i = 0; i < kLq; ++i)
      for (int64_t j = 0; j < kLkv; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < kD; ++d)
          dot += qd[static_cast<size_t>((bh * kLq + i) * kD + d)] * kd[static_cast<size_t>((bh * kLkv + j) * kD + d)];
        raw[static_cast<size_t>((bh * kLq + i) * kLkv + j)] = scale * dot;
      }
  return raw;
}

// The cases are dealt to kChunks tests (case n to chunk n % kChunks), so that gtest sharding spreads the
// kernel compiles over processes. The run is compile-bound: the kernels inline each mod once per
// accumulator element of every pass, and cases with a prob_mod (three passes) and costly ops (nested int64
// loads, tan) took 30-110 s to build on the development machine, about 18 s per case on average, so 500
// cases are about 9000 CPU-seconds of NVRTC. On the H200 machine (16 cores) one device call ran 16 chunks
// of 31 cases in parallel and only one finished within 470 s: 32 chunks of about 16 cases take two calls
// (filters Chunks/DifferentialFuzzGpu.*/0 .. /15, then /16 .. /31), each under the call's limit.
constexpr int kChunks = 32;

class DifferentialFuzzGpu : public ::testing::TestWithParam<int> {};

}  // namespace

namespace {

/// The run's q, k, v (host) and the reference's raw scores of them: the same for every case.
struct FuzzInputs {
  Tensor q = randomTensor(DType::BF16, {kB, kH, kLq, kD}, Device::cpu(), 1);
  Tensor k = randomTensor(DType::BF16, {kB, kH, kLkv, kD}, Device::cpu(), 2);
  Tensor v = randomTensor(DType::BF16, {kB, kH, kLkv, kD}, Device::cpu(), 3);
  std::vector<double> raw = rawScores(q, k, checkAttentionInputs(q.view(), k.view(), v.view(), nullptr, {}).scale);
};

/// FLEXJIT_FUZZ_GPU_PRECOMPILE's arch (90 for sm_90), or 0.
int precompileArch() {
  const char* env = std::getenv("FLEXJIT_FUZZ_GPU_PRECOMPILE");
  return env ? std::atoi(env) : 0;
}

/// Builds the two forward kernels of each of this chunk's cases as the GPU run would plan them on a GPU of
/// compute capability arch / 10 . arch % 10 (both families, the planner's inputs as flex_attention fills
/// them for these shapes), without a GPU.
void precompileChunk(int chunk, int arch) {
  const FuzzInputs in;
  int built = 0;
  for (uint64_t seed : chunkSeeds(chunk, kChunks)) {
    FuzzCase c = makeFuzzCase(seed);
    PlacedCaptures placed;
    placed.place(*c.env, Device::cpu());
    if (!float32Diverges(c, in.raw).empty()) continue;
    const auto start = std::chrono::steady_clock::now();
    std::shared_ptr<const Variant> variant = cachedVariant(*c.score, *c.mask, false, c.extra());
    for (const char* family : {"", "family=80"}) {
      ScopedEnv env("FLEXJIT_FWD_CONFIG", std::string(family));
      ForwardProblem p;
      p.headDim = p.headDimV = static_cast<int>(kD);
      p.archMajor = arch / 10;
      p.archMinor = arch % 10;
      describeVariant(p, *variant);
      p.batch = static_cast<int>(kB);
      p.headsQ = p.headsKV = static_cast<int>(kH);
      p.lenQ = static_cast<int>(kLq);
      p.lenKV = static_cast<int>(kLkv);
      p.probDelta = false;  // the GPU run saves no backward state
      forwardKernel(*variant, planForward(p).config, variantTag(*c.score, *c.mask));
      ++built;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The slow compiles are what makes the device run compile-bound: name them.
    if (seconds > 10)
      std::printf("[ fuzz gpu ] case %llu took %.1f s to build\n%s\n", static_cast<unsigned long long>(seed), seconds,
                  c.describe().c_str());
  }
  std::printf("[ fuzz gpu ] chunk %d: %d kernels built for sm_%d into the disk cache\n", chunk, built, arch);
}

}  // namespace

TEST_P(DifferentialFuzzGpu, RandomModsThroughBothFamiliesMatchTheReference) {
  if (!haveGpu()) {
    if (const int arch = precompileArch()) return precompileChunk(GetParam(), arch);
    GTEST_SKIP() << "no CUDA GPU";
  }
  const Device gpu = Device::cuda(0);
  const FuzzInputs in;
  const Tensor &qc = in.q, &kc = in.k, &vc = in.v;
  const std::vector<double>& raw = in.raw;
  Tensor q = qc.to(gpu), k = kc.to(gpu), v = vc.to(gpu);
  int checked = 0, nanRows = 0, failures = 0, diverging = 0;
  for (uint64_t seed : chunkSeeds(GetParam(), kChunks)) {
    if (failures >= 8) break;
    FuzzCase c = makeFuzzCase(seed);
    AttentionOptions options;
    options.sink = c.sink;
    options.prob = c.prob;
    PlacedCaptures placed;
    placed.place(*c.env, Device::cpu());
    BlockMask cpuMask = createBlockMask(*c.mask, kB, kH, kLq, kLkv, Device::cpu());
    const AttentionShape s = checkAttentionInputs(qc.view(), kc.view(), vc.view(), &cpuMask, options);
    if (const std::string where = float32Diverges(c, raw); !where.empty()) {
      ++diverging;
      std::printf("[ fuzz gpu ] case %llu skipped: float32 and float64 disagree (%s)\n",
                  static_cast<unsigned long long>(c.seed), where.c_str());
      continue;
    }
    Tensor ro = Tensor::empty(DType::F32, {kB, kH, kLq, kD}, Device::cpu()), rl = Tensor::empty(DType::F32, {kB, kH, kLq}, Device::cpu());
    Tensor lo = Tensor::empty(DType::BF16, {kB, kH, kLq, kD}, Device::cpu()), ll = Tensor::empty(DType::F32, {kB, kH, kLq}, Device::cpu());
    referenceForward(qc.view(), kc.view(), vc.view(), *c.score, &cpuMask, s, ForwardOutputs{ro.view(), rl.view()},
                     c.extra());
    referenceForward(qc.view(), kc.view(), vc.view(), *c.score, &cpuMask, s, ForwardOutputs{lo.view(), ll.view()},
                     c.extra(), DType::BF16);
    const std::vector<double> refOut = asDoubles(ro), refLse = asDoubles(rl), lowOut = asDoubles(lo);
    for (const char* family : {"", "family=80"}) {
      ScopedEnv env("FLEXJIT_FWD_CONFIG", std::string(family));
      placed.place(*c.env, gpu);
      BlockMask gpuMask = createBlockMask(*c.mask, kB, kH, kLq, kLkv, gpu);
      AttentionResult r;
      try {
        r = flex_attention(q.view(), k.view(), v.view(), *c.score, &gpuMask, options);
      } catch (const Error& e) {
        ADD_FAILURE() << "case " << c.seed << " (" << (*family ? family : "planned") << "): " << e.what() << "\n" << c.describe();
        ++failures;
        continue;
      }
      const std::vector<double> out = asDoubles(r.out), lse = asDoubles(r.lse);
      double err = 0, lowErr = 0;
      std::string nanMismatch, nonFinite, worst;
      for (int64_t row = 0; row < kB * kH * kLq; ++row) {
        const bool refNaN = std::isnan(refLse[row]);
        nanRows += refNaN;
        if (std::isnan(lse[row]) != refNaN && nanMismatch.empty())
          nanMismatch = fmt::format(", NaN rows differ (first: h{} q{}, LSE {} here, {} in the reference)",
                                    row / kLq % kH, row % kLq, lse[row], refLse[row]);
        if (refNaN) continue;
        for (int64_t d = 0; d < kD; ++d) {
          const size_t i = static_cast<size_t>(row * kD + d);
          // A prob_mod can make single outputs NaN or infinite under a finite LSE (prob_mod(p) = NaN for
          // some p): those must be the reference's exactly (NaN in, NaN out); the finite ones are judged by
          // the FA3 rule.
          if (!std::isfinite(refOut[i])) {
            if (valueClass(out[i]) != valueClass(refOut[i]) && nonFinite.empty())
              nonFinite = fmt::format(", output h{} q{} d{} is {} here, {} in the reference", row / kLq % kH,
                                      row % kLq, d, out[i], refOut[i]);
            continue;
          }
          const double e = std::isfinite(out[i]) ? std::fabs(out[i] - refOut[i]) : INFINITY;
          if (e > err) err = e, worst = fmt::format(" (worst: h{} q{} d{}: {} here, {} in the reference)",
                                                    row / kLq % kH, row % kLq, d, out[i], refOut[i]);
          lowErr = std::max(lowErr, std::fabs(lowOut[i] - refOut[i]));
        }
      }
      ++checked;
      if (!nanMismatch.empty() || !nonFinite.empty() || !(err <= 2 * lowErr + 2e-3)) {
        ADD_FAILURE() << fmt::format("case {} ({}): out error {:.3g}{} (low-precision reference {:.3g}){}{}\n{}",
                                     c.seed, *family ? family : "planned", err, worst, lowErr, nanMismatch, nonFinite,
                                     c.describe());
        ++failures;
      }
    }
    placed.place(*c.env, Device::cpu());
  }
  std::printf("[ fuzz gpu ] chunk %d: %d kernel runs checked (%d NaN rows matched), %d cases skipped as float32 / "
              "float64 divergent\n", GetParam(), checked, nanRows, diverging);
}

INSTANTIATE_TEST_SUITE_P(Chunks, DifferentialFuzzGpu, ::testing::Range(0, kChunks));
