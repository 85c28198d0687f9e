// The seed variants. Each is the C++ twin of the torch FlexAttention function it is named after, so a
// torch user can read them side by side.
#include "examples/SeedVariants.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>

#include "dsl/Error.h"

namespace flexjit::examples {

namespace {

constexpr int kWindow = 1024;          ///< sliding-window width (tokens)
constexpr int kPrefix = 2048;          ///< prefix-LM prefix length (clipped to Lkv)
constexpr int kImageWidth = 128;       ///< 2-D canvas width for NATTEN / SASA
constexpr int kNattenKernel = 7;       ///< NATTEN kernel size (7 x 7)
constexpr int kSasaWindow = 8;         ///< SASA half-window
constexpr float kSoftCap = 30.0f;      ///< tanh soft-cap
constexpr int kRelBiasLen = 1024;      ///< learned relative bias covers distances 0..L-1
constexpr int kImageTokens = 64;       ///< tokens per image in the cross-attention example

template <class T>
std::shared_ptr<HostTensor> hostTensor(DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  auto t = std::make_shared<HostTensor>();
  t->bytes.resize(values.size() * sizeof(T));
  std::memcpy(t->bytes.data(), values.data(), t->bytes.size());
  t->view = TensorView(t->bytes.data(), dtype, Device::cpu(), std::move(shape));
  return t;
}

/// Deterministic pseudo-random floats in [lo, hi).
std::vector<float> randomFloats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

MaskMod causalMask() {
  return MaskMod("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
}

void noop(SeedVariant&) {}

void causal(SeedVariant& v) { v.mask = causalMask(); }

void slidingWindow(SeedVariant& v) {
  v.mask = MaskMod("sliding_window", [](Expr, Expr, Expr q, Expr kv) { return (q >= kv) & (q - kv <= kWindow); });
}

void prefixLm(SeedVariant& v) {
  int prefix = static_cast<int>(std::min<int64_t>(kPrefix, v.shape.Lkv));
  auto prefixMask = MaskMod("prefix", [prefix](Expr, Expr, Expr, Expr kv) { return kv < prefix; });
  v.mask = or_masks({prefixMask, causalMask()});
}

void document(SeedVariant& v) {
  // Two documents per sequence (the benchmark's layout); ids are int32 like torch's document_id.
  int64_t L = std::max(v.shape.Lq, v.shape.Lkv);
  std::vector<int32_t> ids(L);
  for (int64_t i = 0; i < L; ++i) ids[i] = static_cast<int32_t>(i * 2 / std::max<int64_t>(L, 1));
  auto t = hostTensor(DType::I32, {L}, ids);
  v.data.push_back(t);
  CapturedTensor docId("document_id", t->view);
  v.mask = MaskMod("document_causal", [docId](Expr, Expr, Expr q, Expr kv) {
    return (q >= kv) & (docId[q] == docId[kv]);
  });
}

void natten(SeedVariant& v) {
  v.mask = MaskMod("natten", [](Expr, Expr, Expr q, Expr kv) {
    Expr qx = floordiv(q, kImageWidth), qy = q % kImageWidth;
    Expr kx = floordiv(kv, kImageWidth), ky = kv % kImageWidth;
    constexpr int half = kNattenKernel / 2;
    // The kernel is centred on the query but clamped to stay inside the canvas.
    Expr cx = clamp(qx, half, (kImageWidth - 1) - half), cy = clamp(qy, half, (kImageWidth - 1) - half);
    return (abs(cx - kx) <= half) & (abs(cy - ky) <= half);
  });
}

void sasa(SeedVariant& v) {
  v.mask = MaskMod("sasa", [](Expr, Expr, Expr q, Expr kv) {
    Expr qx = floordiv(q, kImageWidth), qy = q % kImageWidth;
    Expr kx = floordiv(kv, kImageWidth), ky = kv % kImageWidth;
    return (abs(qx - kx) <= kSasaWindow) & (abs(qy - ky) <= kSasaWindow);
  });
}

void alibi(SeedVariant& v) {
  std::vector<float> slopes(v.shape.H);
  for (int64_t h = 0; h < v.shape.H; ++h) slopes[h] = std::exp2(-((h + 1) * 8.0f / v.shape.H));
  auto t = hostTensor(DType::F32, {v.shape.H}, slopes);
  v.data.push_back(t);
  CapturedTensor slope("alibi_slopes", t->view);
  v.score = ScoreMod("alibi", [slope](Expr s, Expr, Expr h, Expr q, Expr kv) { return s + slope[h] * toFloat(q - kv); });
  v.mask = causalMask();
}

void softcap(SeedVariant& v) {
  CapturedScalar cap("soft_cap", kSoftCap);
  v.score = ScoreMod("tanh_softcap", [cap](Expr s, Expr, Expr, Expr, Expr) { return cap * tanh(s / cap); });
  v.mask = causalMask();
}

void relativeBias(SeedVariant& v) {
  // Lazy Attention's per-head diagonal bias: bias[h][clamp(q - kv, 0, L - 1)], learned (requires grad).
  auto t = hostTensor(DType::F32, {v.shape.H, kRelBiasLen}, randomFloats(v.shape.H * kRelBiasLen, -1, 1, 7));
  v.data.push_back(t);
  CapturedTensor bias("rel_bias", t->view, /*requiresGrad=*/true);
  v.score = ScoreMod("relative_bias", [bias](Expr s, Expr, Expr h, Expr q, Expr kv) {
    return s + bias[h][clamp(q - kv, 0, kRelBiasLen - 1)];
  });
  v.mask = causalMask();
}

void gatedDecay(SeedVariant& v) {
  // GatedFWA: a per-(b, h, token) cumulative gate G; the logit gets G[q] - G[kv] under a sliding window.
  int64_t L = std::max(v.shape.Lq, v.shape.Lkv);
  std::vector<float> g(v.shape.B * v.shape.H * L);
  std::vector<float> steps = randomFloats(g.size(), -0.05f, 0.0f, 11);
  for (int64_t bh = 0; bh < v.shape.B * v.shape.H; ++bh) {
    float acc = 0;
    for (int64_t i = 0; i < L; ++i) g[bh * L + i] = acc += steps[bh * L + i];  // decays: G is decreasing
  }
  auto t = hostTensor(DType::F32, {v.shape.B, v.shape.H, L}, g);
  v.data.push_back(t);
  CapturedTensor gate("gate_cumsum", t->view, /*requiresGrad=*/true);
  v.score = ScoreMod("gated_decay", [gate](Expr s, Expr b, Expr h, Expr q, Expr kv) {
    return s + gate[b][h][q] - gate[b][h][kv];
  });
  slidingWindow(v);
}

void crossAttention(SeedVariant& v) {
  // Flamingo-style: text tokens (q) attend to the image tokens (kv) of the images whose interval covers them.
  int64_t images = std::max<int64_t>(1, v.shape.Lkv / kImageTokens);
  std::vector<int64_t> boundaries(v.shape.Lkv), intervals(images * 2);
  for (int64_t i = 0; i < v.shape.Lkv; ++i) boundaries[i] = std::min(i / kImageTokens, images - 1);
  for (int64_t i = 0; i < images; ++i) {
    intervals[2 * i] = i * v.shape.Lq / images / 2;                          // each image is visible from here
    intervals[2 * i + 1] = std::min<int64_t>(v.shape.Lq, (i + 2) * v.shape.Lq / images);  // ... to here
  }
  auto tb = hostTensor(DType::I64, {v.shape.Lkv}, boundaries);
  auto ti = hostTensor(DType::I64, {images, 2}, intervals);
  v.data = {tb, ti};
  CapturedTensor imageOf("image_boundaries", tb->view), span("intervals", ti->view);
  v.mask = MaskMod("vision_cross_attention", [imageOf, span](Expr, Expr, Expr q, Expr kv) {
    Expr image = imageOf[kv];
    return (q >= span[image][0]) & (q < span[image][1]);
  });
  v.shapeNote = "cross attention: Lq != Lkv";
}

struct Entry {
  const char* description;
  void (*build)(SeedVariant&);
};

const std::map<std::string, Entry>& registry() {
  static const std::map<std::string, Entry> entries = {
      {"noop", {"full attention", noop}},
      {"causal", {"causal mask", causal}},
      {"sliding_window", {"causal sliding window of 1024", slidingWindow}},
      {"prefix_lm", {"prefix LM: bidirectional over the first 2048 tokens, causal after", prefixLm}},
      {"document", {"causal document mask from captured document ids", document}},
      {"natten", {"NATTEN 7x7 neighbourhood on a 128-wide canvas (// and %)", natten}},
      {"sasa", {"SASA +-8 window on a 128-wide canvas", sasa}},
      {"alibi", {"ALiBi per-head slopes (captured tensor) + causal", alibi}},
      {"softcap", {"tanh soft-cap 30 (captured scalar) + causal", softcap}},
      {"relative_bias", {"learned relative bias bias[h][clamp(q-kv,0,L-1)] with gradient + causal", relativeBias}},
      {"gated_decay", {"GatedFWA decay bias G[b][h][q] - G[b][h][kv] with gradient, sliding window", gatedDecay}},
      {"cross_attention", {"Flamingo-style vision cross attention (Lq != Lkv)", crossAttention}},
  };
  return entries;
}

}  // namespace

void SeedVariant::placeCaptures(Device device) {
  for (const Mod* m : {static_cast<const Mod*>(&score), static_cast<const Mod*>(&mask)})
    for (const auto& t : m->tensors()) {
      if (!t->view || t->view->device == device) continue;
      Tensor copy = Tensor::empty(t->view->dtype, t->view->shape, device);
      copyBytes(copy.data(), device, t->view->data, t->view->device, copy.bytes());
      t->view = copy.view();
      deviceData.push_back(copy);
    }
}

const std::vector<std::string>& seedVariantNames() {
  static const std::vector<std::string> names = {"noop", "causal", "sliding_window", "prefix_lm", "document",
                                                 "natten", "sasa", "alibi", "softcap", "relative_bias",
                                                 "gated_decay", "cross_attention"};
  return names;
}

SeedVariant makeSeedVariant(const std::string& name, const Shape& shape) {
  auto it = registry().find(name);
  if (it == registry().end())
    throw Error(fmt::format("unknown variant '{}'; known variants: {}", name, fmt::join(seedVariantNames(), ", ")));
  SeedVariant v;
  v.name = name;
  v.description = it->second.description;
  v.shape = shape;
  it->second.build(v);
  return v;
}

}  // namespace flexjit::examples
