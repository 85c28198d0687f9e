// Implementation of DiskCache.h.
#include "runtime/DiskCache.h"

#include <filesystem>

#include <fmt/format.h>

#include "runtime/CacheEntry.h"

namespace flexjit {

namespace {

/// Hex digits of the key that name the shard directory (256 shards keep directories small).
constexpr size_t kShardChars = 2;

/// The largest entry read: kernels are a few MiB; anything far larger is not an entry flexjit wrote.
constexpr size_t kMaxEntryBytes = size_t(256) << 20;

}  // namespace

DiskCache::DiskCache(std::string root)
    : directory_((std::filesystem::path(root) / fmt::format("v{}", cacheentry::kFormatVersion)).string()) {
  usable_ = fileutil::makeDirectories(directory_, unusableReason_) &&
            fileutil::probeWritable(directory_, unusableReason_);
}

std::string DiskCache::shardDirectory(const std::string& key) const {
  return (std::filesystem::path(directory_) / key.substr(0, kShardChars)).string();
}

std::string DiskCache::entryPath(const std::string& key) const {
  return (std::filesystem::path(shardDirectory(key)) / (key + ".kernel")).string();
}

std::string DiskCache::lockPath(const std::string& key) const {
  return (std::filesystem::path(shardDirectory(key)) / (key + ".lock")).string();
}

DiskCache::LoadStatus DiskCache::load(const std::string& key, CompiledKernel& out, std::string& problem) const {
  std::string unreadable;
  std::optional<std::vector<char>> bytes = fileutil::readFile(entryPath(key), &unreadable, kMaxEntryBytes);
  if (!bytes && unreadable.empty()) return LoadStatus::Missing;
  if (!bytes) {
    problem = unreadable;
    return LoadStatus::Corrupt;
  }
  std::optional<CompiledKernel> kernel = cacheentry::decode(*bytes, key, problem);
  if (!kernel) return LoadStatus::Corrupt;
  out = std::move(*kernel);
  return LoadStatus::Hit;
}

bool DiskCache::store(const CompiledKernel& kernel, std::string& error) const {
  if (!fileutil::makeDirectories(shardDirectory(kernel.key), error)) return false;
  std::vector<char> bytes = cacheentry::encode(kernel);
  return fileutil::writeFileAtomic(entryPath(kernel.key), bytes.data(), bytes.size(), error);
}

void DiskCache::remove(const std::string& key) const { fileutil::removeFile(entryPath(key)); }

std::unique_ptr<fileutil::FileLock> DiskCache::lock(const std::string& key, double timeoutSeconds) const {
  std::string ignored;  // a failure to create the shard shows up as the lock's own error
  fileutil::makeDirectories(shardDirectory(key), ignored);
  return std::make_unique<fileutil::FileLock>(lockPath(key), timeoutSeconds);
}

}  // namespace flexjit
