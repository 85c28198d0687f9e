// flexjit variant: score_mod 1b79e1dbd370ac04 / mask_mod 87c3b3e3bdba1a8e (structural keys). Generated; do not edit.
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
  const int v0 = 1;
  const int v1 = 0;
  const int v2 = fj::loadInt(cap.tensor[0], fj::kElemI64, fj::offsetOf(cap.tensor[0], kv_idx));
  const int v3 = fj::loadInt(cap.tensor[1], fj::kElemI64, fj::offsetOf(cap.tensor[1], v2, v1));
  const bool v4 = (q_idx >= v3);
  const int v5 = fj::loadInt(cap.tensor[1], fj::kElemI64, fj::offsetOf(cap.tensor[1], v2, v0));
  const bool v6 = (q_idx < v5);
  const bool v7 = (v4 && v6);
  return v7;
}

struct mask_mod_Row {
};
struct mask_mod_Col {
  int c0;
  int c1;
};
FJ_HD mask_mod_Row mask_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
  return mask_mod_Row{};
}
FJ_HD mask_mod_Col mask_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = 1;
  const int v1 = 0;
  const int v2 = fj::loadInt(cap.tensor[0], fj::kElemI64, fj::offsetOf(cap.tensor[0], kv_idx));
  const int v3 = fj::loadInt(cap.tensor[1], fj::kElemI64, fj::offsetOf(cap.tensor[1], v2, v1));
  const int v4 = fj::loadInt(cap.tensor[1], fj::kElemI64, fj::offsetOf(cap.tensor[1], v2, v0));
  return mask_mod_Col{v3, v4};
}
FJ_HD bool mask_mod_split(int b, int h, int q_idx, int kv_idx, const mask_mod_Row& row, const mask_mod_Col& col, const fj::CaptureArgs& cap) {
  const bool v0 = (q_idx >= col.c0);
  const bool v1 = (q_idx < col.c1);
  const bool v2 = (v0 && v1);
  return v2;
}

FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
  return grad_out;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvInt v0 = fj::ivInt(1, 1);
  const fj::IvInt v1 = fj::ivInt(0, 0);
  const fj::IvInt v2[] = {kv_idx};
  const fj::IvInt v3 = fj::ivLoadInt(cap.tensor[0], fj::kElemI64, 1, v2);
  const fj::IvInt v4[] = {v3, v1};
  const fj::IvInt v5 = fj::ivLoadInt(cap.tensor[1], fj::kElemI64, 2, v4);
  const fj::IvBool v6 = fj::ivGe(q_idx, v5);
  const fj::IvInt v7[] = {v3, v0};
  const fj::IvInt v8 = fj::ivLoadInt(cap.tensor[1], fj::kElemI64, 2, v7);
  const fj::IvBool v9 = fj::ivLt(q_idx, v8);
  const fj::IvBool v10 = fj::ivAnd(v6, v9);
  return v10;
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
