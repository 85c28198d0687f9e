// flexjit variant: score_mod 38fb8b1ac6fa440d / mask_mod 03935b59e1b6f8b9 (structural keys). Generated; do not edit.
namespace fjv {
inline constexpr bool kScoreModIsNoop = false;
inline constexpr bool kMaskModIsNoop = false;
inline constexpr bool kScoreCanBeNegInf = true;
inline constexpr bool kHasTensorGrads = false;
inline constexpr bool kMaskReadsTensors = false;
inline constexpr bool kHasSink = false;
inline constexpr bool kHasProb = false;

FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const float v0 = fj::fastDiv(score, cap.f[0]);
  const float v1 = fj::fastTanh(v0);
  const float v2 = (cap.f[0] * v1);
  return v2;
}

FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const bool v0 = (q_idx >= kv_idx);
  return v0;
}

FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
  const float v0 = 1.0f;
  const float v1 = fj::fastDiv(score, cap.f[0]);
  const float v2 = fj::fastTanh(v1);
  const float v3 = (grad_out * cap.f[0]);
  const float v4 = (v2 * v2);
  const float v5 = (v0 - v4);
  const float v6 = (v3 * v5);
  const float v7 = fj::fastDiv(v6, cap.f[0]);
  return v7;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvBool v0 = fj::ivGe(q_idx, kv_idx);
  return v0;
}

FJ_HD fj::IvFloat score_mod_interval(fj::IvFloat score, fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvFloat v0 = fj::ivDiv(score, fj::ivFloatPoint(cap.f[0]));
  const fj::IvFloat v1 = fj::ivTanh(v0);
  const fj::IvFloat v2 = fj::ivMul(fj::ivFloatPoint(cap.f[0]), v1);
  return v2;
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
