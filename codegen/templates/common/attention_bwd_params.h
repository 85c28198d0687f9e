// Launch parameters of the flexjit attention backward kernels (preprocess, dK/dV, dQ, dQ convert): one
// plain C struct filled by the host (runtime/AttentionBackwardGpu.cpp) and read by the generated CUDA code
// as a __grid_constant__ kernel parameter.
//
// Compiled by the host compiler and by NVRTC (codegen's include expander pastes every `#include "path"`),
// so only plain C types: NVRTC compiles without the toolkit headers.
//
// Layout contract (checked by the host, see runtime/AttentionBackwardGpu.cpp): Q, K, V, O, dO, dQ, dK, dV
// are [B, H, L, D] in fp16 or bf16 with a contiguous last dim, every other stride a multiple of 8 elements
// and 16-byte aligned base pointers (rows move in 16-byte pieces). LSE [B, Hq, Lq] float32, any strides.
// The workspace arrays (lse2, delta, dq_accum) are flexjit's own, contiguous, with len_q_pad rows per head.
#pragma once

#include "codegen/templates/common/attention_params.h"

namespace fjk {

/// Everything the backward kernels read. Filled by the host, passed by value.
struct BwdParams {
  const void* q;
  const void* k;
  const void* v;
  const void* o;  ///< what the preprocess dots with dO: O, or a prob_mod's delta weights (prob_pass.cuh)
  const void* dout;
  const float* lse;  ///< the forward's natural-log LSE; -inf marks a fully masked row
  const float* dlse; ///< optional upstream gradient of the LSE (null: 0); enters Delta (the preprocess)
  void* dq;
  void* dk;
  void* dv;
  /// [B, Hq, len_q_pad, D] float32 accumulator of the atomic dQ path (unscaled dS K); null otherwise.
  float* dq_accum;
  /// [B, Hq, len_q_pad]: LSE * log2(e), and +inf for rows without a softmax (written by the preprocess).
  float* lse2;
  /// [B, Hq, len_q_pad]: rowsum(dO * O), 0 for padding rows (written by the preprocess).
  float* delta;
  BhlStrides q_stride;
  BhlStrides k_stride;
  BhlStrides v_stride;
  BhlStrides o_stride;
  BhlStrides do_stride;
  BhlStrides lse_stride;
  BhlStrides dlse_stride;
  BhlStrides dq_stride;
  BhlStrides dk_stride;
  BhlStrides dv_stride;
  int batch;
  int heads_q;
  int heads_kv;
  int q_per_kv;   ///< heads_q / heads_kv (GQA: kv head = h / q_per_kv)
  int len_q;
  int len_kv;
  int len_q_pad;  ///< len_q rounded up to kBwdLenPad: every q tile of a kernel lies inside the workspace
  float scale;    ///< multiplies q.k before score_mod; > 0
  int mask_block_q;
  int mask_block_kv;
  /// The forward lists (kv_num_blocks / kv_indices and full_*): rows are q blocks. Read by the dQ kernel.
  BlockList kv_partial;
  BlockList kv_full;
  /// The transposed lists (q_num_blocks / q_indices and full_q_*): num_blocks [Bs, Hs, nKvBlocks],
  /// indices [Bs, Hs, nKvBlocks, nQBlocks]. BlockList's "q" strides then step over kv blocks and its "kv"
  /// stride over the listed q blocks. Read by the dK/dV kernel.
  BlockList q_partial;
  BlockList q_full;
  /// prob_mod variants whose prob_mod reads num_visible: [B, Hq, Lq] int32, contiguous, the forward's
  /// counts (ForwardOutputs::rowVisible); null otherwise.
  const int* row_visible;
  fj::CaptureArgs cap;
  fj::GradArgs grads;  ///< captured-tensor gradients (float32, atomically added by fjv::score_mod_grad)
};

/// Row granularity of the workspace arrays (len_q_pad); a multiple of every kernel's kBlockM.
constexpr int kBwdLenPad = 128;

}  // namespace fjk
