// flexjit variant: score_mod ad83941b8058447d / mask_mod 702c063994328fe4 (structural keys). Generated; do not edit.
namespace fjv {
inline constexpr bool kScoreModIsNoop = false;
inline constexpr bool kMaskModIsNoop = false;
inline constexpr bool kScoreCanBeNegInf = true;
inline constexpr bool kHasTensorGrads = true;
inline constexpr bool kMaskReadsTensors = false;
inline constexpr bool kHasSink = false;
inline constexpr bool kHasProb = false;
inline constexpr int kGradSites = 2;

FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const float v0 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], b, h, q_idx));
  const float v1 = (score + v0);
  const float v2 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], b, h, kv_idx));
  const float v3 = (v1 - v2);
  return v3;
}

FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = 1024;
  const bool v1 = (q_idx >= kv_idx);
  const int v2 = fj::subI(q_idx, kv_idx);
  const bool v3 = (v2 <= v0);
  const bool v4 = (v1 && v3);
  return v4;
}

struct score_mod_Row {
  float r0;
};
struct score_mod_Col {
  float c0;
};
FJ_HD score_mod_Row score_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
  const float v0 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], b, h, q_idx));
  return score_mod_Row{v0};
}
FJ_HD score_mod_Col score_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
  const float v0 = fj::loadFloat(cap.tensor[0], fj::kElemF32, fj::offsetOf(cap.tensor[0], b, h, kv_idx));
  return score_mod_Col{v0};
}
FJ_HD float score_mod_split(float score, int b, int h, int q_idx, int kv_idx, const score_mod_Row& row, const score_mod_Col& col, const fj::CaptureArgs& cap) {
  const float v0 = (score + row.r0);
  const float v1 = (v0 - col.c0);
  return v1;
}

template <class Grads>
FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const Grads& grads) {
  const float v0 = (-grad_out);
  grads.accumulate(0, 0, cap.tensor[0], v0, b, h, kv_idx);
  grads.accumulate(1, 0, cap.tensor[0], grad_out, b, h, q_idx);
  return grad_out;
}

FJ_HD void score_mod_grad_windows(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap, const fj::GradArgs& grads, fj::IvOffset* offsets, int* slots) {
  const fj::IvInt v0[] = {b, h, kv_idx};
  offsets[0] = fj::ivGradOffset(cap.tensor[0], grads.stride[0], 3, v0);
  slots[0] = 0;
  const fj::IvInt v1[] = {b, h, q_idx};
  offsets[1] = fj::ivGradOffset(cap.tensor[0], grads.stride[0], 3, v1);
  slots[1] = 0;
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
  const fj::IvInt v0[] = {b, h, q_idx};
  const fj::IvFloat v1 = fj::ivLoadFloat(cap.tensor[0], fj::kElemF32, 3, v0);
  const fj::IvFloat v2 = fj::ivAdd(score, v1);
  const fj::IvInt v3[] = {b, h, kv_idx};
  const fj::IvFloat v4 = fj::ivLoadFloat(cap.tensor[0], fj::kElemF32, 3, v3);
  const fj::IvFloat v5 = fj::ivSub(v2, v4);
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
