// Small POSIX file helpers shared by the kernel cache and the stage dumps: atomic writes (temp file in the
// same directory, fsync, rename), whole-file reads, directory creation, advisory file locks.
//
// None of these throw: callers decide whether a failure is an error (the cache degrades to memory-only,
// dumps print a warning), so each reports failure through its return value and an error text.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace flexjit::fileutil {

/// Creates `dir` and its parents. Returns false and sets `error` on failure.
bool makeDirectories(const std::string& dir, std::string& error);

/// Writes `size` bytes to `path` atomically: a reader sees either the old file or the whole new one,
/// never a partial write. The temp file is created next to `path` so the rename never crosses devices.
bool writeFileAtomic(const std::string& path, const void* data, size_t size, std::string& error);

/// Whether a file can be created in `dir` (creates and removes a temp file). Sets `error` when not.
bool probeWritable(const std::string& dir, std::string& error);

/// Files readFile accepts by default: far above any kernel cache entry or dump.
constexpr size_t kMaxReadBytes = size_t(1) << 30;

/// Reads a whole regular file of at most `maxBytes`. nullopt when it is missing (then `problem` is left
/// empty) or is anything else: unreadable, a directory, a FIFO, a device (/dev/zero behind a symlink), too
/// large; then `problem`, when given, says which. Never blocks on a FIFO, never reads without bound.
std::optional<std::vector<char>> readFile(const std::string& path, std::string* problem = nullptr,
                                          size_t maxBytes = kMaxReadBytes);

/// Removes whatever is at `path` (a file, a symlink, or a directory with its contents); a missing path
/// is not an error.
void removeFile(const std::string& path);

/// A per-user scratch directory, <temp>/flexjit-<uid>, where <temp> honours TMPDIR.
std::string userTempDir();

/// `name` with every character outside [A-Za-z0-9_.-] replaced by '_', safe as a file name.
std::string safeFileName(const std::string& name);

/// An advisory exclusive lock (flock) on a lock file, held until destruction. Used so that two processes
/// building the same kernel compile it once; if locking fails the caller proceeds unlocked (the atomic
/// writes keep that safe, it only costs a second compile).
class FileLock {
 public:
  /// Blocks until the lock on `path` is held or `timeoutSeconds` pass; check held() afterwards.
  FileLock(const std::string& path, double timeoutSeconds);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  /// Whether the lock was acquired.
  bool held() const { return held_; }
  /// Why the lock was not acquired (empty when held).
  const std::string& error() const { return error_; }

 private:
  int fd_ = -1;
  bool held_ = false;
  std::string error_;
};

}  // namespace flexjit::fileutil
