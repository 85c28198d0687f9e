// flexjit variant: score_mod 1b79e1dbd370ac04 / mask_mod fd4853dedc1e37c4 (structural keys). Generated; do not edit.
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
  const int v0 = 124;
  const int v1 = 3;
  const int v2 = 128;
  const int v3 = fj::floorDivI(q_idx, v2);
  const int v4 = fj::maxI(v3, v1);
  const int v5 = fj::minI(v4, v0);
  const int v6 = fj::floorDivI(kv_idx, v2);
  const int v7 = fj::subI(v5, v6);
  const int v8 = fj::absI(v7);
  const bool v9 = (v8 <= v1);
  const int v10 = fj::modI(q_idx, v2);
  const int v11 = fj::maxI(v10, v1);
  const int v12 = fj::minI(v11, v0);
  const int v13 = fj::modI(kv_idx, v2);
  const int v14 = fj::subI(v12, v13);
  const int v15 = fj::absI(v14);
  const bool v16 = (v15 <= v1);
  const bool v17 = (v9 && v16);
  return v17;
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
  const int v0 = 124;
  const int v1 = 3;
  const int v2 = 128;
  const int v3 = fj::floorDivI(q_idx, v2);
  const int v4 = fj::maxI(v3, v1);
  const int v5 = fj::minI(v4, v0);
  const int v6 = fj::modI(q_idx, v2);
  const int v7 = fj::maxI(v6, v1);
  const int v8 = fj::minI(v7, v0);
  return mask_mod_Row{v5, v8};
}
FJ_HD mask_mod_Col mask_mod_col(int b, int h, int kv_idx, const fj::CaptureArgs& cap) {
  const int v0 = 128;
  const int v1 = fj::floorDivI(kv_idx, v0);
  const int v2 = fj::modI(kv_idx, v0);
  return mask_mod_Col{v1, v2};
}
FJ_HD bool mask_mod_split(int b, int h, int q_idx, int kv_idx, const mask_mod_Row& row, const mask_mod_Col& col, const fj::CaptureArgs& cap) {
  const int v0 = 3;
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
  const fj::IvInt v0 = fj::ivInt(124, 124);
  const fj::IvInt v1 = fj::ivInt(3, 3);
  const fj::IvInt v2 = fj::ivInt(128, 128);
  const fj::IvInt v3 = fj::ivFloorDiv(q_idx, v2);
  const fj::IvInt v4 = fj::ivMax(v3, v1);
  const fj::IvInt v5 = fj::ivMin(v4, v0);
  const fj::IvInt v6 = fj::ivFloorDiv(kv_idx, v2);
  const fj::IvInt v7 = fj::ivSub(v5, v6);
  const fj::IvInt v8 = fj::ivAbs(v7);
  const fj::IvBool v9 = fj::ivLe(v8, v1);
  const fj::IvInt v10 = fj::ivMod(q_idx, v2);
  const fj::IvInt v11 = fj::ivMax(v10, v1);
  const fj::IvInt v12 = fj::ivMin(v11, v0);
  const fj::IvInt v13 = fj::ivMod(kv_idx, v2);
  const fj::IvInt v14 = fj::ivSub(v12, v13);
  const fj::IvInt v15 = fj::ivAbs(v14);
  const fj::IvBool v16 = fj::ivLe(v15, v1);
  const fj::IvBool v17 = fj::ivAnd(v9, v16);
  return v17;
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
