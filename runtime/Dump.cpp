// Implementation of Dump.h.
#include "runtime/Dump.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "dsl/Sha256.h"
#include "runtime/FileUtil.h"

namespace flexjit {

namespace {

/// Hex digits of the source hash in a failed-source file name: enough to tell sources apart.
constexpr size_t kFailedHashChars = 16;

constexpr const char* kFailedSubdir = "failed";

}  // namespace

std::optional<std::string> dumpDir() {
  const char* dir = std::getenv(kDumpDirEnv);
  if (dir == nullptr || *dir == '\0') return std::nullopt;
  return std::string(dir);
}

void dumpStage(const std::string& kernelName, const std::string& stageExtension, const std::string& text) {
  std::optional<std::string> dir = dumpDir();
  if (!dir) return;
  std::string ext = stageExtension;
  if (!ext.empty() && ext.front() == '.') ext.erase(0, 1);
  std::string path = (std::filesystem::path(*dir) / (fileutil::safeFileName(kernelName) + "." + ext)).string();
  std::string error;
  if (!fileutil::makeDirectories(*dir, error) || !fileutil::writeFileAtomic(path, text.data(), text.size(), error))
    std::fprintf(stderr, "flexjit: warning: %s=%s: could not dump %s: %s\n", kDumpDirEnv, dir->c_str(),
                 path.c_str(), error.c_str());
}

std::string dumpFailedSource(const std::string& kernelName, const std::string& source) {
  std::optional<std::string> base = dumpDir();
  std::filesystem::path dir = std::filesystem::path(base ? *base : fileutil::userTempDir()) / kFailedSubdir;
  std::string hash = Sha256::hex(source).substr(0, kFailedHashChars);
  std::string path = (dir / fmt::format("{}-{}.cu", fileutil::safeFileName(kernelName), hash)).string();
  std::string error;
  if (!fileutil::makeDirectories(dir.string(), error) ||
      !fileutil::writeFileAtomic(path, source.data(), source.size(), error))
    return fmt::format("(the source could not be saved: {})", error);
  return path;
}

}  // namespace flexjit
