// flexjit variant: score_mod b92259dc0e0917a0 / mask_mod 03935b59e1b6f8b9 (structural keys). Generated; do not edit.
namespace fjv {
inline constexpr bool kScoreModIsNoop = false;
inline constexpr bool kMaskModIsNoop = false;
inline constexpr bool kScoreCanBeNegInf = true;
inline constexpr bool kHasTensorGrads = false;
inline constexpr bool kMaskReadsTensors = false;
inline constexpr bool kHasSink = false;
inline constexpr bool kHasProb = false;

FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const float v0 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], h));
  const int v1 = fj::subI(q_idx, kv_idx);
  const float v2 = (float)v1;
  const float v3 = (v0 * v2);
  const float v4 = (score + v3);
  return v4;
}

FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const bool v0 = (q_idx >= kv_idx);
  return v0;
}

struct score_mod_Row {
  float r0;
};
struct score_mod_Col {
};
FJ_HD score_mod_Row score_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
  const float v0 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], h));
  return score_mod_Row{v0};
}
FJ_HD score_mod_Col score_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
  return score_mod_Col{};
}
FJ_HD float score_mod_split(float score, int b, int h, int q_idx, int kv_idx, const score_mod_Row& row, const score_mod_Col& col, const fj::CaptureArgs& cap) {
  const int v0 = fj::subI(q_idx, kv_idx);
  const float v1 = (float)v0;
  const float v2 = (row.r0 * v1);
  const float v3 = (score + v2);
  return v3;
}

FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
  return grad_out;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvBool v0 = fj::ivGe(q_idx, kv_idx);
  return v0;
}

FJ_HD fj::IvFloat score_mod_interval(fj::IvFloat score, fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvInt v0[] = {h};
  const fj::IvFloat v1 = fj::ivLoadFloat(cap.tensor[0], fj::kElemF32, 1, v0);
  const fj::IvInt v2 = fj::ivSub(q_idx, kv_idx);
  const fj::IvFloat v3 = fj::ivIntToFloat(v2);
  const fj::IvFloat v4 = fj::ivMul(v1, v3);
  const fj::IvFloat v5 = fj::ivAdd(score, v4);
  return v5;
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
  static constexpr bool kScoreSplit = true;
  static constexpr bool kMaskSplit = false;
  using ScoreRow = fjv::score_mod_Row;
  using ScoreCol = fjv::score_mod_Col;
  static FJ_HD ScoreRow score_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
    return fjv::score_mod_row(b, h, q_idx, cap);
  }
  static FJ_HD ScoreCol score_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
    return fjv::score_mod_col(b, h, kv_idx, cap);
  }
  static FJ_HD float score_mod_split(float score, int b, int h, int q_idx, int kv_idx, const ScoreRow& row,
                                     const ScoreCol& col, const fj::CaptureArgs& cap) {
    return fjv::score_mod_split(score, b, h, q_idx, kv_idx, row, col, cap);
  }
  static FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out,
                                    const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
    return fjv::score_mod_grad(score, b, h, q_idx, kv_idx, grad_out, cap, grads);
  }
};
}  // namespace fjv
