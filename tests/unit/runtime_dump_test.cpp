// FLEXJIT_DUMP_DIR stage dumps (runtime/Dump.h) and the file helpers behind them (runtime/FileUtil.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/Dump.h"
#include "runtime/FileUtil.h"
#include "runtime_test_support.h"

namespace flexjit {
namespace {

std::string readText(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(RuntimeDump, WritesStageFilesWhenEnabled) {
  testing::TempDir dir;
  std::string target = dir / "nested/dumps";
  testing::ScopedEnv env(kDumpDirEnv, target);
  dumpStage("attn_fwd", ".mlir.before", "module {}\n");
  dumpStage("attn_fwd", "cu", "// source\n");
  EXPECT_EQ(readText(target + "/attn_fwd.mlir.before"), "module {}\n");
  EXPECT_EQ(readText(target + "/attn_fwd.cu"), "// source\n");
  dumpStage("attn_fwd", "cu", "// replaced\n");
  EXPECT_EQ(readText(target + "/attn_fwd.cu"), "// replaced\n");
}

TEST(RuntimeDump, NoOpWhenUnset) {
  testing::TempDir dir;
  testing::ScopedEnv env(kDumpDirEnv, std::nullopt);
  EXPECT_FALSE(dumpDir().has_value());
  dumpStage("k", "cu", "x");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(RuntimeDump, SanitisesKernelNames) {
  testing::TempDir dir;
  testing::ScopedEnv env(kDumpDirEnv, dir.path());
  dumpStage("../evil name", "cu", "x");
  EXPECT_TRUE(std::filesystem::exists(dir / ".._evil_name.cu"));
}

TEST(RuntimeDump, FailedSourceIsSavedUnderDumpDir) {
  testing::TempDir dir;
  testing::ScopedEnv env(kDumpDirEnv, dir.path());
  std::string path = dumpFailedSource("bad", "int x = ;");
  EXPECT_EQ(path.rfind(dir.path() + "/failed/bad-", 0), 0u) << path;
  EXPECT_EQ(readText(path), "int x = ;");
}

TEST(RuntimeDump, UnwritableDumpDirWarnsInsteadOfThrowing) {
  testing::TempDir dir;
  std::string file = dir / "plain-file";
  std::ofstream(file) << "not a directory";
  testing::ScopedEnv env(kDumpDirEnv, file + "/sub");
  ::testing::internal::CaptureStderr();
  EXPECT_NO_THROW(dumpStage("k", "cu", "x"));
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("could not dump"), std::string::npos);
  EXPECT_NE(dumpFailedSource("k", "x").find("could not be saved"), std::string::npos);
}

TEST(RuntimeFileUtil, AtomicWriteReplacesWholeFile) {
  testing::TempDir dir;
  std::string path = dir / "f";
  std::string error;
  ASSERT_TRUE(fileutil::writeFileAtomic(path, "abc", 3, error)) << error;
  ASSERT_TRUE(fileutil::writeFileAtomic(path, "de", 2, error)) << error;
  std::optional<std::vector<char>> bytes = fileutil::readFile(path);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(std::string(bytes->begin(), bytes->end()), "de");
  EXPECT_FALSE(fileutil::readFile(dir / "missing").has_value());
  // No temp files are left behind.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);
}

}  // namespace
}  // namespace flexjit
