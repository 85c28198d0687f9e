// Launch parameters of the flexjit attention forward kernel: plain C structs shared by the host, which
// fills them, and the generated CUDA code, which reads them as one __grid_constant__ kernel parameter.
//
// Compiled two ways: by the host compiler (runtime/, bench/fwd_selftest.cu) and by NVRTC as part of the
// kernel source, where codegen's include expander pastes every `#include "path"` (repository-root paths,
// each file once). Only plain C types (no <cstdint>): NVRTC compiles without the toolkit headers.
//
// Layout contract (checked by the host, see codegen/AttentionConfig.h):
//   Q [B, Hq, Lq, D], K [B, Hkv, Lkv, D], V [B, Hkv, Lkv, Dv], O [B, Hq, Lq, Dv] in fp16 or bf16, the last
//   dim contiguous, every other stride in elements and a multiple of 8, every base pointer 16-byte
//   aligned (the kernel moves rows in 16-byte pieces). LSE [B, Hq, Lq] float32, any strides.
#pragma once

#include "dsl/Semantics.h"

namespace fjk {

/// Element strides of a [B, H, L, ...] tensor in its batch, head and sequence dims (the head dim is
/// contiguous and has no stride here).
struct BhlStrides {
  long long b;
  long long h;
  long long l;
};

/// One list of torch's BlockMask (partial blocks: kv_num_blocks / kv_indices; full blocks:
/// full_kv_num_blocks / full_kv_indices), int32 tensors num_blocks [B, H, nQBlocks] and
/// indices [B, H, nQBlocks, nKvBlocks]. A stride of 0 in b or h broadcasts (torch allows B = 1 / H = 1
/// block masks). num_blocks == null means the list is empty.
struct BlockList {
  const int* num_blocks;
  const int* indices;
  long long num_stride_b;
  long long num_stride_h;
  long long num_stride_q;
  long long idx_stride_b;
  long long idx_stride_h;
  long long idx_stride_q;
  long long idx_stride_kv;
};

/// Everything the forward kernel reads. Filled by the host, passed by value.
struct FwdParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;  ///< natural-log logsumexp of each row, like torch; -inf for fully masked rows
  float* max_score;  ///< optional (null: not written): each row's max score, natural units (return_aux)
  /// prob_mod variants whose prob_mod reads num_visible: [B, Hq, Lq] int32, contiguous, each row's count of
  /// keys the mask keeps (written by the statistics pass, read by the apply passes); null otherwise.
  int* row_visible;
  BhlStrides q_stride;
  BhlStrides k_stride;
  BhlStrides v_stride;
  BhlStrides o_stride;
  BhlStrides lse_stride;
  BhlStrides max_score_stride;
  int batch;
  int heads_q;
  int heads_kv;
  int q_per_kv;  ///< heads_q / heads_kv (GQA: kv head = h / q_per_kv)
  int len_q;
  int len_kv;
  float scale;  ///< multiplies q.k before score_mod (torch default 1/sqrt(D)); must be > 0
  int sched_heads;  ///< (batch, head) pairs per scheduling group: FwdLaunch::scheduleHeads; <= 0: default (8)
  int mask_block_q;   ///< BlockMask rows per block (torch default 128); a multiple of the kernel's kBlockM
  int mask_block_kv;  ///< BlockMask columns per block (torch default 128); a multiple of kBlockN
  BlockList partial;  ///< blocks where mask_mod is evaluated element-wise
  BlockList full;     ///< blocks known to be all-true: mask_mod is skipped
  fj::CaptureArgs cap;
};

}  // namespace fjk
