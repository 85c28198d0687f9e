// BlockMask: layout, the CPU builders (fast interval-based and the element-wise oracle), pictures and
// conversions. The GPU builder is in BlockMaskGpu.cpp.
#include "runtime/BlockMask.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "dsl/Interpreter.h"
#include "runtime/BlockMaskBuild.h"
#include "runtime/CudaDriver.h"
#include "runtime/Device.h"

namespace flexjit {

namespace {

void checkSizes(int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int blockQ, int blockKV) {
  if (B < 1 || H < 1 || Lq < 1 || Lkv < 1)
    throw Error(fmt::format("create_block_mask: B={}, H={}, Q_LEN={}, KV_LEN={}; all must be at least 1", B, H, Lq, Lkv));
  if (blockQ < 1 || blockKV < 1)
    throw Error(fmt::format("create_block_mask: block sizes must be positive, got {} x {}", blockQ, blockKV));
  if (Lq > INT32_MAX || Lkv > INT32_MAX)
    throw Error("create_block_mask: sequence lengths above 2^31-1 do not fit int32 indices");
}

/// The box of positions of block pair (qb, kvb), clipped to the sequence lengths.
Box blockBox(const BlockMaskShape& s, int64_t b, int64_t h, int64_t qb, int64_t kvb) {
  return Box{fj::ivInt(b, b), fj::ivInt(h, h),
             fj::ivInt(qb * s.blockQ, std::min<int64_t>(s.lenQ, (qb + 1) * s.blockQ) - 1),
             fj::ivInt(kvb * s.blockKV, std::min<int64_t>(s.lenKV, (kvb + 1) * s.blockKV) - 1)};
}

/// Element-wise class of a block: evaluates the mask at every position until both outcomes are seen.
uint8_t classifyElementwise(const Program& p, const Box& box) {
  bool anyTrue = false, anyFalse = false;
  for (int64_t q = box.q.lo; q <= box.q.hi; ++q)
    for (int64_t kv = box.kv.lo; kv <= box.kv.hi; ++kv) {
      (p.mask({int32_t(box.b.lo), int32_t(box.h.lo), int32_t(q), int32_t(kv)}) ? anyTrue : anyFalse) = true;
      if (anyTrue && anyFalse) return kBlockPartial;
    }
  return anyTrue ? kBlockFull : kBlockEmpty;
}

BlockMask buildOnCpu(const MaskMod& mask, const BlockMaskShape& s, bool useIntervals) {
  Program p(mask);
  p.bindCaptures();
  std::vector<uint8_t> classes(static_cast<size_t>(s.storedB * s.storedH * s.numQ * s.numKV));
  size_t i = 0;
  for (int64_t b = 0; b < s.storedB; ++b)
    for (int64_t h = 0; h < s.storedH; ++h)
      for (int64_t qb = 0; qb < s.numQ; ++qb)
        for (int64_t kvb = 0; kvb < s.numKV; ++kvb, ++i) {
          Box box = blockBox(s, b, h, qb, kvb);
          BlockClass c = useIntervals ? p.classify(box) : BlockClass::Partial;
          classes[i] = c == BlockClass::Empty  ? kBlockEmpty
                       : c == BlockClass::Full ? kBlockFull
                                               : classifyElementwise(p, box);
        }
  BlockMask m = blockMaskFromClasses(classes, s, Device::cpu());
  m.mask = mask;
  return m;
}

std::vector<int32_t> hostInts(const Tensor& t) { return t.toVector<int32_t>(); }

}  // namespace

BlockMaskShape blockMaskShape(const MaskMod* mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int blockQ,
                              int blockKV) {
  checkSizes(B, H, Lq, Lkv, blockQ, blockKV);
  BlockMaskShape s;
  s.batch = B;
  s.heads = H;
  s.storedB = (mask && maskReadsParam(*mask, Param::B)) ? B : 1;
  s.storedH = (mask && maskReadsParam(*mask, Param::H)) ? H : 1;
  s.lenQ = Lq;
  s.lenKV = Lkv;
  s.blockQ = blockQ;
  s.blockKV = blockKV;
  s.numQ = (Lq + blockQ - 1) / blockQ;
  s.numKV = (Lkv + blockKV - 1) / blockKV;
  return s;
}

BlockMask blockMaskWithShape(const BlockMaskShape& s) {
  BlockMask m;
  m.batch = s.batch;
  m.heads = s.heads;
  m.lenQ = s.lenQ;
  m.lenKV = s.lenKV;
  m.blockQ = s.blockQ;
  m.blockKV = s.blockKV;
  m.numQBlocks = s.numQ;
  m.numKVBlocks = s.numKV;
  return m;
}

BlockMask blockMaskFromClasses(const std::vector<uint8_t>& classes, const BlockMaskShape& s, Device device) {
  const int64_t rows = s.storedB * s.storedH;
  std::vector<int32_t> kvNum(rows * s.numQ), kvIdx(rows * s.numQ * s.numKV), fullKvNum(kvNum.size()),
      fullKvIdx(kvIdx.size()), qNum(rows * s.numKV), qIdx(rows * s.numKV * s.numQ), fullQNum(qNum.size()),
      fullQIdx(qIdx.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t qb = 0; qb < s.numQ; ++qb)
      for (int64_t kvb = 0; kvb < s.numKV; ++kvb) {
        uint8_t c = classes[(r * s.numQ + qb) * s.numKV + kvb];
        if (c == kBlockEmpty) continue;
        auto& num = c == kBlockFull ? fullKvNum : kvNum;
        auto& idx = c == kBlockFull ? fullKvIdx : kvIdx;
        int64_t row = r * s.numQ + qb;
        idx[row * s.numKV + num[row]++] = static_cast<int32_t>(kvb);
        auto& qn = c == kBlockFull ? fullQNum : qNum;
        auto& qi = c == kBlockFull ? fullQIdx : qIdx;
        int64_t col = r * s.numKV + kvb;
        qi[col * s.numQ + qn[col]++] = static_cast<int32_t>(qb);
      }
  }
  BlockMask m = blockMaskWithShape(s);
  auto make = [&](const std::vector<int32_t>& v, std::vector<int64_t> shape) {
    return Tensor::fromVector(v, DType::I32, std::move(shape), device);
  };
  m.kvNumBlocks = make(kvNum, {s.storedB, s.storedH, s.numQ});
  m.kvIndices = make(kvIdx, {s.storedB, s.storedH, s.numQ, s.numKV});
  m.fullKvNumBlocks = make(fullKvNum, {s.storedB, s.storedH, s.numQ});
  m.fullKvIndices = make(fullKvIdx, {s.storedB, s.storedH, s.numQ, s.numKV});
  m.qNumBlocks = make(qNum, {s.storedB, s.storedH, s.numKV});
  m.qIndices = make(qIdx, {s.storedB, s.storedH, s.numKV, s.numQ});
  m.fullQNumBlocks = make(fullQNum, {s.storedB, s.storedH, s.numKV});
  m.fullQIndices = make(fullQIdx, {s.storedB, s.storedH, s.numKV, s.numQ});
  return m;
}

BlockMaskBuildFence::BlockMaskBuildFence(int deviceOrdinal, CUstream stream) : device_(deviceOrdinal) {
  ScopedContext context(device_);
  // Timing off: the cheapest event, only waited on.
  event_ = CudaDriver::get().eventCreate(CU_EVENT_DISABLE_TIMING);
  CudaDriver::get().eventRecord(event_, stream);
}

BlockMaskBuildFence::~BlockMaskBuildFence() {
  try {
    ScopedContext context(device_);
    CudaDriver::get().eventDestroy(event_);
  } catch (const std::exception&) {
    // At process exit the driver may already be shut down: the event goes with the context.
  }
}

void BlockMaskBuildFence::wait() const {
  ScopedContext context(device_);
  CudaDriver::get().eventSynchronize(event_);
}

void BlockMask::waitForLists() const {
  if (pendingBuild) pendingBuild->wait();
}

std::vector<uint8_t> blockClasses(const BlockMask& m) {
  m.waitForLists();
  BlockMaskShape s = blockMaskShape(nullptr, m.batch, m.heads, m.lenQ, m.lenKV, m.blockQ, m.blockKV);
  s.storedB = m.storedBatch();
  s.storedH = m.storedHeads();
  std::vector<int32_t> kvNum = hostInts(m.kvNumBlocks), kvIdx = hostInts(m.kvIndices),
                       fullNum = hostInts(m.fullKvNumBlocks), fullIdx = hostInts(m.fullKvIndices);
  std::vector<uint8_t> classes(static_cast<size_t>(s.storedB * s.storedH * s.numQ * s.numKV), kBlockEmpty);
  for (int64_t row = 0; row < s.storedB * s.storedH * s.numQ; ++row) {
    for (int32_t j = 0; j < kvNum[row]; ++j) classes[row * s.numKV + kvIdx[row * s.numKV + j]] = kBlockPartial;
    for (int32_t j = 0; j < fullNum[row]; ++j) classes[row * s.numKV + fullIdx[row * s.numKV + j]] = kBlockFull;
  }
  return classes;
}

bool maskReadsParam(const MaskMod& mask, Param p) {
  const Program program(mask);  // named: iterating a temporary's member would dangle
  for (const Instr& in : program.instrs())
    if (in.op == Op::Param && in.param == p) return true;
  return false;
}

BlockMask createBlockMaskReference(const MaskMod& mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv, int blockQ,
                                   int blockKV) {
  return buildOnCpu(mask, blockMaskShape(&mask, B, H, Lq, Lkv, blockQ, blockKV), /*useIntervals=*/false);
}

BlockMask createBlockMask(const MaskMod& mask, int64_t B, int64_t H, int64_t Lq, int64_t Lkv, Device device,
                          int blockQ, int blockKV, void* stream, bool wait) {
  BlockMaskShape s = blockMaskShape(&mask, B, H, Lq, Lkv, blockQ, blockKV);
  if (device.kind == DeviceKind::CUDA) {
    BlockMask m = buildBlockMaskOnGpu(mask, s, device, stream, wait);
    m.mask = mask;
    return m;
  }
  return buildOnCpu(mask, s, /*useIntervals=*/true);
}

BlockMask fullBlockMask(int64_t Lq, int64_t Lkv, Device device, int blockQ, int blockKV) {
  BlockMaskShape s = blockMaskShape(nullptr, 1, 1, Lq, Lkv, blockQ, blockKV);
  return blockMaskFromClasses(std::vector<uint8_t>(s.numQ * s.numKV, kBlockFull), s, device);
}

double BlockMask::sparsity() const {
  waitForLists();
  auto sum = [](const Tensor& t) {
    std::vector<int32_t> v = t.toVector<int32_t>();
    return std::accumulate(v.begin(), v.end(), int64_t{0});
  };
  // torch's formula: visited blocks count whole, also where they overhang the sequence end (so with lengths
  // that are not block multiples the result can be negative, as in torch).
  double positions = double(storedBatch()) * storedHeads() * lenQ * lenKV;
  double visited = double(sum(kvNumBlocks) + sum(fullKvNumBlocks)) * blockQ * blockKV;
  return positions == 0 ? 0.0 : 100.0 * (1.0 - visited / positions);
}

std::string BlockMask::toString(int maxWidth, int maxHeads) const {
  std::vector<uint8_t> classes = blockClasses(*this);
  int64_t cells = std::max<int64_t>(1, maxWidth / 2);
  int64_t group = std::max<int64_t>(1, (std::max(numQBlocks, numKVBlocks) + cells - 1) / cells);
  std::string out = fmt::format("BlockMask(shape=({}, {}, {}, {}), block={}x{}, sparsity={:.2f}%{})\n", batch, heads,
                                lenQ, lenKV, blockQ, blockKV, sparsity(),
                                group > 1 ? fmt::format(", {} blocks per cell", group * group) : "");
  int shown = 0;
  for (int64_t b = 0; b < storedBatch(); ++b)
    for (int64_t h = 0; h < storedHeads(); ++h) {
      if (shown++ == maxHeads) {
        out += "...\n";
        return out;
      }
      out += fmt::format("(b={}, h={}){}\n", storedBatch() == 1 ? "*" : std::to_string(b),
                         storedHeads() == 1 ? "*" : std::to_string(h), "");
      const uint8_t* base = classes.data() + (b * storedHeads() + h) * numQBlocks * numKVBlocks;
      for (int64_t q0 = 0; q0 < numQBlocks; q0 += group) {
        for (int64_t k0 = 0; k0 < numKVBlocks; k0 += group) {
          bool allFull = true, allEmpty = true;
          for (int64_t q = q0; q < std::min(numQBlocks, q0 + group); ++q)
            for (int64_t k = k0; k < std::min(numKVBlocks, k0 + group); ++k) {
              uint8_t c = base[q * numKVBlocks + k];
              allFull &= c == kBlockFull;
              allEmpty &= c == kBlockEmpty;
            }
          out += allFull ? "\u2588\u2588" : allEmpty ? "  " : "\u2591\u2591";
        }
        out += "\n";
      }
    }
  return out;
}

BlockMask BlockMask::to(Device d) const {
  waitForLists();
  BlockMask m = *this;
  m.pendingBuild.reset();  // the copies below run after the wait, on the legacy stream, synchronously
  for (Tensor* t : {&m.kvNumBlocks, &m.kvIndices, &m.fullKvNumBlocks, &m.fullKvIndices, &m.qNumBlocks, &m.qIndices,
                    &m.fullQNumBlocks, &m.fullQIndices})
    *t = t->to(d);
  return m;
}

Tensor BlockMask::toDense() const {
  std::vector<uint8_t> classes = blockClasses(*this);
  std::optional<Program> p;
  if (mask) {
    p.emplace(*mask);
    p->bindCaptures();
  }
  std::vector<uint8_t> dense(static_cast<size_t>(storedBatch() * storedHeads() * lenQ * lenKV));
  size_t i = 0;
  for (int64_t b = 0; b < storedBatch(); ++b)
    for (int64_t h = 0; h < storedHeads(); ++h)
      for (int64_t q = 0; q < lenQ; ++q)
        for (int64_t kv = 0; kv < lenKV; ++kv, ++i) {
          uint8_t c = classes[((b * storedHeads() + h) * numQBlocks + q / blockQ) * numKVBlocks + kv / blockKV];
          dense[i] = c == kBlockFull || (c == kBlockPartial && (!p || p->mask({int32_t(b), int32_t(h), int32_t(q), int32_t(kv)})));
        }
  return Tensor::fromVector(dense, DType::Bool, {storedBatch(), storedHeads(), lenQ, lenKV}, Device::cpu());
}

BlockMask BlockMask::fromKvBlocks(const TensorView& kvNum, const TensorView& kvIdx, const TensorView* fullNum,
                                  const TensorView* fullIdx, int blockQ, int blockKV, int64_t lenQ, int64_t lenKV,
                                  std::optional<MaskMod> mask) {
  return blockMaskFromKvLists(kvNum, kvIdx, fullNum, fullIdx, blockQ, blockKV, lenQ, lenKV, std::move(mask));
}

}  // namespace flexjit
