// Block masks: the interval-based builder (CPU) equals the element-wise oracle for every seed mask at
// odd sizes; layout, transposition, broadcasting, from_kv_blocks validation, pictures; the GPU builder
// (skipped without a GPU) equals the oracle; its kernels compile for sm_80 / sm_90a.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "codegen/Variant.h"
#include "examples/SeedVariants.h"
#include "runtime/BlockMask.h"
#include "runtime/BlockMaskBuild.h"
#include "runtime/CudaDriver.h"
#include "runtime/Nvrtc.h"

using namespace flexjit;
using examples::makeSeedVariant;
using examples::seedVariantNames;

namespace {

void expectSameIndices(const BlockMask& a, const BlockMask& b, const std::string& what) {
  ASSERT_EQ(a.kvNumBlocks.shape(), b.kvNumBlocks.shape()) << what;
  EXPECT_EQ(a.kvNumBlocks.toVector<int32_t>(), b.kvNumBlocks.toVector<int32_t>()) << what;
  EXPECT_EQ(a.fullKvNumBlocks.toVector<int32_t>(), b.fullKvNumBlocks.toVector<int32_t>()) << what;
  EXPECT_EQ(blockClasses(a), blockClasses(b)) << what;
  EXPECT_EQ(a.qNumBlocks.toVector<int32_t>(), b.qNumBlocks.toVector<int32_t>()) << what;
  EXPECT_EQ(a.fullQNumBlocks.toVector<int32_t>(), b.fullQNumBlocks.toVector<int32_t>()) << what;
  // Index lists, compared only up to each row's count (the rest is unspecified).
  auto rows = [](const Tensor& num, const Tensor& idx, int64_t width) {
    std::vector<int32_t> n = num.toVector<int32_t>(), ix = idx.toVector<int32_t>();
    std::vector<std::vector<int32_t>> out;
    for (size_t r = 0; r < n.size(); ++r) out.emplace_back(ix.begin() + r * width, ix.begin() + r * width + n[r]);
    return out;
  };
  EXPECT_EQ(rows(a.kvNumBlocks, a.kvIndices, a.numKVBlocks), rows(b.kvNumBlocks, b.kvIndices, b.numKVBlocks)) << what;
  EXPECT_EQ(rows(a.fullQNumBlocks, a.fullQIndices, a.numQBlocks), rows(b.fullQNumBlocks, b.fullQIndices, b.numQBlocks)) << what;
}

struct Size {
  int64_t lq, lkv;
  int block;
};
const Size kSizes[] = {{1, 1, 16}, {17, 17, 16}, {127, 129, 16}, {129, 127, 32}, {300, 1000, 64}, {1000, 300, 128}};

}  // namespace

TEST(BlockMask, IntervalBuilderEqualsElementwiseOracle) {
  for (const std::string& name : seedVariantNames())
    for (const Size& sz : kSizes) {
      auto v = makeSeedVariant(name, examples::Shape{2, 3, sz.lq, sz.lkv});
      BlockMask fast = createBlockMask(v.mask, 2, 3, sz.lq, sz.lkv, Device::cpu(), sz.block, sz.block);
      BlockMask ref = createBlockMaskReference(v.mask, 2, 3, sz.lq, sz.lkv, sz.block, sz.block);
      expectSameIndices(fast, ref, fmt::format("{} {}x{} block {}", name, sz.lq, sz.lkv, sz.block));
    }
}

TEST(BlockMask, DenseFormMatchesTheMask) {
  auto v = makeSeedVariant("sliding_window", examples::Shape{1, 1, 77, 200});
  MaskMod window("w", [](Expr, Expr, Expr q, Expr kv) { return (q >= kv) & (q - kv <= 40); });
  BlockMask m = createBlockMask(window, 1, 1, 77, 200, Device::cpu(), 16, 16);
  std::vector<uint8_t> dense = m.toDense().toVector<uint8_t>();
  for (int q = 0; q < 77; ++q)
    for (int kv = 0; kv < 200; ++kv) ASSERT_EQ(dense[q * 200 + kv] != 0, q >= kv && q - kv <= 40) << q << "," << kv;
}

TEST(BlockMask, LayoutTransposeAndBroadcast) {
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  BlockMask m = createBlockMask(causal, 4, 8, 512, 512, Device::cpu(), 128, 128);
  EXPECT_EQ(m.storedBatch(), 1) << "causal does not read b: stored once";
  EXPECT_EQ(m.storedHeads(), 1);
  EXPECT_EQ(m.batch, 4);
  EXPECT_EQ(m.kvNumBlocks.toVector<int32_t>(), (std::vector<int32_t>{1, 1, 1, 1}));      // the diagonal
  EXPECT_EQ(m.fullKvNumBlocks.toVector<int32_t>(), (std::vector<int32_t>{0, 1, 2, 3}));  // below it
  EXPECT_EQ(m.fullQNumBlocks.toVector<int32_t>(), (std::vector<int32_t>{3, 2, 1, 0}));
  std::vector<int32_t> fullIdx = m.fullKvIndices.toVector<int32_t>();
  EXPECT_EQ(std::vector<int32_t>(fullIdx.begin() + 12, fullIdx.begin() + 15), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_NEAR(m.sparsity(), 100.0 * 6 / 16, 1e-9);
  // torch's formula counts visited blocks whole: 300 x 300 in 128-blocks visits 6 of 9 blocks (6 * 128^2
  // positions of 300^2).
  BlockMask odd = createBlockMask(causal, 1, 1, 300, 300, Device::cpu(), 128, 128);
  EXPECT_NEAR(odd.sparsity(), 100.0 * (1.0 - 6.0 * 128 * 128 / (300.0 * 300.0)), 1e-9);
  std::string picture = m.toString();
  EXPECT_NE(picture.find("\u2588\u2588"), std::string::npos) << picture;
  EXPECT_NE(picture.find("\u2591\u2591"), std::string::npos) << picture;

  MaskMod perHead("per_head", [](Expr, Expr h, Expr q, Expr kv) { return q - kv <= h * 128; });
  BlockMask ph = createBlockMask(perHead, 2, 3, 256, 256, Device::cpu());
  EXPECT_EQ(ph.storedBatch(), 1);
  EXPECT_EQ(ph.storedHeads(), 3) << "reads h: stored per head";
}

TEST(BlockMask, FromKvBlocksValidatesAndRoundTrips) {
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  BlockMask m = createBlockMask(causal, 1, 1, 384, 384, Device::cpu());
  BlockMask r = BlockMask::fromKvBlocks(m.kvNumBlocks.view(), m.kvIndices.view(), &m.fullKvNumBlocks.view(),
                                        &m.fullKvIndices.view(), 128, 128, 384, 384, causal);
  expectSameIndices(m, r, "round trip");

  std::vector<int32_t> num{1, 1, 1}, idx{0, 0, 0, 5, 0, 0, 2, 0, 0};
  Tensor tn = Tensor::fromVector(num, DType::I32, {1, 1, 3}, Device::cpu());
  Tensor ti = Tensor::fromVector(idx, DType::I32, {1, 1, 3, 3}, Device::cpu());
  try {
    BlockMask::fromKvBlocks(tn.view(), ti.view(), nullptr, nullptr);
    FAIL() << "an out-of-range block index must be rejected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 5 at row 1 is outside [0, 3)"), std::string::npos) << e.what();
  }
  std::vector<int32_t> dup{0, 0, 0, 1, 1, 0, 2, 2, 0};
  std::vector<int32_t> two{1, 2, 1};
  Tensor td = Tensor::fromVector(dup, DType::I32, {1, 1, 3, 3}, Device::cpu());
  Tensor t2 = Tensor::fromVector(two, DType::I32, {1, 1, 3}, Device::cpu());
  EXPECT_THROW(BlockMask::fromKvBlocks(t2.view(), td.view(), nullptr, nullptr), Error) << "duplicate block";
}

TEST(BlockMask, BorrowedListsShareTheOwnersMemory) {
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  auto made = std::make_shared<BlockMask>(createBlockMask(causal, 2, 3, 200, 130, Device::cpu(), 64, 32));
  BlockMaskListViews views{made->kvNumBlocks.view(),    made->kvIndices.view(),     made->fullKvNumBlocks.view(),
                           made->fullKvIndices.view(),  made->qNumBlocks.view(),    made->qIndices.view(),
                           made->fullQNumBlocks.view(), made->fullQIndices.view()};
  std::weak_ptr<BlockMask> watch = made;
  BlockMask borrowed = BlockMask::borrowLists(views, 2, 3, 200, 130, 64, 32, causal, made);
  made.reset();
  ASSERT_FALSE(watch.expired()) << "the borrowed mask keeps its owner alive";
  EXPECT_EQ(borrowed.kvIndices.data(), watch.lock()->kvIndices.data()) << "no copy";
  EXPECT_EQ(borrowed.storedBatch(), 1);
  EXPECT_EQ(borrowed.batch, 2);
  expectSameIndices(borrowed, *watch.lock(), "borrowed");
  {
    BlockMask copy = borrowed;
    borrowed = BlockMask();
    EXPECT_FALSE(watch.expired()) << "copies hold the owner too";
  }
  EXPECT_TRUE(watch.expired());
}

TEST(BlockMask, BorrowedListsAreCheckedWithoutReadingThem) {
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  auto made = std::make_shared<BlockMask>(createBlockMask(causal, 1, 1, 256, 256, Device::cpu(), 128, 128));
  BlockMaskListViews views{made->kvNumBlocks.view(),    made->kvIndices.view(),     made->fullKvNumBlocks.view(),
                           made->fullKvIndices.view(),  made->qNumBlocks.view(),    made->qIndices.view(),
                           made->fullQNumBlocks.view(), made->fullQIndices.view()};
  auto expectError = [&](const BlockMaskListViews& v, int64_t lenQ, int64_t batch, const std::string& text) {
    try {
      BlockMask::borrowLists(v, batch, 1, lenQ, 256, 128, 128, causal, made);
      FAIL() << "expected an error containing: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  expectError(views, 384, 1, "kv_num_blocks must be a contiguous int32 tensor of shape [1, 1, 3]");
  BlockMaskListViews wrongType = views;
  wrongType.qIdx.dtype = DType::F32;
  expectError(wrongType, 256, 1, "q_indices must be a contiguous int32 tensor of shape [1, 1, 2, 2]");
  // Stored B=1 broadcasts to any batch; a stored size that is neither 1 nor the batch is refused.
  EXPECT_EQ(BlockMask::borrowLists(views, 5, 1, 256, 256, 128, 128, causal, made).batch, 5);
  Tensor two = Tensor::zeros(DType::I32, {2, 1, 2}, Device::cpu());
  BlockMaskListViews twoBatches = views;
  twoBatches.kvNum = two.view();
  expectError(twoBatches, 256, 3, "cannot describe B=3");
  EXPECT_THROW(BlockMask::borrowLists(views, 1, 1, 256, 256, 128, 128, causal, nullptr), Error) << "null owner";
}

TEST(BlockMask, BadSizesAreClearErrors) {
  MaskMod causal("causal", [](Expr, Expr, Expr q, Expr kv) { return q >= kv; });
  EXPECT_THROW(createBlockMask(causal, 1, 1, 0, 16), Error);
  EXPECT_THROW(createBlockMask(causal, 1, 1, 16, 16, Device::cpu(), 0, 128), Error);
}

TEST(BlockMask, GpuKernelsCompileForSm80AndSm90a) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC is not installed";
  for (const std::string& name : seedVariantNames()) {
    auto v = makeSeedVariant(name);
    std::string source = blockMaskSource(generateVariant(ScoreMod::noop(), v.mask, {false}));
    for (const char* arch : {"sm_80", "sm_90a"}) {
      CompileResult r = compileCuda(source, "block_mask_" + name, CompileOptions{arch, {}, false});
      EXPECT_FALSE(r.cubin.empty()) << name << " " << arch;
      for (const char* fn : {"flexjit_block_mask_classify", "flexjit_block_mask_rows", "flexjit_block_mask_cols"})
        EXPECT_EQ(resourceUsage(r, fn).spillStoreBytes, 0) << name << " " << arch << " " << fn;
    }
  }
}

TEST(BlockMaskGpu, EqualsTheOracleForEverySeedMask) {
  if (!CudaDriver::available()) GTEST_SKIP() << "no CUDA driver / GPU";
  for (const std::string& name : seedVariantNames())
    for (const Size& sz : kSizes) {
      auto v = makeSeedVariant(name, examples::Shape{2, 3, sz.lq, sz.lkv});
      BlockMask ref = createBlockMaskReference(v.mask, 2, 3, sz.lq, sz.lkv, sz.block, sz.block);
      v.placeCaptures(Device::cuda(0));
      BlockMask gpu = createBlockMask(v.mask, 2, 3, sz.lq, sz.lkv, Device::cuda(0), sz.block, sz.block);
      EXPECT_EQ(gpu.device(), Device::cuda(0));
      expectSameIndices(gpu, ref, fmt::format("gpu {} {}x{} block {}", name, sz.lq, sz.lkv, sz.block));
    }
}

TEST(BlockMask, MasksReadingBatchOrHeadAreStoredPerBatchAndHead) {
  // Regression: deciding whether a mask reads b must not depend on a destroyed temporary.
  MaskMod firstBatch("first_batch", [](Expr b, Expr, Expr, Expr) { return b == 0; });
  MaskMod headParity("head_parity", [](Expr, Expr h, Expr q, Expr kv) { return (h % 2 == 0) | (q >= kv); });
  EXPECT_TRUE(maskReadsParam(firstBatch, Param::B));
  EXPECT_FALSE(maskReadsParam(firstBatch, Param::H));
  EXPECT_TRUE(maskReadsParam(headParity, Param::H));
  BlockMask m = createBlockMask(firstBatch, 2, 1, 16, 16, Device::cpu(), 16, 16);
  EXPECT_EQ(m.storedBatch(), 2);
  EXPECT_EQ(m.fullKvNumBlocks.toVector<int32_t>(), (std::vector<int32_t>{1, 0}));
}
