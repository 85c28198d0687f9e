// The compiled-kernel cache: memory first, then disk, then NVRTC.
//
// Key: SHA-256 over the emitted source, the entry name, the full NVRTC option list (which holds the
// arch), the NVRTC version, the flexjit version and the cache format version; never a hand-built string.
//
// Memory: an unordered_map under a mutex, indexed by the whole request (compared field by field), so a hit
// costs a std::hash of the source and one comparison, not a SHA-256. Threads that ask for a kernel being
// compiled wait for that compile instead of starting their own.
//
// Disk (DiskCache.h): $FLEXJIT_CACHE_DIR, else $XDG_CACHE_HOME/flexjit, else ~/.cache/flexjit, else a
// per-user temp directory. FLEXJIT_CACHE_DIR=off or FLEXJIT_DISABLE_DISK_CACHE=1 turns it off. Processes
// building the same kernel serialise on a per-key flock and re-check the disk once they hold it, so one
// compiles and the others read its entry. Corrupt entries are removed and rebuilt. A directory that cannot
// be written makes the cache memory-only, with one warning on stderr.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "runtime/CompiledKernel.h"
#include "runtime/DiskCache.h"

namespace flexjit {

/// Compiles a request on a cache miss. The default is compileCuda; tests substitute counting fakes.
using KernelCompiler = std::function<CompileResult(const KernelRequest&)>;

/// How long a process waits for another one compiling the same kernel before compiling it itself.
constexpr double kDefaultCacheLockTimeoutSeconds = 600.0;

struct KernelCacheConfig {
  /// Root of the disk cache; empty means memory-only. KernelCache::defaultDiskDir() applies the env rules.
  std::string diskDir;
  /// Called on a miss; empty means compileCuda.
  KernelCompiler compiler;
  /// Toolkit version mixed into the key; empty means nvrtcVersion() (which loads NVRTC).
  std::string toolkitVersion;
  double lockTimeoutSeconds = kDefaultCacheLockTimeoutSeconds;
};

class KernelCache {
 public:
  /// Counters since construction (for tests, the CLI and benchmarks).
  struct Stats {
    uint64_t memoryHits = 0;
    uint64_t diskHits = 0;
    uint64_t compilations = 0;
    uint64_t corruptEntriesRemoved = 0;
    uint64_t diskWriteFailures = 0;
  };

  explicit KernelCache(KernelCacheConfig config = {});
  /// The process-wide cache, on defaultDiskDir(). Never destroyed (kernels it handed out stay valid).
  static KernelCache& global();
  /// The disk cache directory the environment asks for; empty when disk caching is disabled.
  static std::string defaultDiskDir();

  /// The kernel for `request`, compiled at most once per process (and, with a disk cache, normally once
  /// per machine). The reference stays valid for the life of the cache. `servedFrom`, when given, says
  /// where this call's answer came from. Throws flexjit::Error when compilation fails; a failure is not
  /// cached, so the next call tries again.
  const CompiledKernel& getOrCompile(const KernelRequest& request, CacheSource* servedFrom = nullptr);

  /// The cache key of `request` (64 hex digits).
  std::string keyFor(const KernelRequest& request) const;

  bool diskEnabled() const { return diskEnabled_.load(); }
  /// The directory holding entries (<root>/v<format>), empty when memory-only.
  std::string diskDirectory() const;
  /// Where the entry for `key` lives on disk (for tests and the CLI); empty when memory-only.
  std::string entryPath(const std::string& key) const;
  Stats stats() const;

  KernelCache(const KernelCache&) = delete;
  KernelCache& operator=(const KernelCache&) = delete;

 private:
  using KernelPtr = std::shared_ptr<const CompiledKernel>;

  /// Disk lookup, cross-process lock, compile and store: what a memory miss costs.
  KernelPtr loadOrBuild(const KernelRequest& request, CacheSource& source);
  /// Disk lookup under the key's lock; null on a miss (corrupt entries are removed).
  KernelPtr loadFromDiskLocked(const std::string& key);
  KernelPtr compile(const std::string& key, const KernelRequest& request);
  void disableDisk(const std::string& reason);

  KernelCacheConfig config_;
  std::unique_ptr<DiskCache> disk_;
  std::atomic<bool> diskEnabled_{false};
  std::once_flag diskWarning_;

  mutable std::mutex mutex_;
  std::unordered_map<KernelRequest, std::shared_future<KernelPtr>, KernelRequestHash> kernels_;

  std::atomic<uint64_t> memoryHits_{0}, diskHits_{0}, compilations_{0}, corruptRemoved_{0}, writeFailures_{0};
};

}  // namespace flexjit
