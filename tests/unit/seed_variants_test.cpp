// The seed variants: they lower and emit deterministically, their emitted hooks match the golden
// snapshots (refresh with FLEXJIT_UPDATE_GOLDEN=1), and the range analysis decides their blocks.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "codegen/Variant.h"
#include "dsl/Interpreter.h"
#include "examples/SeedVariants.h"

using namespace flexjit;
using namespace flexjit::examples;

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class SeedVariantTest : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(SeedVariantTest, EmitsDeterministicallyAndMatchesGolden) {
  SeedVariant v = makeSeedVariant(GetParam(), Shape{2, 4, 300, 300});
  Variant first = generateVariant(v.score, v.mask);
  Variant second = generateVariant(makeSeedVariant(GetParam(), Shape{2, 4, 300, 300}).score,
                                   makeSeedVariant(GetParam(), Shape{2, 4, 300, 300}).mask);
  EXPECT_EQ(first.prelude, second.prelude) << "the same mods must give byte-identical source";
  std::string path = std::string(FLEXJIT_SOURCE_DIR) + "/tests/golden/" + GetParam() + ".cu";
  if (const char* update = std::getenv("FLEXJIT_UPDATE_GOLDEN"); update && std::string(update) == "1") {
    std::ofstream(path) << first.prelude;
    GTEST_SKIP() << "golden snapshot rewritten: " << path;
  }
  std::string golden = readFile(path);
  ASSERT_FALSE(golden.empty()) << "missing golden snapshot " << path << "; run with FLEXJIT_UPDATE_GOLDEN=1";
  EXPECT_EQ(first.prelude, golden) << "emitted code changed; if intended, refresh with FLEXJIT_UPDATE_GOLDEN=1";
}

INSTANTIATE_TEST_SUITE_P(Seeds, SeedVariantTest, ::testing::ValuesIn(seedVariantNames()),
                         [](const auto& info) { return info.param; });

TEST(SeedVariants, FactsFromTheCompiler) {
  auto facts = [](const std::string& name) {
    SeedVariant v = makeSeedVariant(name);
    return generateVariant(v.score, v.mask).facts;
  };
  EXPECT_TRUE(facts("noop").scoreIsNoop);
  EXPECT_TRUE(facts("noop").maskIsNoop);
  EXPECT_FALSE(facts("noop").scoreCanBeNegInf);
  EXPECT_FALSE(facts("causal").maskIsNoop);
  EXPECT_FALSE(facts("alibi").scoreIsNoop);
  EXPECT_TRUE(facts("relative_bias").hasTensorGrads);
  EXPECT_TRUE(facts("softcap").scoreCanBeNegInf) << "its cap is a run-time scalar: it could be inf";
  ScoreMod constCap("softcap30", [](Expr s, Expr, Expr, Expr, Expr) { return 30.0f * tanh(s / 30.0f); });
  EXPECT_FALSE(generateVariant(constCap, MaskMod::noop()).facts.scoreCanBeNegInf) << "tanh is bounded";
  // A mask that simplifies to `true` is recognised as a noop.
  MaskMod trivial("trivial", [](Expr, Expr, Expr q, Expr) { return (q >= 0) | (q < 0); });
  EXPECT_TRUE(generateVariant(ScoreMod::noop(), trivial).facts.maskIsNoop);
}

TEST(SeedVariants, BlocksDecidedByRangeAnalysis) {
  auto classify = [](const std::string& name, long long q0, long long kv0, int block = 128) {
    SeedVariant v = makeSeedVariant(name, Shape{1, 2, 8192, 8192});
    Program p(v.mask);
    p.bindCaptures();
    return p.classify(Box{fj::ivInt(0, 0), fj::ivInt(0, 0), fj::ivInt(q0, q0 + block - 1), fj::ivInt(kv0, kv0 + block - 1)});
  };
  EXPECT_EQ(classify("causal", 256, 128), BlockClass::Full);
  EXPECT_EQ(classify("causal", 128, 128), BlockClass::Partial);
  EXPECT_EQ(classify("causal", 128, 256), BlockClass::Empty);
  EXPECT_EQ(classify("sliding_window", 4096, 4096 - 512), BlockClass::Full);
  EXPECT_EQ(classify("sliding_window", 4096, 4096 - 1024), BlockClass::Partial);
  EXPECT_EQ(classify("sliding_window", 4096, 1024), BlockClass::Empty);
  EXPECT_EQ(classify("prefix_lm", 0, 1024), BlockClass::Full);
  EXPECT_EQ(classify("prefix_lm", 0, 4096), BlockClass::Empty);
  // Document ids are read from the captured tensor: blocks inside one document are decided exactly.
  EXPECT_EQ(classify("document", 1024, 512), BlockClass::Full);
  EXPECT_EQ(classify("document", 4096 + 256, 1024), BlockClass::Empty);
  EXPECT_EQ(classify("natten", 0, 4096), BlockClass::Empty);
}
