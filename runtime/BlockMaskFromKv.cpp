// Block masks from lists made outside the builders:
//   BlockMask::fromKvBlocks: user-given kv block lists (e.g. NSA's top-k selection), read on the host and
//     validated so a bad index can never send a kernel out of bounds;
//   BlockMask::borrowLists: all eight lists already built (by torch on the GPU), wrapped without a copy or a
//     read, so that making the mask never waits for the device.
#include <fmt/format.h>
#include <fmt/ranges.h>

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

void checkList(const TensorView& v, const char* what, const std::vector<int64_t>& shape, Device device) {
  if (v.dtype != DType::I32 || v.shape != shape || !v.isContiguous() || v.device != device)
    throw Error(fmt::format("BlockMask: {} must be a contiguous int32 tensor of shape [{}] on {}, got {}", what,
                            fmt::join(shape, ", "), device.str(), v.describe()));
}

}  // namespace

BlockMask BlockMask::borrowLists(const BlockMaskListViews& l, int64_t batch, int64_t heads, int64_t lenQ,
                                 int64_t lenKV, int blockQ, int blockKV, std::optional<MaskMod> mask,
                                 std::shared_ptr<void> owner) {
  BlockMaskShape s = blockMaskShape(nullptr, batch, heads, lenQ, lenKV, blockQ, blockKV);
  if (l.kvNum.rank() != 3)
    throw Error(fmt::format("BlockMask: kv_num_blocks must be [B, H, num_q_blocks], got {}", l.kvNum.describe()));
  s.storedB = l.kvNum.shape[0];
  s.storedH = l.kvNum.shape[1];
  // A stored size of 1 is broadcast; any other must be the size the mask describes.
  if ((s.storedB != 1 && s.storedB != batch) || (s.storedH != 1 && s.storedH != heads))
    throw Error(fmt::format("BlockMask: lists for [{}, {}] batches and heads cannot describe B={}, H={} (each must "
                            "be 1 or equal)", s.storedB, s.storedH, batch, heads));
  const Device device = l.kvNum.device;
  const int64_t B = s.storedB, H = s.storedH;
  checkList(l.kvNum, "kv_num_blocks", {B, H, s.numQ}, device);
  checkList(l.kvIdx, "kv_indices", {B, H, s.numQ, s.numKV}, device);
  checkList(l.fullKvNum, "full_kv_num_blocks", {B, H, s.numQ}, device);
  checkList(l.fullKvIdx, "full_kv_indices", {B, H, s.numQ, s.numKV}, device);
  checkList(l.qNum, "q_num_blocks", {B, H, s.numKV}, device);
  checkList(l.qIdx, "q_indices", {B, H, s.numKV, s.numQ}, device);
  checkList(l.fullQNum, "full_q_num_blocks", {B, H, s.numKV}, device);
  checkList(l.fullQIdx, "full_q_indices", {B, H, s.numKV, s.numQ}, device);
  BlockMask m = blockMaskWithShape(s);
  m.kvNumBlocks = Tensor::borrow(l.kvNum, owner);
  m.kvIndices = Tensor::borrow(l.kvIdx, owner);
  m.fullKvNumBlocks = Tensor::borrow(l.fullKvNum, owner);
  m.fullKvIndices = Tensor::borrow(l.fullKvIdx, owner);
  m.qNumBlocks = Tensor::borrow(l.qNum, owner);
  m.qIndices = Tensor::borrow(l.qIdx, owner);
  m.fullQNumBlocks = Tensor::borrow(l.fullQNum, owner);
  m.fullQIndices = Tensor::borrow(l.fullQIdx, owner);
  m.mask = std::move(mask);
  return m;
}

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
