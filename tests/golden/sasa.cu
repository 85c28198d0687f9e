// flexjit variant: score_mod 1b79e1dbd370ac04 / mask_mod 3f538c3ded5e3950 (structural keys). Generated; do not edit.
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
  const int v0 = 8;
  const int v1 = 128;
  const int v2 = fj::floorDivI(q_idx, v1);
  const int v3 = fj::floorDivI(kv_idx, v1);
  const int v4 = fj::subI(v2, v3);
  const int v5 = fj::absI(v4);
  const bool v6 = (v5 <= v0);
  const int v7 = fj::modI(q_idx, v1);
  const int v8 = fj::modI(kv_idx, v1);
  const int v9 = fj::subI(v7, v8);
  const int v10 = fj::absI(v9);
  const bool v11 = (v10 <= v0);
  const bool v12 = (v6 && v11);
  return v12;
}

struct mask_mod_Row {
  int r0;
  int r1;
};
struct mask_mod_Col {
  int c0;
  int c1;
};
FJ_HD mask_mod_Row mask_mod_row(int b, int h, int q_idx, const fj::CaptureArgs& cap) {
  const int v0 = 128;
  const int v1 = fj::floorDivI(q_idx, v0);
  const int v2 = fj::modI(q_idx, v0);
  return mask_mod_Row{v1, v2};
}
FJ_HD mask_mod_Col mask_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = 128;
  const int v1 = fj::floorDivI(kv_idx, v0);
  const int v2 = fj::modI(kv_idx, v0);
  return mask_mod_Col{v1, v2};
}
FJ_HD bool mask_mod_split(int b, int h, int q_idx, int kv_idx, const mask_mod_Row& row, const mask_mod_Col& col, const fj::CaptureArgs& cap) {
  const int v0 = 8;
  const int v1 = fj::subI(row.r0, col.c0);
  const int v2 = fj::absI(v1);
  const bool v3 = (v2 <= v0);
  const int v4 = fj::subI(row.r1, col.c1);
  const int v5 = fj::absI(v4);
  const bool v6 = (v5 <= v0);
  const bool v7 = (v3 && v6);
  return v7;
}

FJ_HD float score_mod_grad(float score, int b, int h, int q_idx, int kv_idx, float grad_out, const fj::CaptureArgs& cap, const fj::GradArgs& grads) {
  return grad_out;
}

FJ_HD fj::IvBool mask_mod_interval(fj::IvInt b, fj::IvInt h, fj::IvInt q_idx, fj::IvInt kv_idx, const fj::CaptureArgs& cap) {
  const fj::IvInt v0 = fj::ivInt(8, 8);
  const fj::IvInt v1 = fj::ivInt(128, 128);
  const fj::IvInt v2 = fj::ivFloorDiv(q_idx, v1);
  const fj::IvInt v3 = fj::ivFloorDiv(kv_idx, v1);
  const fj::IvInt v4 = fj::ivSub(v2, v3);
  const fj::IvInt v5 = fj::ivAbs(v4);
  const fj::IvBool v6 = fj::ivLe(v5, v0);
  const fj::IvInt v7 = fj::ivMod(q_idx, v1);
  const fj::IvInt v8 = fj::ivMod(kv_idx, v1);
  const fj::IvInt v9 = fj::ivSub(v7, v8);
  const fj::IvInt v10 = fj::ivAbs(v9);
  const fj::IvBool v11 = fj::ivLe(v10, v0);
  const fj::IvBool v12 = fj::ivAnd(v6, v11);
  return v12;
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
