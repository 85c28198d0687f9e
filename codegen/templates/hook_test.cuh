// A kernel that evaluates a variant's hooks at given positions. CI compiles it for sm_80 and sm_90a to
// prove every emitted hook compiles for real GPU targets; on a GPU it compares the hooks with the CPU
// interpreter. Follows the variant prelude (namespace fjv) in the assembled source.
#pragma once

namespace fjk {

struct HookTestParams {
  int n;                     ///< number of positions
  const int* positions;      ///< [n][4]: b, h, q_idx, kv_idx
  const float* scores;       ///< [n]
  float* scoreOut;           ///< [n]: score_mod
  int* maskOut;              ///< [n]: mask_mod
  float* gradOut;            ///< [n]: score_mod_grad with grad_out = 1
  const long long* boxes;    ///< [n][8]: b, h, q, kv ranges (inclusive)
  int* intervalOut;          ///< [n][2]: mask_mod_interval canFalse, canTrue
  fj::CaptureArgs cap;
  fj::GradArgs grads;
};

}  // namespace fjk

extern "C" __global__ void flexjit_hook_test(const fjk::HookTestParams p) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= p.n) return;
  const int* x = p.positions + 4 * i;
  p.scoreOut[i] = fjv::score_mod(p.scores[i], x[0], x[1], x[2], x[3], p.cap);
  p.maskOut[i] = fjv::mask_mod(x[0], x[1], x[2], x[3], p.cap) ? 1 : 0;
  p.gradOut[i] = fjv::score_mod_grad(p.scores[i], x[0], x[1], x[2], x[3], 1.0f, p.cap, p.grads);
  const long long* r = p.boxes + 8 * i;
  fj::IvBool m = fjv::mask_mod_interval(fj::ivInt(r[0], r[1]), fj::ivInt(r[2], r[3]), fj::ivInt(r[4], r[5]),
                                        fj::ivInt(r[6], r[7]), p.cap);
  p.intervalOut[2 * i] = m.canFalse;
  p.intervalOut[2 * i + 1] = m.canTrue;
}
