// The differential fuzzer's oracles (see FuzzOracles.h): batches, host compilation and the per-case checks.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <set>

#include "FuzzOracles.h"
#include "dsl/Error.h"
#include "dsl/Interpreter.h"

namespace flexjit::testing {

namespace {

/// Positions and boxes checked per case; enough that a run of 10,000 cases stays within minutes.
constexpr int kValuePoints = 24;
constexpr int kBoxes = 4;
constexpr int kGradPoints = 3;
/// Largest box (positions) an interval check enumerates.
constexpr int kMaxBoxVolume = 48;
/// How many failures are printed in full.
constexpr size_t kShownFailures = 8;

bool sameBits(float a, float b) { return (a != a && b != b) || std::memcmp(&a, &b, sizeof a) == 0; }

std::string show(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return fmt::format("{} (0x{:08x})", f, u);
}

std::string showPos(const Position& p) { return fmt::format("b={} h={} q={} kv={}", p.b, p.h, p.q, p.kv); }

/// Scores tried first at every case: the specials of float32.
constexpr float kSpecialScores[] = {0.0f,   -0.0f, 1.0f,     -1.0f,     0.5f, 3.0f,   -7.25f,  40.0f,
                                    1e-40f, 3e38f, INFINITY, -INFINITY, NAN,  88.75f, -103.5f, 1e-3f};

/// Positions: mostly what kernels pass (small b and h, q and kv up to a few hundred), sometimes corners
/// (large and, for the value checks only, negative indices: the semantics are defined for every int).
Position randomPosition(FuzzRng& rng, bool allowNegative) {
  Position p{rng.pick(3), rng.pick(5), rng.pick(300), rng.pick(300)};
  if (rng.chance(1, 6)) {
    const int32_t corners[] = {0, 1, 127, 128, 1 << 20, INT32_MAX, -1, -300, INT32_MIN};
    const int n = allowNegative ? 9 : 6;
    (rng.chance(1, 2) ? p.q : p.kv) = corners[rng.pick(n)];
  }
  return p;
}

float randomScore(FuzzRng& rng) {
  return rng.chance(1, 4) ? static_cast<float>(std::ldexp(rng.uniform(-1, 1), rng.pick(60) - 30))
                          : static_cast<float>(rng.uniform(-5, 5));
}

/// Whether `v` lies in `r` (NaN needs r.nan; -0.0 and 0.0 are the same value here).
bool contains(const fj::IvFloat& r, float v) { return v != v ? r.nan : (!fj::ivEmpty(r) && r.lo <= v && v <= r.hi); }

std::string showIv(const fj::IvFloat& r) { return fmt::format("[{}, {}]{}", r.lo, r.hi, r.nan ? " or NaN" : ""); }

}  // namespace

std::string FuzzStats::summary() const {
  return fmt::format(
      "{} variants ({} score_mods + {} mask_mods + {} sink_mods + {} prob_mods = {} random mods): {} values x3 stages, {} split values ({} "
      "score_mods and {} masks split), {} interval boxes ({} values inside), {} gradients bit for bit, {} d/dscore "
      "and {} tensor-gradient finite differences, {} gradient writes inside their windows; facts: {} noop masks, "
      "{} noop score_mods, {} never -inf",
      cases, cases, cases, sinks, probs, 2 * cases + sinks + probs, values, split, splitScores, splitMasks, boxes, intervalValues, gradientBits,
      gradients, tensorGradients, gradWrites, maskNoops, scoreNoops, neverNegInf);
}

void FuzzFailures::add(const FuzzCase& c, const std::string& oracle, const std::string& detail) {
  if (!first_) first_.emplace(c, oracle);
  if (++count_ <= static_cast<int>(kShownFailures))
    messages_.push_back(fmt::format("[{}] {}\n{}", oracle, detail, c.describe()));
}

std::string FuzzFailures::report() const {
  std::string s;
  for (const std::string& m : messages_) s += m + "\n";
  if (count_ > static_cast<int>(messages_.size())) s += fmt::format("... and {} more\n", count_ - messages_.size());
  return s;
}

namespace {

/// The text of the function whose definition starts with `head` ("FJ_HD float sink_mod("), or "".
std::string functionText(const std::string& prelude, const std::string& head) {
  const size_t start = prelude.find(head);
  const size_t end = start == std::string::npos ? start : prelude.find("\n}\n", start);
  return end == std::string::npos ? "" : "\n" + prelude.substr(start, end + 3 - start);
}

/// The imported-IR variant is only run for its scalar hooks: its prelude is cut after mask_mod (the hooks
/// come first, see codegen/Variant.cpp), which halves what the host compiler has to build; the sink_mod
/// and the prob_mod (which come later) are kept.
std::string scalarHooksOnly(const std::string& prelude) {
  const size_t mask = prelude.find("FJ_HD bool mask_mod(");
  const size_t end = mask == std::string::npos ? mask : prelude.find("\n}\n", mask);
  if (end == std::string::npos) return prelude;
  return prelude.substr(0, end + 3) + functionText(prelude, "FJ_HD float sink_mod(") +
         functionText(prelude, "FJ_HD float prob_mod(") + "}  // namespace fjv\n";
}

}  // namespace

FuzzBatch lowerFuzzCases(std::vector<FuzzCase> cases, FuzzFailures& failures) {
  FuzzBatch batch;
  for (FuzzCase& c : cases) {
    try {
      Variant simplified = generateVariant(*c.score, *c.mask, VariantOptions{}, c.extra());
      Variant imported = generateVariant(*c.score, *c.mask, VariantOptions{/*withGradient=*/false, /*simplify=*/false},
                                         c.extra());
      imported.prelude = scalarHooksOnly(imported.prelude);
      batch.simplified.push_back(std::move(simplified));
      batch.imported.push_back(std::move(imported));
      batch.cases.push_back(std::move(c));
    } catch (const Error& e) {
      failures.add(c, "lowering", e.what());
    }
  }
  return batch;
}

FuzzBatch prepareFuzzBatch(uint64_t base, uint64_t first, int count, FuzzFailures& failures) {
  std::vector<FuzzCase> cases;
  for (int k = 0; k < count; ++k) cases.push_back(makeFuzzCase(fuzzCaseSeed(base, first + k)));
  return lowerFuzzCases(std::move(cases), failures);
}

bool FuzzBatch::ok() const {
  for (const auto* list : {&libs, &importedLibs})
    for (const auto& lib : *list)
      if (!lib->ok()) return false;
  return true;
}

void compileFuzzBatch(FuzzBatch& batch, const std::string& tag, int parts) {
  batch.partSize = std::max<size_t>(1, (batch.cases.size() + parts - 1) / parts);
  std::vector<std::future<std::unique_ptr<HostLibrary>>> simplified, imported;
  for (size_t first = 0; first < batch.cases.size(); first += batch.partSize) {
    auto build = [&batch, first, tag](const std::vector<Variant>& all, const std::string& name) {
      const size_t end = std::min(all.size(), first + batch.partSize);
      const std::vector<Variant> part(all.begin() + first, all.begin() + end);
      return std::make_unique<HostLibrary>(part, fmt::format("{}-{}-{}", tag, name, first), "-O0");
    };
    simplified.push_back(std::async(std::launch::async, build, std::cref(batch.simplified), "simplified"));
    imported.push_back(std::async(std::launch::async, build, std::cref(batch.imported), "imported"));
  }
  for (auto& f : simplified) batch.libs.push_back(f.get());
  for (auto& f : imported) batch.importedLibs.push_back(f.get());
}

namespace {

/// One case's programs, generated functions and captures, shared by the checks. Each oracle reports at
/// most one failure per case (the first; the rest are usually the same bug).
struct CaseContext {
  CaseContext(const FuzzBatch& batch, size_t k, FuzzStats& stats, FuzzFailures& failures)
      : c(batch.cases[k]),
        v(batch.simplified[k]),
        vi(batch.imported[k]),
        cap(hostCaptures(v)),
        score(*c.score),
        mask(*c.mask),
        rng(c.seed ^ 0x5eed),
        stats(stats),
        failures(failures) {
    score.bindCaptures();
    mask.bindCaptures();
    const HostLibrary& lib = *batch.libs[k / batch.partSize];
    const HostLibrary& importedLib = *batch.importedLibs[k / batch.partSize];
    const size_t i = k % batch.partSize;  // the case's index in its part's libraries
    scoreFn = lib.get<ScoreFn>("score", i);
    scoreImp = importedLib.get<ScoreFn>("score", i);
    scoreSplit = lib.get<ScoreFn>("score_split", i);
    maskFn = lib.get<MaskFn>("mask", i);
    maskImp = importedLib.get<MaskFn>("mask", i);
    maskSplit = lib.get<MaskFn>("mask_split", i);
    maskIv = lib.get<MaskIntervalFn>("mask_interval", i);
    scoreIv = lib.get<ScoreIntervalFn>("score_interval", i);
    grad = lib.get<GradFn>("grad", i);
    gradWrites = lib.get<GradWritesFn>("grad_writes", i);
    gradWindows = lib.get<GradWindowsFn>("grad_windows", i);
    sinkFirst = c.score->tensors().size() + c.mask->tensors().size();
    if (c.sink) {
      sink.emplace(*c.sink);
      sink->bindCaptures();
      sinkFn = lib.get<SinkFn>("sink", i);
      sinkImp = importedLib.get<SinkFn>("sink", i);
      sinkGrad = lib.get<SinkGradFn>("sink_grad", i);
    }
    probFirst = sinkFirst + (c.sink ? c.sink->tensors().size() : 0);
    if (c.prob) {
      prob.emplace(*c.prob);
      prob->bindCaptures();
      probFn = lib.get<ProbFn>("prob", i);
      probImp = importedLib.get<ProbFn>("prob", i);
      probGrad = lib.get<ProbGradFn>("prob_grad", i);
    }
  }
  bool ready() {
    const bool sinkReady = !c.sink || (sinkFn && sinkImp && (sinkGrad != nullptr) == v.facts.sinkHasTensorGrads);
    const bool probReady = !c.prob || (probFn && probImp && probGrad);
    if (scoreFn && scoreImp && maskFn && maskImp && maskIv && scoreIv && grad && sinkReady && probReady) return true;
    fail("symbols", "a generated hook is missing from the host library");
    return false;
  }
  void fail(const std::string& oracle, const std::string& detail) {
    if (reported.insert(oracle).second) failures.add(c, oracle, detail);
  }

  const FuzzCase& c;
  const Variant& v;   ///< simplified: what the kernels run
  const Variant& vi;  ///< the IR as imported
  fj::CaptureArgs cap;
  Program score, mask;
  ScoreFn scoreFn = nullptr, scoreImp = nullptr, scoreSplit = nullptr;
  MaskFn maskFn = nullptr, maskImp = nullptr, maskSplit = nullptr;
  MaskIntervalFn maskIv = nullptr;
  ScoreIntervalFn scoreIv = nullptr;
  GradFn grad = nullptr;
  GradWritesFn gradWrites = nullptr;  ///< only when score_mod_grad writes captured-tensor gradients
  GradWindowsFn gradWindows = nullptr;
  /// The extra hooks, where the case has them; their captures' slots start at sinkFirst / probFirst.
  std::optional<Program> sink, prob;
  size_t sinkFirst = 0, probFirst = 0;
  SinkFn sinkFn = nullptr, sinkImp = nullptr;
  SinkGradFn sinkGrad = nullptr;  ///< only when the sink reads tensors that require a gradient
  ProbFn probFn = nullptr, probImp = nullptr;
  ProbGradFn probGrad = nullptr;
  FuzzRng rng;
  FuzzStats& stats;
  FuzzFailures& failures;
  std::set<std::string> reported;
};

/// Which stage a value disagreement points at.
const char* triage(bool interpreterIsImported, bool importedIsSimplified) {
  if (interpreterIsImported)
    return "simplification changed the result: a folder or rewrite pattern disagrees with dsl/Semantics.h";
  if (importedIsSimplified)
    return "both emitted stages disagree with the interpreter: the emitter (or the interpreter) is wrong";
  return "the interpreter and both emitted stages all differ";
}

bool nonNegative(const Position& p) { return p.b >= 0 && p.h >= 0 && p.q >= 0 && p.kv >= 0; }

void checkScoreFacts(CaseContext& x, const Variant& v, const char* stage, float s, const Position& p, float got) {
  if (!nonNegative(p)) return;  // facts are proven for what kernels pass: b, h, q_idx, kv_idx >= 0
  if (v.facts.scoreIsNoop && !sameBits(got, s))
    x.fail("facts",
           fmt::format("{} IR: kScoreModIsNoop, but score_mod({}) at {} is {}", stage, show(s), showPos(p), show(got)));
  if (!v.facts.scoreCanBeNegInf && std::isfinite(s) && got == -INFINITY)
    x.fail("facts", fmt::format("{} IR: kScoreCanBeNegInf is false, but score_mod({}) at {} is -inf", stage, show(s),
                                showPos(p)));
}

void checkScoreAt(CaseContext& x, float s, const Position& p) {
  const float want = x.score.scoreF32(s, p);
  const float got = x.scoreFn(s, p.b, p.h, p.q, p.kv, &x.cap), imp = x.scoreImp(s, p.b, p.h, p.q, p.kv, &x.cap);
  ++x.stats.values;
  if (!sameBits(want, got) || !sameBits(want, imp))
    x.fail("score values", fmt::format("score_mod at score={} {}: interpreter {}, imported-IR hooks {}, simplified-IR "
                                       "hooks {}: {}",
                                       show(s), showPos(p), show(want), show(imp), show(got),
                                       triage(sameBits(want, imp), sameBits(imp, got))));
  if (x.scoreSplit) {
    const float split = x.scoreSplit(s, p.b, p.h, p.q, p.kv, &x.cap);
    ++x.stats.split;
    if (!sameBits(got, split))
      x.fail("score split", fmt::format("score_mod at score={} {}: {} unsplit, {} split", show(s), showPos(p),
                                        show(got), show(split)));
  }
  checkScoreFacts(x, x.v, "simplified", s, p, got);
  checkScoreFacts(x, x.vi, "imported", s, p, imp);
}

void checkMaskAt(CaseContext& x, const Position& p) {
  const bool want = x.mask.mask(p);
  const bool got = x.maskFn(p.b, p.h, p.q, p.kv, &x.cap), imp = x.maskImp(p.b, p.h, p.q, p.kv, &x.cap);
  ++x.stats.values;
  if (want != got || want != imp)
    x.fail("mask values",
           fmt::format("mask_mod at {}: interpreter {}, imported-IR hooks {}, simplified-IR hooks {}: {}", showPos(p),
                       want, imp, got, triage(want == imp, imp == got)));
  if (x.maskSplit) {
    ++x.stats.split;
    if (x.maskSplit(p.b, p.h, p.q, p.kv, &x.cap) != got)
      x.fail("mask split", fmt::format("mask_mod at {}: {} unsplit, {} split", showPos(p), got, !got));
  }
  for (const Variant* v : {&x.v, &x.vi})
    if (v->facts.maskIsNoop && nonNegative(p) && !(v == &x.v ? got : imp))
      x.fail("facts", fmt::format("{} IR: kMaskModIsNoop, but the mask is false at {}",
                                  v == &x.v ? "simplified" : "imported", showPos(p)));
}

void checkValues(CaseContext& x) {
  constexpr int kSpecials = sizeof kSpecialScores / sizeof kSpecialScores[0];
  for (int t = 0; t < kValuePoints; ++t) {
    const Position p = randomPosition(x.rng, /*allowNegative=*/true);
    checkScoreAt(x, t < kSpecials ? kSpecialScores[t] : randomScore(x.rng), p);
    checkMaskAt(x, p);
  }
}

/// A row's number of visible keys: mostly what kernels pass, sometimes 0 (a fully masked row) or a corner.
int32_t randomVisible(FuzzRng& rng) {
  const int32_t corners[] = {0, 1, 2, INT32_MAX, -1};
  return rng.chance(1, 6) ? corners[rng.pick(5)] : 1 + rng.pick(300);
}

/// A probability: the specials first, then mostly values in [0, 1].
float randomProbability(FuzzRng& rng, int t) {
  constexpr int kSpecials = sizeof kSpecialScores / sizeof kSpecialScores[0];
  return t < kSpecials ? kSpecialScores[t] : static_cast<float>(rng.uniform(0, 1));
}

/// The sink_mod and the prob_mod, where the case has them: the interpreter and both emitted stages agree
/// bit for bit.
void checkExtraHookValues(CaseContext& x) {
  for (int t = 0; t < kValuePoints && (x.sink || x.prob); ++t) {
    Position p = randomPosition(x.rng, /*allowNegative=*/true);
    if (x.sink) {
      const float want = x.sink->scoreF32(0.0f, p), got = x.sinkFn(p.b, p.h, p.q, &x.cap),
                  imp = x.sinkImp(p.b, p.h, p.q, &x.cap);
      ++x.stats.values;
      if (!sameBits(want, got) || !sameBits(want, imp))
        x.fail("sink values", fmt::format("sink_mod at {}: interpreter {}, imported-IR hooks {}, simplified-IR hooks "
                                          "{}: {}", showPos(p), show(want), show(imp), show(got),
                                          triage(sameBits(want, imp), sameBits(imp, got))));
    }
    if (x.prob) {
      p.visible = randomVisible(x.rng);
      const float pr = randomProbability(x.rng, t), want = x.prob->scoreF32(pr, p);
      const float got = x.probFn(pr, p.b, p.h, p.q, p.kv, p.visible, &x.cap),
                  imp = x.probImp(pr, p.b, p.h, p.q, p.kv, p.visible, &x.cap);
      ++x.stats.values;
      if (!sameBits(want, got) || !sameBits(want, imp))
        x.fail("prob values", fmt::format("prob_mod at p={} {} num_visible={}: interpreter {}, imported-IR hooks {}, "
                                          "simplified-IR hooks {}: {}", show(pr), showPos(p), p.visible, show(want),
                                          show(imp), show(got), triage(sameBits(want, imp), sameBits(imp, got))));
    }
  }
}

}  // namespace

namespace {

/// A box of at most kMaxBoxVolume positions, as kernels see them (non-negative), sometimes far out.
Box randomBox(FuzzRng& rng) {
  const long long b0 = rng.pick(3), h0 = rng.pick(5);
  const long long q0 = rng.chance(1, 8) ? (1ll << 20) + rng.pick(9) : rng.pick(300), kv0 = rng.pick(300);
  long long db = rng.chance(1, 4), dh = rng.chance(1, 3) ? rng.pick(3) : 0, dq = rng.pick(8), dkv = rng.pick(8);
  while ((db + 1) * (dh + 1) * (dq + 1) * (dkv + 1) > kMaxBoxVolume) (dq > dkv ? dq : dkv) /= 2;
  return Box{fj::ivInt(b0, b0 + db), fj::ivInt(h0, h0 + dh), fj::ivInt(q0, q0 + dq), fj::ivInt(kv0, kv0 + dkv)};
}

/// A score range with the scores tried inside it: points (specials too), small and wide ranges, with NaN.
fj::IvFloat randomScoreRange(FuzzRng& rng, std::vector<float>& samples) {
  fj::IvFloat r;
  switch (rng.pick(5)) {
    case 0: {
      const float s = kSpecialScores[rng.pick(sizeof kSpecialScores / sizeof kSpecialScores[0])];
      r = s != s ? fj::IvFloat{INFINITY, -INFINITY, true} : fj::ivFloat(s, s);
      break;
    }
    case 1: {
      const float s = randomScore(rng);
      r = fj::ivFloat(s, s);
      break;
    }
    case 2: {
      const float s = randomScore(rng);
      r = fj::ivFloat(s, s + static_cast<float>(rng.uniform(0, 2)));
      break;
    }
    case 3: r = fj::ivFloat(-1e30f, 1e30f, rng.chance(1, 2)); break;
    default: r = rng.chance(1, 2) ? fj::ivFloatFinite() : fj::ivFloatFull(); break;
  }
  samples.clear();
  if (!fj::ivEmpty(r)) {
    samples = {r.lo, r.hi};
    if (std::isfinite(r.hi - r.lo)) samples.push_back(static_cast<float>(rng.uniform(r.lo, r.hi)));
    for (int k = 0; k < 2; ++k) samples.push_back(std::fmin(r.hi, std::fmax(r.lo, randomScore(rng))));
    if (r.lo <= 0 && r.hi >= 0) samples.insert(samples.end(), {0.0f, -0.0f});
  }
  if (r.nan) samples.push_back(NAN);
  return r;
}

template <class F>
void forEachPosition(const Box& box, F&& visit) {
  for (long long b = box.b.lo; b <= box.b.hi; ++b)
    for (long long h = box.h.lo; h <= box.h.hi; ++h)
      for (long long q = box.q.lo; q <= box.q.hi; ++q)
        for (long long kv = box.kv.lo; kv <= box.kv.hi; ++kv) visit(Position{int(b), int(h), int(q), int(kv)});
}

std::string showBox(const Box& b) {
  return fmt::format("b {}..{} h {}..{} q {}..{} kv {}..{}", b.b.lo, b.b.hi, b.h.lo, b.h.hi, b.q.lo, b.q.hi, b.kv.lo,
                     b.kv.hi);
}

void checkMaskBox(CaseContext& x, const Box& box, const long long* xs) {
  int out[2];
  x.maskIv(xs, &x.cap, out);
  const fj::IvBool generated{out[0] != 0, out[1] != 0}, interpreted = x.mask.maskInterval(box);
  forEachPosition(box, [&](const Position& p) {
    const bool m = x.mask.mask(p);
    ++x.stats.intervalValues;
    for (const auto& [iv, what] :
         {std::pair{generated, "generated mask_mod_interval"}, std::pair{interpreted, "interpreter's maskInterval"}})
      if (!(m ? iv.canTrue : iv.canFalse))
        x.fail("mask interval",
               fmt::format("{} over {} says never {}, but the mask is {} at {}", what, showBox(box), m, m, showPos(p)));
  });
}

void checkScoreBox(CaseContext& x, const Box& box, const long long* xs) {
  std::vector<float> samples;
  const fj::IvFloat range = randomScoreRange(x.rng, samples);
  const float in[3] = {range.lo, range.hi, range.nan ? 1.0f : 0.0f};
  float out[3];
  x.scoreIv(xs, in, &x.cap, out);
  const fj::IvFloat generated{out[0], out[1], out[2] != 0}, interpreted = x.score.scoreInterval(box, range);
  forEachPosition(box, [&](const Position& p) {
    for (float s : samples) {
      const float v = x.score.scoreF32(s, p);
      ++x.stats.intervalValues;
      for (const auto& [iv, what] : {std::pair{generated, "generated score_mod_interval"},
                                     std::pair{interpreted, "interpreter's scoreInterval"}})
        if (!contains(iv, v))
          x.fail("score interval", fmt::format("{} over {} and score {} gives {}, but score_mod({}) at {} is {}", what,
                                               showBox(box), showIv(range), showIv(iv), show(s), showPos(p), show(v)));
    }
  });
}

void checkIntervals(CaseContext& x) {
  for (int t = 0; t < kBoxes; ++t) {
    const Box box = randomBox(x.rng);
    const long long xs[8] = {box.b.lo, box.b.hi, box.h.lo, box.h.hi, box.q.lo, box.q.hi, box.kv.lo, box.kv.hi};
    ++x.stats.boxes;
    checkMaskBox(x, box, xs);
    checkScoreBox(x, box, xs);
  }
}

}  // namespace

namespace {

/// Derivative of `f` at x by central differences, or nullopt where `f` does not look smooth there: three
/// steps (h, h / 2 and a "microscope" step of 1e-7 relative, which catches staircases finer than h, such as
/// toInt(x * 1e6)) must agree, and so must the one-sided differences at the microscope step (a kink right
/// at x, abs(score) at score = 1e-40, looks smooth to symmetric steps). x and f(x) must be finite and
/// moderate (beyond 1e4 the float rounding of intermediate values dominates the differences). With
/// `floatSteps` (float32 tensor elements) the steps are the ones actually taken after rounding to float32.
template <class F>
std::optional<double> centralDifference(F&& f, double x, bool floatSteps) {
  constexpr double kModerate = 1e4;
  const double f0 = std::fabs(x) <= kModerate ? f(x) : NAN;
  if (!(std::fabs(f0) <= kModerate)) return std::nullopt;
  auto moved = [&](double step) { return floatSteps ? static_cast<double>(static_cast<float>(x + step)) : x + step; };
  auto slope = [&](double a, double b) { return a == b ? NAN : (f(b) - f(a)) / (b - a); };
  const double scale = std::max(1.0, std::fabs(x)), h = 1e-3 * scale, m = 1e-7 * scale;
  const double d1 = slope(moved(-h), moved(h)), d2 = slope(moved(-h / 2), moved(h / 2));
  const double d3 = slope(moved(-m), moved(m)), right = slope(x, moved(m)), left = slope(moved(-m), x);
  for (double d : {d1, d2, d3, right, left})
    if (!std::isfinite(d)) return std::nullopt;
  auto near = [](double a, double b, double tol) { return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)); };
  if (!near(d1, d2, 1e-4) || !near(d3, d2, 1e-3) || !near(right, d3, 1e-3) || !near(left, d3, 1e-3))
    return std::nullopt;
  return d2;
}

bool close(double got, double want) { return std::fabs(got - want) <= 2e-3 * std::max(1.0, std::fabs(want)); }

/// Whether two float32 gradients are the same number (NaN equals NaN; -0.0 equals 0.0, as gradient
/// buffers start at +0.0).
bool sameGradient(float a, float b) { return (a != a && b != b) || a == b; }

/// Largest derivative (of the float64 reverse mode) checked against finite differences: a slope beyond it
/// on values within centralDifference's 1e4 comes from a feature narrower than its smallest step, such as
/// y / (1.5 + y * y) with y = score * 1e11 near score = 0, where every step sees the tails (slope ~0) and
/// agrees on the wrong derivative.
constexpr double kMaxCheckedSlope = 1e4;

/// A gradient against stable finite differences: score_mod_grad (float32) and the interpreter's float64
/// reverse mode (the CPU reference) must both be close where they are finite (a NaN from the chain rule's
/// 0 * inf is compared bit for bit instead, with the interpreter's float32 pass). Returns whether it checked.
bool checkDifferences(CaseContext& x, const char* oracle, const std::string& what, double generated, double reference,
                      double fd) {
  if (std::fabs(reference) > kMaxCheckedSlope) return false;
  if ((std::isfinite(generated) && !close(generated, fd)) || (std::isfinite(reference) && !close(reference, fd)))
    x.fail(oracle, fmt::format("{}: score_mod_grad {}, interpreter (float64) {}, finite differences {}", what,
                               generated, reference, fd));
  return true;
}

/// Contiguous float32 gradient buffers for one hook's tensors that require one (capture slots
/// [first, first + count): the score_mod's come first, then the mask_mod's, the sink_mod's and the prob_mod's).
struct GradBuffers {
  std::vector<std::vector<float>> data;  ///< by capture slot; empty outside the hook's slots
  fj::GradArgs args{};
  GradBuffers(const Variant& v, size_t first, size_t count) : data(v.captures.tensors.size()) {
    for (size_t j = first; j < first + count; ++j) {
      const auto& t = v.captures.tensors[j];
      if (!t->requiresGrad) continue;
      const std::vector<int64_t> strides = TensorView::contiguousStrides(t->view->shape);
      data[j].assign(static_cast<size_t>(t->view->numel()), 0.0f);
      args.grad[j] = data[j].data();
      for (int d = 0; d < t->rank; ++d) args.stride[j][d] = strides[d];
    }
  }
};

/// Storage element of row-major element `linear` of `t` (broadcast elements share one).
int64_t storageOffset(const FuzzTensor& t, int64_t linear) {
  int64_t off = 0;
  for (int d = t.rank(); d-- > 0;) {
    off += (linear % t.shape[d]) * t.strides[d];
    linear /= t.shape[d];
  }
  return off;
}

FuzzTensor* fuzzTensorOf(const FuzzCase& c, const std::shared_ptr<TensorCapture>& capture) {
  for (auto& t : c.env->tensors)
    if (t->capture->impl() == capture) return t.get();
  return nullptr;
}

/// The interpreter's contributions to one tensor's gradient summed per row-major element in float32, in
/// their order from +0.0, as score_mod_grad adds them into a buffer.
std::map<int64_t, float> elementSums(const std::vector<std::pair<int64_t, double>>& contributions) {
  std::map<int64_t, float> sums;
  for (const auto& [linear, value] : contributions) sums[linear] += static_cast<float>(value);
  return sums;
}

/// Captured-tensor gradients of one hook (its slots start at `first`) against the interpreter's float32
/// pass, element by element, bit for bit.
void checkTensorGradientBits(CaseContext& x, const char* oracle, const std::string& at, const GradBuffers& g,
                             const ScoreGrad& f32, size_t first) {
  for (size_t j = first; j < g.data.size(); ++j) {
    if (g.data[j].empty()) continue;
    std::map<int64_t, float> want = elementSums(f32.tensorGrads[j - first]);
    for (size_t e = 0; e < g.data[j].size(); ++e)
      if (g.data[j][e] != 0.0f) want.emplace(static_cast<int64_t>(e), 0.0f);
    for (const auto& [e, value] : want) {
      ++x.stats.gradientBits;
      if (!sameGradient(g.data[j][e], value))
        x.fail(oracle, fmt::format("d/d{}[{}] {}: generated gradient {}, interpreter (float32) {}",
                                            x.v.captures.tensors[j]->name, e, at, show(g.data[j][e]), show(value)));
    }
  }
}

/// Captured-tensor gradients at (s, p) against finite differences on their storage elements (broadcast
/// elements share one): the elements either side writes, and two more at random (which must get nothing).
void checkTensorGradientDifferences(CaseContext& x, float s, const Position& p, const GradBuffers& g,
                                    const ScoreGrad& f64) {
  // At a huge score (a special value such as 3e38) a tensor element's share of score + f(t) is absorbed by the
  // rounding, even in float64: the differences see 0 where the chain rule sees cos(...) * f'(t). As for
  // d/dscore, only moderate points are differenced.
  if (!(std::fabs(s) <= 1e4f)) return;
  for (size_t j = 0; j < g.data.size(); ++j) {
    if (g.data[j].empty()) continue;
    FuzzTensor* t = fuzzTensorOf(x.c, x.v.captures.tensors[j]);
    std::map<int64_t, double> generated, interpreted;
    for (size_t e = 0; e < g.data[j].size(); ++e)
      if (g.data[j][e] != 0.0f) generated[storageOffset(*t, static_cast<int64_t>(e))] += g.data[j][e];
    for (const auto& [linear, value] : f64.tensorGrads[j]) interpreted[storageOffset(*t, linear)] += value;
    std::set<int64_t> elements;
    for (const auto& m : {generated, interpreted})
      for (const auto& [off, value] : m) elements.insert(off);
    for (int k = 0; k < 2; ++k) elements.insert(storageOffset(*t, x.rng.pick(static_cast<int>(g.data[j].size()))));
    for (int64_t off : elements) {
      float& element = t->f32(off);
      const float saved = element;
      auto f = [&](double v) {
        element = static_cast<float>(v);
        const double r = x.score.scoreF64(s, p);
        element = saved;
        return r;
      };
      const std::optional<double> fd = centralDifference(f, saved, /*floatSteps=*/true);
      if (!fd) continue;
      x.stats.tensorGradients += checkDifferences(
          x, "tensor gradient",
          fmt::format("d/d{}[storage {}] at score={} {}", t->capture->name(), off, show(s), showPos(p)),
          generated[off], interpreted[off], *fd);
    }
  }
}

/// score_mod_grad at a few points: bit for bit against the interpreter's float32 reverse mode (same rules,
/// same order), and, for smooth mods, against finite differences of the float64 interpreter.
void checkGradients(CaseContext& x) {
  for (int t = 0; t < kGradPoints; ++t) {
    const Position p = randomPosition(x.rng, /*allowNegative=*/false);
    const float s = t == 0 ? kSpecialScores[x.rng.pick(sizeof kSpecialScores / sizeof kSpecialScores[0])]
                           : static_cast<float>(x.rng.uniform(-3, 3));
    const std::string at = fmt::format("at score={} {}", show(s), showPos(p));
    GradBuffers g(x.v, 0, x.c.score->tensors().size());
    const float dscore = x.grad(s, p.b, p.h, p.q, p.kv, 1.0f, &x.cap, &g.args);
    const ScoreGrad f32 = x.score.scoreGradF32(s, p, 1.0f);
    ++x.stats.gradientBits;
    if (!sameGradient(dscore, static_cast<float>(f32.dscore)))
      x.fail("gradient bits", fmt::format("d/dscore {}: score_mod_grad {}, interpreter (float32) {}", at, show(dscore),
                                          show(static_cast<float>(f32.dscore))));
    checkTensorGradientBits(x, "gradient bits", at, g, f32, 0);
    if (!x.c.smoothScore) continue;
    // Where float32 and float64 evaluate the mod to different values (a branch taken on a float32
    // underflow: where(0 >= sigmoid(score), ...) at score = -103.5), the float64 differences describe
    // another function than the float32 gradient does: nothing to compare.
    const double v32 = x.score.scoreF32(s, p), v64 = x.score.scoreF64(s, p);
    if (!(std::fabs(v32 - v64) <= 1e-3 * std::max(1.0, std::fabs(v64)))) continue;
    const ScoreGrad f64 = x.score.scoreGrad(s, p, 1.0);
    if (auto fd = centralDifference([&](double v) { return x.score.scoreF64(v, p); }, s, /*floatSteps=*/false))
      x.stats.gradients += checkDifferences(x, "gradient", "d/dscore " + at, dscore, f64.dscore, *fd);
    checkTensorGradientDifferences(x, s, p, g, f64);
  }
}

/// sink_mod_grad and prob_mod_grad, where generated: bit for bit against the interpreter's float32 reverse
/// mode (d/dp of a prob_mod and every captured-tensor gradient).
void checkExtraHookGradients(CaseContext& x) {
  for (int t = 0; t < kGradPoints && (x.sinkGrad || x.probGrad); ++t) {
    Position p = randomPosition(x.rng, /*allowNegative=*/false);
    if (x.sinkGrad) {
      GradBuffers g(x.v, x.sinkFirst, x.c.sink->tensors().size());
      x.sinkGrad(p.b, p.h, p.q, 1.0f, &x.cap, &g.args);
      checkTensorGradientBits(x, "sink gradient bits", "of sink_mod at " + showPos(p), g,
                              x.sink->scoreGradF32(0.0f, p, 1.0f), x.sinkFirst);
    }
    if (x.probGrad) {
      p.visible = randomVisible(x.rng);
      const float pr = t == 0 ? kSpecialScores[x.rng.pick(sizeof kSpecialScores / sizeof kSpecialScores[0])]
                              : randomProbability(x.rng, kValuePoints);
      const std::string at = fmt::format("of prob_mod at p={} {} num_visible={}", show(pr), showPos(p), p.visible);
      GradBuffers g(x.v, x.probFirst, x.c.prob->tensors().size());
      const float dp = x.probGrad(pr, p.b, p.h, p.q, p.kv, p.visible, 1.0f, &x.cap, &g.args);
      const ScoreGrad f32 = x.prob->scoreGradF32(pr, p, 1.0f);
      ++x.stats.gradientBits;
      if (!sameGradient(dp, static_cast<float>(f32.dscore)))
        x.fail("prob gradient bits", fmt::format("d/dp {}: prob_mod_grad {}, interpreter (float32) {}", at, show(dp),
                                                 show(static_cast<float>(f32.dscore))));
      checkTensorGradientBits(x, "prob gradient bits", at, g, f32, x.probFirst);
    }
  }
}

/// score_mod_grad_windows: over a box, every gradient write of score_mod_grad (recorded per site) lies in
/// its site's window, and goes to the window's capture slot (the dK/dV kernel accumulates windows in
/// shared memory).
void checkGradWindows(CaseContext& x) {
  if (x.v.gradSites == 0) return;
  if (!x.gradWrites || !x.gradWindows) return x.fail("symbols", "score_mod_grad has sites but no gradient windows");
  constexpr int kMaxWrites = 64;
  GradBuffers g(x.v, 0, x.c.score->tensors().size());
  const Box box = randomBox(x.rng);
  const long long xs[8] = {box.b.lo, box.b.hi, box.h.lo, box.h.hi, box.q.lo, box.q.hi, box.kv.lo, box.kv.hi};
  std::vector<fj::IvOffset> windows(x.v.gradSites);
  std::vector<int> slots(x.v.gradSites, -1);
  x.gradWindows(xs, &x.cap, &g.args, windows.data(), slots.data());
  forEachPosition(box, [&](const Position& p) {
    long long out[3 * kMaxWrites];
    const float s = randomScore(x.rng);
    const int n = x.gradWrites(s, p.b, p.h, p.q, p.kv, &x.cap, &g.args, out, kMaxWrites);
    for (int w = 0; w < n; ++w) {
      const long long site = out[3 * w], slot = out[3 * w + 1], off = out[3 * w + 2];
      ++x.stats.gradWrites;
      if (site >= x.v.gradSites || slot != slots[site] || off < windows[site].lo || off > windows[site].hi)
        x.fail("gradient windows",
               fmt::format("over {}: site {} writes slot {} offset {} at score={} {}, its window is "
                           "slot {} [{}, {}]",
                           showBox(box), site, slot, off, show(s), showPos(p), site < x.v.gradSites ? slots[site] : -1,
                           site < x.v.gradSites ? windows[site].lo : 0, site < x.v.gradSites ? windows[site].hi : -1));
    }
  });
}

}  // namespace

std::set<std::string> checkFuzzCase(const FuzzBatch& batch, size_t k, FuzzStats& stats, FuzzFailures& failures) {
  CaseContext x(batch, k, stats, failures);
  ++stats.cases;
  if (!x.ready()) return x.reported;
  stats.splitScores += x.scoreSplit != nullptr;
  stats.splitMasks += x.maskSplit != nullptr;
  stats.maskNoops += x.v.facts.maskIsNoop;
  stats.scoreNoops += x.v.facts.scoreIsNoop;
  stats.neverNegInf += !x.v.facts.scoreCanBeNegInf;
  stats.sinks += x.c.sink.has_value();
  stats.probs += x.c.prob.has_value();
  checkValues(x);
  checkExtraHookValues(x);
  checkIntervals(x);
  checkGradients(x);
  checkExtraHookGradients(x);
  checkGradWindows(x);
  return x.reported;
}

}  // namespace flexjit::testing
