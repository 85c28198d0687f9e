// CPU reference attention, forward and backward: scores in float64, score_mod and mask_mod through the
// interpreter (float64 semantics), the block mask applied exactly as the kernels apply it, softmax and
// gradients in float64.
#include "runtime/Reference.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>

#include "dsl/Interpreter.h"
#include "runtime/AttentionBackward.h"
#include "runtime/BlockMaskBuild.h"
#include "runtime/HostFloat.h"

namespace flexjit {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

int64_t offset(const TensorView& t, int64_t a, int64_t b, int64_t c) {
  return a * t.strides[0] + b * t.strides[1] + c * t.strides[2];
}

/// Runs fn(item) for items [0, n) on all hardware threads, the calling one included. An exception escaping
/// a thread would abort the process, so the first one thrown (a bad captured tensor, std::bad_alloc) stops
/// the other workers at their next item and is rethrown here. A thread that cannot be started leaves its
/// share to the others.
template <class F>
void parallelFor(int64_t n, F&& fn) {
  unsigned threads = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), 64));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex errorMutex;
  auto work = [&] {
    try {
      for (int64_t r; (r = next.fetch_add(1)) < n;) fn(r);
    } catch (...) {
      std::lock_guard<std::mutex> lock(errorMutex);
      if (!error) error = std::current_exception();
      next.store(n);
    }
  };
  std::vector<std::thread> pool;
  try {
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  } catch (const std::system_error&) {  // no more threads: the running ones and this one share the rows
  }
  work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

/// What forward and backward share: the mods, the block classes and one row's scores.
class RowScorer {
 public:
  RowScorer(const TensorView& q, const TensorView& k, const ScoreMod& scoreMod, const BlockMask* bm, const AttentionShape& s)
      : q_(q), k_(k), s_(s), score_(scoreMod), bm_(bm) {
    score_.bindCaptures();
    if (bm) {
      classes_ = blockClasses(*bm);
      if (bm->mask) {
        mask_.emplace(*bm->mask);
        mask_->bindCaptures();
      }
    }
  }

  const Program& score() const { return score_; }

  /// raw[j] = scale * q.k_j and t[j] = score_mod(raw[j]) (or -inf where masked); returns max t. `kept` marks
  /// the positions the block mask and mask_mod keep (a prob_mod's num_visible is their count).
  double row(int64_t b, int64_t h, int64_t i, std::vector<double>& raw, std::vector<double>& t,
             std::vector<char>* kept = nullptr) const {
    const int64_t hk = h / (s_.Hq / s_.Hkv);
    raw.assign(static_cast<size_t>(s_.Lkv), 0.0);
    t.assign(static_cast<size_t>(s_.Lkv), kNegInf);
    if (kept) kept->assign(static_cast<size_t>(s_.Lkv), 0);
    double m = kNegInf;
    for (int64_t j = 0; j < s_.Lkv; ++j) {
      if (!keep(b, h, i, j)) continue;
      if (kept) (*kept)[j] = 1;
      double dot = 0;
      for (int64_t d = 0; d < s_.D; ++d)
        dot += readFloat(q_.data, q_.dtype, offset(q_, b, h, i) + d) * readFloat(k_.data, k_.dtype, offset(k_, b, hk, j) + d);
      raw[j] = s_.scale * dot;
      t[j] = score_.scoreF64(raw[j], {int32_t(b), int32_t(h), int32_t(i), int32_t(j)});
      // A NaN score (NaN in q or k, or a score_mod that returns NaN) makes the row's max NaN, so the whole
      // row comes out NaN as in torch; std::max alone would drop it.
      m = std::isnan(t[j]) || std::isnan(m) ? std::numeric_limits<double>::quiet_NaN() : std::max(m, t[j]);
    }
    return m;
  }

 private:
  bool keep(int64_t b, int64_t h, int64_t i, int64_t j) const {
    if (!bm_) return true;
    int64_t bb = bm_->storedBatch() == 1 ? 0 : b, hh = bm_->storedHeads() == 1 ? 0 : h;
    uint8_t c = classes_[((bb * bm_->storedHeads() + hh) * bm_->numQBlocks + i / bm_->blockQ) * bm_->numKVBlocks +
                         j / bm_->blockKV];
    return c == kBlockFull || (c == kBlockPartial && (!mask_ || mask_->mask({int32_t(b), int32_t(h), int32_t(i), int32_t(j)})));
  }

  const TensorView &q_, &k_;
  const AttentionShape& s_;
  Program score_;
  std::optional<Program> mask_;
  std::vector<uint8_t> classes_;
  const BlockMask* bm_;
};

/// exp(t - m) for every kept position, 0 for masked ones; returns the sum. A fully masked row (m = -inf)
/// gives sum 0: its softmax does not exist, so O = 0, LSE = -inf and zero gradients. A row with a NaN
/// score (m = NaN) gives NaN for every kept position and a NaN sum: O, LSE and its gradients are NaN.
double expRow(std::vector<double>& t, double m) {
  double sum = 0;
  if (m == kNegInf) {
    for (double& x : t) x = 0;
    return 0;
  }
  for (double& x : t) sum += (x = x == kNegInf ? 0.0 : std::exp(x - m));
  return sum;
}

}  // namespace

namespace {

/// One row's softmax with the sink when there is one: t[j] becomes exp(t_j - top) for kept positions (0 for
/// masked ones), denom = their sum + exp(sink - top), top = max(row max, sink). denom == 0 only for a
/// fully masked row without a sink (O = 0, LSE = -inf); a NaN score or sink makes the row NaN.
struct RowSoftmax {
  double top = kNegInf;
  double denom = 0;
  double lse() const { return denom != 0 ? top + std::log(denom) : kNegInf; }
};

RowSoftmax softmaxRow(std::vector<double>& t, double rowMax, const std::optional<double>& sink) {
  RowSoftmax r;
  if (!sink) {
    r.top = rowMax;
    r.denom = expRow(t, rowMax);
    return r;
  }
  r.top = std::isnan(rowMax) || std::isnan(*sink) ? std::numeric_limits<double>::quiet_NaN() : std::max(rowMax, *sink);
  if (r.top == kNegInf) return RowSoftmax{kNegInf, expRow(t, kNegInf)};  // a -inf sink adds nothing
  r.denom = std::exp(*sink - r.top);
  for (double& x : t) r.denom += (x = x == kNegInf ? 0.0 : std::exp(x - r.top));
  return r;
}

/// The sink_mod's logit for row (b, h, i), if the variant has one.
std::optional<double> sinkLogit(const std::optional<Program>& sink, int64_t b, int64_t h, int64_t i) {
  if (!sink) return std::nullopt;
  return sink->scoreF64(0.0, {int32_t(b), int32_t(h), int32_t(i), 0});
}

/// Adds a hook's captured-tensor gradients at one position into the per-task accumulators (slots: the
/// hook's tensor -> gradient buffer, -1 for tensors without a gradient).
void addTensorGrads(std::vector<std::vector<double>>& acc, const std::vector<int>& slots, const ScoreGrad& g) {
  for (size_t t = 0; t < g.tensorGrads.size(); ++t)
    if (slots[t] >= 0)
      for (auto [idx, val] : g.tensorGrads[t]) acc[slots[t]][idx] += val;
}

std::optional<Program> probProgram(const ExtraHooks& extra) {
  if (!extra.prob) return std::nullopt;
  std::optional<Program> p(std::in_place, *extra.prob);
  p->bindCaptures();
  return p;
}

std::optional<Program> sinkProgram(const ExtraHooks& extra) {
  if (!extra.sink) return std::nullopt;
  std::optional<Program> p(std::in_place, *extra.sink);
  p->bindCaptures();
  return p;
}

}  // namespace

void referenceForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                      const BlockMask* blockMask, const AttentionShape& s, const TensorView& out,
                      const TensorView& lse, std::optional<DType> roundProbs) {
  referenceForward(q, k, v, scoreMod, blockMask, s, ForwardOutputs{out, lse}, ExtraHooks{}, roundProbs);
}

void referenceForward(const TensorView& q, const TensorView& k, const TensorView& v, const ScoreMod& scoreMod,
                      const BlockMask* blockMask, const AttentionShape& s, const ForwardOutputs& outputs,
                      const ExtraHooks& extra, std::optional<DType> roundProbs) {
  RowScorer scorer(q, k, scoreMod, blockMask, s);
  const std::optional<Program> sink = sinkProgram(extra), prob = probProgram(extra);
  const int64_t group = s.Hq / s.Hkv;
  auto store = [](const TensorView& t, int64_t b, int64_t h, int64_t i, double x) {
    static_cast<float*>(t.data)[b * t.strides[0] + h * t.strides[1] + i * t.strides[2]] = static_cast<float>(x);
  };
  auto round = [&](double x) {
    if (!roundProbs) return x;
    uint16_t bits = *roundProbs == DType::BF16 ? floatToBf16(float(x)) : floatToHalf(float(x));
    return *roundProbs == DType::BF16 ? double(fj::bf16ToFloat(bits)) : double(fj::halfToFloat(bits));
  };
  parallelFor(s.B * s.Hq * s.Lq, [&](int64_t row) {
    const int64_t b = row / (s.Hq * s.Lq), h = (row / s.Lq) % s.Hq, i = row % s.Lq, hk = h / group;
    std::vector<double> raw, p;
    std::vector<char> kept;
    const double m = scorer.row(b, h, i, raw, p, &kept);
    const RowSoftmax soft = softmaxRow(p, m, sinkLogit(sink, b, h, i));
    // The weights of V: p_j / denom (the kernels round the unnormalised p and divide at the end), or, with
    // a prob_mod, prob_mod(p_j / denom) on every kept position (rounded after the mod, as the kernels do).
    double divide = soft.denom;
    const int32_t visible = static_cast<int32_t>(std::count(kept.begin(), kept.end(), 1));
    if (outputs.rowVisible)
      static_cast<int32_t*>(outputs.rowVisible->data)[(b * s.Hq + h) * s.Lq + i] = visible;
    // The delta weights p_j g'(p_j) of a prob_mod (ForwardOutputs::probDelta), before p becomes g(p).
    std::vector<double> deltaWeight(prob && outputs.probDelta ? s.Lkv : 0, 0.0);
    if (prob && soft.denom != 0) {
      for (int64_t j = 0; j < s.Lkv; ++j) {
        if (!kept[j]) {
          p[j] = 0.0;
          continue;
        }
        const double pj = p[j] / soft.denom;
        const Position at{int32_t(b), int32_t(h), int32_t(i), int32_t(j), visible};
        if (!deltaWeight.empty()) deltaWeight[j] = round(pj * prob->scoreGrad(pj, at, 1.0).dscore);
        p[j] = round(prob->scoreF64(pj, at));
      }
      divide = 1.0;
    } else {
      for (double& x : p) x = round(x);
    }
    for (int64_t d = 0; d < s.Dv; ++d) {
      double acc = 0;
      // denom == 0 only for a fully masked row; a NaN denominator propagates into every output of the row.
      for (int64_t j = 0; j < s.Lkv && soft.denom != 0; ++j)
        if (p[j] != 0) acc += p[j] * readFloat(v.data, v.dtype, offset(v, b, hk, j) + d);
      writeFloat(outputs.out.data, outputs.out.dtype, offset(outputs.out, b, h, i) + d,
                 soft.denom != 0 ? acc / divide : 0.0);
      if (outputs.probDelta) {
        double weighted = 0;
        for (int64_t j = 0; j < s.Lkv && !deltaWeight.empty(); ++j)
          if (deltaWeight[j] != 0) weighted += deltaWeight[j] * readFloat(v.data, v.dtype, offset(v, b, hk, j) + d);
        writeFloat(outputs.probDelta->data, outputs.probDelta->dtype, offset(*outputs.probDelta, b, h, i) + d,
                   soft.denom != 0 ? weighted : 0.0);
      }
    }
    store(outputs.lse, b, h, i, soft.lse());
    if (outputs.maxScores) store(*outputs.maxScores, b, h, i, m);
  });
}

void referenceBackward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& dout,
                       const ScoreMod& scoreMod, const BlockMask* blockMask, const AttentionShape& s,
                       const TensorView& dq, const TensorView& dk, const TensorView& dv,
                       const std::vector<TensorView>& captureGrads, const ExtraHooks& extra,
                       const TensorView* dlse) {
  RowScorer scorer(q, k, scoreMod, blockMask, s);
  const std::optional<Program> sink = sinkProgram(extra);
  const int64_t group = s.Hq / s.Hkv;
  // Which of each mod's tensors feed which gradient buffer.
  std::vector<std::shared_ptr<TensorCapture>> wanted = gradientCaptures(scoreMod, extra);
  auto slotsOf = [&](const Mod& mod) {
    std::vector<int> slots(mod.tensors().size(), -1);
    for (size_t t = 0; t < mod.tensors().size(); ++t)
      for (size_t w = 0; w < wanted.size(); ++w)
        if (mod.tensors()[t] == wanted[w]) slots[t] = static_cast<int>(w);
    return slots;
  };
  const std::vector<int> gradSlot = slotsOf(scoreMod);
  const std::vector<int> sinkGradSlot = extra.sink ? slotsOf(*extra.sink) : std::vector<int>{};
  const std::vector<int> probGradSlot = extra.prob ? slotsOf(*extra.prob) : std::vector<int>{};
  const std::optional<Program> prob = probProgram(extra);
  std::mutex mergeMutex;
  // One task per (b, kv head): it owns dK/dV of that head and dQ of the query heads that share it.
  parallelFor(s.B * s.Hkv, [&](int64_t task) {
    const int64_t b = task / s.Hkv, hk = task % s.Hkv;
    std::vector<double> dkAcc(s.Lkv * s.D, 0.0), dvAcc(s.Lkv * s.Dv, 0.0);
    std::vector<std::vector<double>> capAcc(captureGrads.size());
    for (size_t w = 0; w < captureGrads.size(); ++w) capAcc[w].assign(static_cast<size_t>(captureGrads[w].numel()), 0.0);
    std::vector<double> raw, p, dP, weight;
    std::vector<char> kept;
    auto dout_ = [&](int64_t h, int64_t i, int64_t d) { return readFloat(dout.data, dout.dtype, offset(dout, b, h, i) + d); };
    for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
      for (int64_t i = 0; i < s.Lq; ++i) {
        const double m = scorer.row(b, h, i, raw, p, &kept);
        const std::optional<double> sinkValue = sinkLogit(sink, b, h, i);
        const RowSoftmax soft = softmaxRow(p, m, sinkValue);
        const double sum = soft.denom;
        std::vector<double> dqRow(s.D, 0.0);
        if (sum != 0) {  // NaN rows take this path too: their gradients come out NaN
          for (double& x : p) x /= sum;
          const int32_t visible = static_cast<int32_t>(std::count(kept.begin(), kept.end(), 1));
          // weight_j multiplies v_j in O (p_j, or prob_mod(p_j)); dP_j becomes d loss / d p_j: dO . v_j, through
          // prob_mod's derivative when there is one (which also adds its captured tensors' gradients).
          dP.assign(static_cast<size_t>(s.Lkv), 0.0);
          weight = p;
          double rowDot = 0;  // D_i = sum_j P_ij dP_ij (= rowsum(dO * O) without a prob_mod)
          for (int64_t j = 0; j < s.Lkv; ++j) {
            if (!kept[j] || (!prob && p[j] == 0)) continue;
            for (int64_t d = 0; d < s.Dv; ++d) dP[j] += dout_(h, i, d) * readFloat(v.data, v.dtype, offset(v, b, hk, j) + d);
            if (prob) {
              const Position at{int32_t(b), int32_t(h), int32_t(i), int32_t(j), visible};
              weight[j] = prob->scoreF64(p[j], at);
              ScoreGrad g = prob->scoreGrad(p[j], at, dP[j]);
              addTensorGrads(capAcc, probGradSlot, g);
              dP[j] = g.dscore;
            }
            rowDot += p[j] * dP[j];
          }
          // d LSE_i / d t_ij = P_ij (and d LSE_i / d sink_i = exp(sink_i - LSE_i)): the LSE's upstream gradient
          // enters every dS of the row as dlse_i * P_ij, i.e. as D_i - dlse_i in place of D_i.
          if (dlse) rowDot -= readFloat(dlse->data, DType::F32, b * dlse->strides[0] + h * dlse->strides[1] + i * dlse->strides[2]);
          if (sinkValue && !sinkGradSlot.empty()) {
            // The sink takes probability mass exp(sink - LSE) from every key: d loss / d sink = -that * D_i.
            const double dSink = -std::exp(*sinkValue - soft.lse()) * rowDot;
            addTensorGrads(capAcc, sinkGradSlot, sink->scoreGrad(0.0, {int32_t(b), int32_t(h), int32_t(i), 0}, dSink));
          }
          for (int64_t j = 0; j < s.Lkv; ++j) {
            if (!kept[j]) continue;
            if (weight[j] != 0)
              for (int64_t d = 0; d < s.Dv; ++d) dvAcc[j * s.Dv + d] += weight[j] * dout_(h, i, d);
            if (p[j] == 0) continue;
            double dT = p[j] * (dP[j] - rowDot);  // gradient of the modified score
            ScoreGrad g = scorer.score().scoreGrad(raw[j], {int32_t(b), int32_t(h), int32_t(i), int32_t(j)}, dT);
            addTensorGrads(capAcc, gradSlot, g);
            for (int64_t d = 0; d < s.D; ++d) {
              dqRow[d] += s.scale * g.dscore * readFloat(k.data, k.dtype, offset(k, b, hk, j) + d);
              dkAcc[j * s.D + d] += s.scale * g.dscore * readFloat(q.data, q.dtype, offset(q, b, h, i) + d);
            }
          }
        }
        for (int64_t d = 0; d < s.D; ++d) writeFloat(dq.data, dq.dtype, offset(dq, b, h, i) + d, dqRow[d]);
      }
    for (int64_t j = 0; j < s.Lkv; ++j) {
      for (int64_t d = 0; d < s.D; ++d) writeFloat(dk.data, dk.dtype, offset(dk, b, hk, j) + d, dkAcc[j * s.D + d]);
      for (int64_t d = 0; d < s.Dv; ++d) writeFloat(dv.data, dv.dtype, offset(dv, b, hk, j) + d, dvAcc[j * s.Dv + d]);
    }
    std::lock_guard<std::mutex> lock(mergeMutex);
    for (size_t w = 0; w < captureGrads.size(); ++w) {
      float* g = static_cast<float*>(captureGrads[w].data);
      for (size_t e = 0; e < capAcc[w].size(); ++e) g[e] += static_cast<float>(capAcc[w][e]);
    }
  });
}

}  // namespace flexjit
