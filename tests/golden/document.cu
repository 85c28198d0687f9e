// flexjit variant: score_mod 1b79e1dbd370ac04 / mask_mod 280256a4a5be13b2 (structural keys). Generated; do not edit.
namespace fjv {
inline constexpr bool kScoreModIsNoop = true;
inline constexpr bool kMaskModIsNoop = false;
inline constexpr bool kScoreCanBeNegInf = false;
inline constexpr bool kHasTensorGrads = false;
inline constexpr bool kMaskReadsTensors = true;
inline constexpr bool kHasSink = false;
inline constexpr bool kHasProb = false;

FJ_HD float score_mod(float score, int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  return score;
}

FJ_HD bool mask_mod(int b, int h, int q_idx, int kv_idx, const fj::CaptureArgs& cap) {
  const bool v0 = (q_idx >= kv_idx);
  const int v1 = fj::loadInt(cap.tensor[0], fj::kElemI32, fj::offsetOf(cap.tensor[0], q_idx));
  const int v2 = fj::loadInt(cap.tensor[0], fj::kElemI32, fj::offsetOf(cap.tensor[0], kv_idx));
  const bool v3 = (v1 == v2);
  const bool v4 = (v0 && v3);
  return v4;
}

struct mask_mod_Row {
  int r0;
};
struct mask_mod_Col {
  int c0;
};
FJ_HD mask_mod_Row mask_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
  const int v0 = fj::loadInt(cap.tensor[0], fj::kElemI32, fj::offsetOf(cap.tensor[0], q_idx));
  return mask_mod_Row{v0};
}
FJ_HD mask_mod_Col mask_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = fj::loadInt(cap.tensor[0], fj::kElemI32, fj::offsetOf(cap.tensor[0], kv_idx));
  return mask_mod_Col{v0};
}
FJ_HD bool mask_mod_split(int b, int h, int q_idx, int kv_idx, const mask_mod_Row& row, const mask_mod_Col& col, const fj::CaptureArgs& cap) {
  const bool v0 = (q_idx >= kv_idx);
  const bool v1 = (row.r0 == col.c0);
  const bool v2 = (v0 && v1);
  return v2;
}

FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
  return grad_out;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvBool v0 = fj::ivGe(q_idx, kv_idx);
  const fj::IvInt v1[] = {q_idx};
  const fj::IvInt v2 = fj::ivLoadInt(cap.tensor[0], fj::kElemI32, 1, v1);
  const fj::IvInt v3[] = {kv_idx};
  const fj::IvInt v4 = fj::ivLoadInt(cap.tensor[0], fj::kElemI32, 1, v3);
  const fj::IvBool v5 = fj::ivEq(v2, v4);
  const fj::IvBool v6 = fj::ivAnd(v0, v5);
  return v6;
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
  static constexpr bool kMaskSplit = true;
  using MaskRow = fjv::mask_mod_Row;
  using MaskCol = fjv::mask_mod_Col;
  static FJ_HD MaskRow mask_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
    return fjv::mask_mod_row(b, h, q_idx, cap);
  }
  static FJ_HD MaskCol mask_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
    return fjv::mask_mod_col(b, h, kv_idx, cap);
  }
  static FJ_HD bool mask_mod_split(int b, int h, int q_idx, int kv_idx, const MaskRow& row, const MaskCol& col,
                                   const fj::CaptureArgs& cap) {
    return fjv::mask_mod_split(b, h, q_idx, kv_idx, row, col, cap);
  }
  static FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out,
                                    const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
    return fjv::score_mod_grad(score, b, h, q_idx, kv_idx, grad_out, cap, grads);
  }
};
}  // namespace fjv
