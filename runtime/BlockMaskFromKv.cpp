// BlockMask::fromKvBlocks: a block mask from user-given kv block lists (e.g. NSA's top-k selection),
// validated so a bad index can never send a kernel out of bounds.
#include <fmt/format.h>

#include "runtime/BlockMaskBuild.h"

namespace flexjit {

namespace {

std::vector<int32_t> readInts(const TensorView& v, const char* what) {
  if (v.dtype != DType::I32)
    throw Error(fmt::format("BlockMask.from_kv_blocks: {} must be int32, got {}", what, v.describe()));
  // Gather through the strides into a contiguous host copy.
  Tensor host = Tensor::empty(DType::I32, v.shape, Device::cpu());
  if (v.isContiguous()) {
    copyBytes(host.data(), Device::cpu(), v.data, v.device, host.bytes());
    return host.toVector<int32_t>();
  }
  throw Error(fmt::format("BlockMask.from_kv_blocks: {} must be contiguous ({})", what, v.describe()));
}

}  // namespace

BlockMask blockMaskFromKvLists(const TensorView& kvNum, const TensorView& kvIdx, const TensorView* fullNum,
                               const TensorView* fullIdx, int blockQ, int blockKV, int64_t lenQ, int64_t lenKV,
                               std::optional<MaskMod> mask) {
  if (kvNum.rank() != 3 || kvIdx.rank() != 4)
    throw Error(fmt::format("BlockMask.from_kv_blocks: kv_num_blocks must be [B, H, num_q_blocks] and kv_indices "
                            "[B, H, num_q_blocks, num_kv_blocks]; got {} and {}", kvNum.describe(), kvIdx.describe()));
  for (int d = 0; d < 3; ++d)
    if (kvIdx.shape[d] != kvNum.shape[d])
      throw Error(fmt::format("BlockMask.from_kv_blocks: kv_indices {} does not match kv_num_blocks {} in dim {}",
                              kvIdx.describe(), kvNum.describe(), d));
  if ((fullNum == nullptr) != (fullIdx == nullptr))
    throw Error("BlockMask.from_kv_blocks: give both full_kv_num_blocks and full_kv_indices, or neither");
  int64_t B = kvNum.shape[0], H = kvNum.shape[1], nQ = kvNum.shape[2], nKV = kvIdx.shape[3];
  if (fullNum && (fullNum->shape != kvNum.shape || fullIdx->shape != kvIdx.shape))
    throw Error("BlockMask.from_kv_blocks: the full_* lists must have the shapes of kv_num_blocks / kv_indices");
  BlockMaskShape s = blockMaskShape(nullptr, B, H, lenQ < 0 ? nQ * blockQ : lenQ,
                                    lenKV < 0 ? nKV * blockKV : lenKV, blockQ, blockKV);
  if (s.numQ != nQ || s.numKV != nKV)
    throw Error(fmt::format("BlockMask.from_kv_blocks: Q_LEN={} and KV_LEN={} with block {}x{} need {} x {} blocks, "
                            "the lists have {} x {}", s.lenQ, s.lenKV, blockQ, blockKV, s.numQ, s.numKV, nQ, nKV));
  s.storedB = B;
  s.storedH = H;
  std::vector<uint8_t> classes(static_cast<size_t>(B * H * nQ * nKV), kBlockEmpty);
  auto mark = [&](const TensorView& num, const TensorView& idx, uint8_t cls, const char* what) {
    std::vector<int32_t> n = readInts(num, what), ix = readInts(idx, what);
    for (int64_t row = 0; row < B * H * nQ; ++row) {
      if (n[row] < 0 || n[row] > nKV)
        throw Error(fmt::format("BlockMask.from_kv_blocks: {} count {} at row {} is outside [0, {}]", what, n[row], row, nKV));
      for (int32_t j = 0; j < n[row]; ++j) {
        int32_t k = ix[row * nKV + j];
        if (k < 0 || k >= nKV)
          throw Error(fmt::format("BlockMask.from_kv_blocks: {} index {} at row {} is outside [0, {})", what, k, row, nKV));
        uint8_t& c = classes[row * nKV + k];
        if (c != kBlockEmpty)
          throw Error(fmt::format("BlockMask.from_kv_blocks: kv block {} is listed twice in row {}", k, row));
        c = cls;
      }
    }
  };
  mark(kvNum, kvIdx, kBlockPartial, "kv_num_blocks/kv_indices");
  if (fullNum) mark(*fullNum, *fullIdx, kBlockFull, "full_kv_num_blocks/full_kv_indices");
  BlockMask m = blockMaskFromClasses(classes, s, kvNum.device);
  m.mask = std::move(mask);
  return m;
}

}  // namespace flexjit
