// flexjit variant: score_mod d36332e53007ff37 / mask_mod 03935b59e1b6f8b9 (structural keys). Generated; do not edit.
namespace fjv {
inline constexpr bool kScoreModIsNoop = false;
inline constexpr bool kMaskModIsNoop = false;
inline constexpr bool kScoreCanBeNegInf = true;
inline constexpr bool kHasTensorGrads = true;
inline constexpr bool kMaskReadsTensors = false;
inline constexpr bool kHasSink = false;
inline constexpr bool kHasProb = false;
inline constexpr int kGradSites = 1;

FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = 1023;
  const int v1 = 0;
  const int v2 = fj::subI(q_idx, kv_idx);
  const int v3 = fj::maxI(v2, v1);
  const int v4 = fj::minI(v3, v0);
  const float v5 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], h, v4));
  const float v6 = (score + v5);
  return v6;
}

FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const bool v0 = (q_idx >= kv_idx);
  return v0;
}

template <class Grads>
FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const Grads& grads) {
  const int v0 = 1023;
  const int v1 = 0;
  const int v2 = fj::subI(q_idx, kv_idx);
  const int v3 = fj::maxI(v2, v1);
  const int v4 = fj::minI(v3, v0);
  grads.accumulate(0, 0, cap.tensor[0], grad_out, h, v4);
  return grad_out;
}

FJ_HD void score_mod_grad_windows(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap, const fj::GradArgs& grads, fj::IvOffset* offsets, int* slots) {
  const fj::IvInt v0 = fj::ivInt(1023, 1023);
  const fj::IvInt v1 = fj::ivInt(0, 0);
  const fj::IvInt v2 = fj::ivSub(q_idx, kv_idx);
  const fj::IvInt v3 = fj::ivMax(v2, v1);
  const fj::IvInt v4 = fj::ivMin(v3, v0);
  const fj::IvInt v5[] = {h, v4};
  offsets[0] = fj::ivGradOffset(cap.tensor[0], grads.stride[0], 2, v5);
  slots[0] = 0;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvBool v0 = fj::ivGe(q_idx, kv_idx);
  return v0;
}

FJ_HD fj::IvFloat score_mod_interval(fj::IvFloat score, fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvInt v0 = fj::ivInt(1023, 1023);
  const fj::IvInt v1 = fj::ivInt(0, 0);
  const fj::IvInt v2 = fj::ivSub(q_idx, kv_idx);
  const fj::IvInt v3 = fj::ivMax(v2, v1);
  const fj::IvInt v4 = fj::ivMin(v3, v0);
  const fj::IvInt v5[] = {h, v4};
  const fj::IvFloat v6 = fj::ivLoadFloat(cap.tensor[0], fj::kElemF32, 2, v5);
  const fj::IvFloat v7 = fj::ivAdd(score, v6);
  return v7;
}

struct Hooks {
  static constexpr bool kScoreModIsNoop = fjv::kScoreModIsNoop;
  static constexpr bool kMaskModIsNoop = fjv::kMaskModIsNoop;
  static constexpr bool kHasSink = fjv::kHasSink;
  static constexpr bool kHasProb = fjv::kHasProb;
  static FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
    return fjv::score_mod(score, b, h, q_idx, kv_idx, cap);
  }
  static FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
    return fjv::mask_mod(b, h, q_idx, kv_idx, cap);
  }
  // Whether kernels may decide sub-tiles of partial blocks with the interval form: only when it reads no
  // captured tensor (those intervals scan the tensor's values, too slow per warp and sub-tile).
  static constexpr bool kMaskIntervalIsCheap = !fjv::kMaskModIsNoop && !fjv::kMaskReadsTensors;
  static FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx,
                                            const fj::CaptureArgs& cap) {
    return fjv::mask_mod_interval(b, h, q_idx, kv_idx, cap);
  }
  static constexpr bool kScoreSplit = false;
  static constexpr bool kMaskSplit = false;
  static constexpr int kGradSites = fjv::kGradSites;
  template <class Grads>
  static FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out,
                                    const fj::CaptureArgs& cap, const Grads& grads) {
    return fjv::score_mod_grad(score, b, h, q_idx, kv_idx, grad_out, cap, grads);
  }
  static FJ_HD void score_mod_grad_windows(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx,
                                           const fj::CaptureArgs& cap, const fj::GradArgs& grads,
                                           fj::IvOffset* offsets, int* slots) {
    fjv::score_mod_grad_windows(b, h, q_idx, kv_idx, cap, grads, offsets, slots);
  }
};
}  // namespace fjv
