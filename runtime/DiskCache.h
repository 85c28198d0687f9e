// The on-disk half of the kernel cache: one file per kernel under a versioned directory, written
// atomically, validated on every read, guarded across processes by a per-key advisory lock.
//
// Layout: <root>/v<format>/<first two hex digits of key>/<key>.kernel  (the entry, see CacheEntry.h)
//                                                        <key>.lock    (flock target; empty, kept)
// Lock files are left in place: removing one while another process waits on it would let a third
// process lock a new inode and compile concurrently.
#pragma once

#include <memory>
#include <string>

#include "runtime/CompiledKernel.h"
#include "runtime/FileUtil.h"

namespace flexjit {

class DiskCache {
 public:
  /// Result of looking up one key.
  enum class LoadStatus { Hit, Missing, Corrupt };

  /// Prepares `<root>/v<format>`; when it cannot be created or written, usable() is false and
  /// unusableReason() says why (the caller then stays memory-only).
  explicit DiskCache(std::string root);

  bool usable() const { return usable_; }
  const std::string& unusableReason() const { return unusableReason_; }
  /// The versioned directory holding the entries.
  const std::string& directory() const { return directory_; }

  std::string entryPath(const std::string& key) const;
  std::string lockPath(const std::string& key) const;

  /// Reads and validates the entry for `key` into `out`. Corrupt entries are reported, not removed (the
  /// caller removes them under the key's lock); `problem` says what was wrong.
  LoadStatus load(const std::string& key, CompiledKernel& out, std::string& problem) const;
  /// Writes the entry atomically. Returns false and sets `error` on failure.
  bool store(const CompiledKernel& kernel, std::string& error) const;
  void remove(const std::string& key) const;
  /// Takes the cross-process lock for `key` (check held(); on failure proceed unlocked).
  std::unique_ptr<fileutil::FileLock> lock(const std::string& key, double timeoutSeconds) const;

 private:
  std::string shardDirectory(const std::string& key) const;

  std::string directory_;
  bool usable_ = false;
  std::string unusableReason_;
};

}  // namespace flexjit
