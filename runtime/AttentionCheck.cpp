// Input validation for flex_attention: every rejection says what was wrong and what to do.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "runtime/Attention.h"

namespace flexjit {

namespace {

void checkRank4(const TensorView& t, const char* name, const char* layout) {
  if (t.rank() != 4)
    throw Error(fmt::format("flex_attention: {} must be 4-D {}, got {}", name, layout, t.describe()));
  // An empty tensor has no elements to lay out: torch gives it any strides (a gradient of 0 rows: stride 0).
  if (t.numel() > 0 && t.shape[3] > 1 && t.strides[3] != 1)
    throw Error(fmt::format("flex_attention: {} must be contiguous in its last (head) dimension, got strides [{}]; "
                            "call .contiguous() on it", name, fmt::join(t.strides, ", ")));
  if (!t.data && t.numel() > 0) throw Error(fmt::format("flex_attention: {} has no data", name));
}

/// A block mask made for B=1 (H=1) is broadcast over the query's batches (heads). Its lists hold only for
/// b = 0 (h = 0) when its mask_mod reads b (h): broadcasting would skip or fully keep the wrong blocks.
void checkBroadcastMask(const BlockMask& m, int64_t made, int64_t used, Param p, const char* size) {
  if (made == used || !m.mask || !maskReadsParam(*m.mask, p)) return;
  throw Error(fmt::format("flex_attention: the block mask was made for {}={} but the query has {}={}, and its {} "
                          "reads {}, so its blocks differ per {}; create the block mask with {}={}", size, made, size,
                          used, m.mask->describe(), paramName(p), paramName(p), size, used));
}

bool supportedDType(DType d, Device device) {
  if (d == DType::F16 || d == DType::BF16) return true;
  return d == DType::F32 && device.kind == DeviceKind::CPU;
}

}  // namespace

AttentionShape checkAttentionInputs(const TensorView& q, const TensorView& k, const TensorView& v,
                                    const BlockMask* blockMask, const AttentionOptions& options) {
  checkRank4(q, "query", "[B, Hq, Q_LEN, D]");
  checkRank4(k, "key", "[B, Hkv, KV_LEN, D]");
  checkRank4(v, "value", "[B, Hkv, KV_LEN, Dv]");
  if (q.device != k.device || q.device != v.device)
    throw Error(fmt::format("flex_attention: query, key and value must be on one device, got {}, {}, {}",
                            q.device.str(), k.device.str(), v.device.str()));
  if (q.dtype != k.dtype || q.dtype != v.dtype)
    throw Error(fmt::format("flex_attention: query, key and value must have one dtype, got {}, {}, {}",
                            dtypeName(q.dtype), dtypeName(k.dtype), dtypeName(v.dtype)));
  if (!supportedDType(q.dtype, q.device))
    throw Error(fmt::format("flex_attention: {} inputs are not supported on {}; use float16 or bfloat16{}",
                            dtypeName(q.dtype), q.device.str(),
                            q.device.kind == DeviceKind::CPU ? " (or float32 on the CPU)" : ""));
  AttentionShape s;
  s.B = q.shape[0];
  s.Hq = q.shape[1];
  s.Lq = q.shape[2];
  s.D = q.shape[3];
  s.Hkv = k.shape[1];
  s.Lkv = k.shape[2];
  s.Dv = v.shape[3];
  if (k.shape[0] != s.B || v.shape[0] != s.B)
    throw Error(fmt::format("flex_attention: batch sizes differ: query {}, key {}, value {}", s.B, k.shape[0], v.shape[0]));
  if (k.shape[3] != s.D)
    throw Error(fmt::format("flex_attention: query and key head dims differ ({} vs {})", s.D, k.shape[3]));
  if (v.shape[1] != s.Hkv || v.shape[2] != s.Lkv)
    throw Error(fmt::format("flex_attention: key {} and value {} must agree in heads and length", k.describe(), v.describe()));
  if (s.Hkv < 1 || s.Hq % s.Hkv != 0)
    throw Error(fmt::format("flex_attention: query heads ({}) must be a multiple of key/value heads ({}) for "
                            "grouped-query attention", s.Hq, s.Hkv));
  if (s.Lq > INT32_MAX || s.Lkv > INT32_MAX) throw Error("flex_attention: sequence lengths must fit int32");
  s.scale = options.scale ? *options.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.D)));
  // Any finite scale, as torch: 0 weighs the kept positions uniformly, a negative one prefers opposed keys.
  if (!std::isfinite(s.scale))
    throw Error(fmt::format("flex_attention: scale must be finite, got {}", s.scale));
  if (blockMask) {
    if (blockMask->lenQ != s.Lq || blockMask->lenKV != s.Lkv)
      throw Error(fmt::format("flex_attention: the block mask was made for Q_LEN={}, KV_LEN={} but the inputs have "
                              "Q_LEN={}, KV_LEN={}; create it with the inputs' lengths",
                              blockMask->lenQ, blockMask->lenKV, s.Lq, s.Lkv));
    if ((blockMask->storedBatch() != 1 && blockMask->storedBatch() != s.B) ||
        (blockMask->storedHeads() != 1 && blockMask->storedHeads() != s.Hq))
      throw Error(fmt::format("flex_attention: the block mask is for B={}, H={} but the query is {}; make it with B "
                              "and H of the query (or 1 to broadcast)", blockMask->batch, blockMask->heads, q.describe()));
    checkBroadcastMask(*blockMask, blockMask->batch, s.B, Param::B, "B");
    checkBroadcastMask(*blockMask, blockMask->heads, s.Hq, Param::H, "H");
    if (blockMask->device() != q.device)
      throw Error(fmt::format("flex_attention: the block mask is on {} but the inputs on {}; create it on {} or "
                              "move it with .to()", blockMask->device().str(), q.device.str(), q.device.str()));
  }
  return s;
}

ScoreMod scoreModForScale(const ScoreMod& scoreMod, float scale) {
  if (scale > 0.0f) return scoreMod;
  CapturedScalar zero("scale_fold_guard", 0.0f);
  return ScoreMod::fromBody(scoreMod.name(), scoreMod.body() + zero.expr());
}

void checkOutputView(const TensorView& t, const std::vector<int64_t>& shape, DType dtype, Device device, const char* what) {
  if (t.shape != shape || t.dtype != dtype || t.device != device)
    throw Error(fmt::format("flex_attention: {} must be {}[{}] on {}, got {}", what, dtypeName(dtype),
                            fmt::join(shape, ", "), device.str(), t.describe()));
  if (t.rank() == 4 && t.numel() > 0 && t.shape[3] > 1 && t.strides[3] != 1)
    throw Error(fmt::format("flex_attention: {} must be contiguous in its last dimension", what));
}

}  // namespace flexjit
