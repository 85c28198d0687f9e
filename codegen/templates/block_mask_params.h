// Parameters of the block-mask kernels and the block classes they write: plain C shared by the host
// (runtime/BlockMaskGpu.cpp fills it, runtime/BlockMaskBuild.h uses the classes) and the NVRTC source
// (codegen/templates/block_mask.cuh), so the two sides cannot drift apart.
#pragma once

#if !defined(__CUDACC_RTC__)
#include "dsl/Semantics.h"
#endif

namespace fjk {

/// Block classes.
constexpr unsigned char kBlockEmpty = 0;
constexpr unsigned char kBlockPartial = 1;
constexpr unsigned char kBlockFull = 2;
/// Threads of the classify kernel (one CTA per (b, h, q block) row).
constexpr int kClassifyThreads = 256;

struct BlockMaskParams {
  int batch;   ///< stored batch (1 when the mask does not read b)
  int heads;   ///< stored heads (1 when the mask does not read h)
  int len_q;
  int len_kv;
  int block_q;
  int block_kv;
  int num_q;   ///< q blocks
  int num_kv;  ///< kv blocks
  unsigned char* classes;  ///< [batch][heads][num_q][num_kv]
  int* kv_num;             ///< [batch][heads][num_q]
  int* kv_idx;             ///< [batch][heads][num_q][num_kv]
  int* full_kv_num;
  int* full_kv_idx;
  int* q_num;              ///< [batch][heads][num_kv]
  int* q_idx;              ///< [batch][heads][num_kv][num_q]
  int* full_q_num;
  int* full_q_idx;
  fj::CaptureArgs cap;
};

}  // namespace fjk
