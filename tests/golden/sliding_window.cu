// flexjit variant: score_mod 1b79e1dbd370ac04 / mask_mod 702c063994328fe4 (structural keys). Generated; do not edit.
namespace fjv {
inline constexpr bool kScoreModIsNoop = true;
inline constexpr bool kMaskModIsNoop = false;
inline constexpr bool kScoreCanBeNegInf = false;
inline constexpr bool kHasTensorGrads = false;
inline constexpr bool kMaskReadsTensors = false;
inline constexpr bool kHasSink = false;
inline constexpr bool kHasProb = false;

FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  return score;
}

FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = 1024;
  const bool v1 = (q_idx >= kv_idx);
  const int v2 = fj::subI(q_idx, kv_idx);
  const bool v3 = (v2 <= v0);
  const bool v4 = (v1 && v3);
  return v4;
}

FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
  return grad_out;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvInt v0 = fj::ivInt(1024, 1024);
  const fj::IvBool v1 = fj::ivGe(q_idx, kv_idx);
  const fj::IvInt v2 = fj::ivSub(q_idx, kv_idx);
  const fj::IvBool v3 = fj::ivLe(v2, v0);
  const fj::IvBool v4 = fj::ivAnd(v1, v3);
  return v4;
}

FJ_HD fj::IvFloat score_mod_interval(fj::IvFloat score, fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  return score;
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
  static FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out,
                                    const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
    return fjv::score_mod_grad(score, b, h, q_idx, kv_idx, grad_out, cap, grads);
  }
};
}  // namespace fjv
