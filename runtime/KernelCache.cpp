// Implementation of KernelCache.h.
#include "runtime/KernelCache.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "dsl/Sha256.h"
#include "runtime/CacheEntry.h"
#include "runtime/Dump.h"

#ifndef FLEXJIT_VERSION
#error "FLEXJIT_VERSION must be defined by the build (runtime/CMakeLists.txt does); it is part of the cache key"
#endif

namespace flexjit {

namespace {

/// Separates flexjit kernel keys from any other SHA-256 use of the same fields.
constexpr const char* kKeyDomain = "flexjit.kernel-cache";
constexpr const char* kCacheDirEnv = "FLEXJIT_CACHE_DIR";
constexpr const char* kDisableEnv = "FLEXJIT_DISABLE_DISK_CACHE";
constexpr const char* kCacheDirOff = "off";
constexpr const char* kCacheSubdir = "flexjit";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

/// Writes the stages a kernel carries to FLEXJIT_DUMP_DIR (a no-op when unset).
void dumpKernel(const CompiledKernel& kernel, const std::string& source) {
  if (!dumpDir()) return;
  dumpStage(kernel.name, "cu", source);
  if (!kernel.ptx.empty()) dumpStage(kernel.name, "ptx", kernel.ptx);
  if (!kernel.resources.empty()) dumpStage(kernel.name, "resources.txt", formatResourceUsage(kernel.resources));
  if (!kernel.log.empty()) dumpStage(kernel.name, "nvrtc.log", kernel.log);
}

}  // namespace

std::string KernelCache::defaultDiskDir() {
  std::string disable = env(kDisableEnv);
  if (!disable.empty() && disable != "0") return {};
  std::string dir = env(kCacheDirEnv);
  if (dir == kCacheDirOff) return {};
  if (!dir.empty()) return dir;
  namespace fs = std::filesystem;
  if (std::string xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return (fs::path(xdg) / kCacheSubdir).string();
  if (std::string home = env("HOME"); !home.empty()) return (fs::path(home) / ".cache" / kCacheSubdir).string();
  return (fs::path(fileutil::userTempDir()) / "cache").string();
}

KernelCache::KernelCache(KernelCacheConfig config) : config_(std::move(config)) {
  if (config_.diskDir.empty()) return;
  disk_ = std::make_unique<DiskCache>(config_.diskDir);
  if (disk_->usable())
    diskEnabled_ = true;
  else
    disableDisk(disk_->unusableReason());
}

KernelCache& KernelCache::global() {
  // Leaked on purpose: kernels handed out must outlive every static destructor that might launch them.
  static KernelCache* cache = new KernelCache(KernelCacheConfig{defaultDiskDir(), {}, {}});
  return *cache;
}

std::string KernelCache::keyFor(const KernelRequest& request) const {
  std::vector<std::string> options = nvrtcOptions(request.options);
  std::string toolkit = config_.toolkitVersion.empty() ? nvrtcVersion() : config_.toolkitVersion;
  Sha256 hash;
  hash.field(kKeyDomain).field(std::to_string(cacheentry::kFormatVersion)).field(FLEXJIT_VERSION).field(toolkit);
  hash.field(request.name).field(std::to_string(options.size()));
  for (const std::string& option : options) hash.field(option);
  hash.field(request.source);
  return hash.hex();
}

const CompiledKernel& KernelCache::getOrCompile(const KernelRequest& request, CacheSource* servedFrom) {
  std::promise<KernelPtr> promise;
  std::shared_future<KernelPtr> future;
  bool producer = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = kernels_.find(request);
    if (it != kernels_.end()) {
      future = it->second;
    } else {
      future = promise.get_future().share();
      kernels_.emplace(request, future);
      producer = true;
    }
  }
  if (!producer) {
    // Either ready (a plain hit) or being built by another thread, whose result (or error) we share.
    const KernelPtr& kernel = future.get();
    ++memoryHits_;
    if (servedFrom) *servedFrom = CacheSource::Memory;
    return *kernel;
  }
  try {
    CacheSource source = CacheSource::Compiled;
    KernelPtr kernel = loadOrBuild(request, source);
    promise.set_value(kernel);
    if (servedFrom) *servedFrom = source;
    return *kernel;
  } catch (...) {
    // Failures are not cached: waiting threads get this error, later calls try again.
    promise.set_exception(std::current_exception());
    std::lock_guard<std::mutex> lock(mutex_);
    kernels_.erase(request);
    throw;
  }
}

KernelCache::KernelPtr KernelCache::loadOrBuild(const KernelRequest& request, CacheSource& source) {
  std::string key = keyFor(request);
  std::unique_ptr<fileutil::FileLock> lock;
  if (diskEnabled()) {
    CompiledKernel entry;
    std::string problem;
    if (disk_->load(key, entry, problem) == DiskCache::LoadStatus::Hit) {
      ++diskHits_;
      source = CacheSource::Disk;
      dumpKernel(entry, request.source);
      return std::make_shared<const CompiledKernel>(std::move(entry));
    }
    // Without the lock (timeout, odd filesystem) we go on unlocked: the atomic rename keeps entries whole,
    // so the worst case is that two processes both compile.
    lock = disk_->lock(key, config_.lockTimeoutSeconds);
    if (KernelPtr kernel = loadFromDiskLocked(key)) {
      source = CacheSource::Disk;
      dumpKernel(*kernel, request.source);
      return kernel;
    }
  }
  KernelPtr kernel = compile(key, request);
  source = CacheSource::Compiled;
  dumpKernel(*kernel, request.source);
  std::string error;
  if (diskEnabled() && !disk_->store(*kernel, error)) {
    ++writeFailures_;
    disableDisk(error);
  }
  return kernel;
}

KernelCache::KernelPtr KernelCache::loadFromDiskLocked(const std::string& key) {
  CompiledKernel entry;
  std::string problem;
  switch (disk_->load(key, entry, problem)) {
    case DiskCache::LoadStatus::Hit:
      ++diskHits_;
      return std::make_shared<const CompiledKernel>(std::move(entry));
    case DiskCache::LoadStatus::Corrupt:
      // Never trusted, never fatal: remove it and compile afresh.
      std::fprintf(stderr, "flexjit: note: removing corrupt kernel cache entry %s (%s); rebuilding it\n",
                   disk_->entryPath(key).c_str(), problem.c_str());
      disk_->remove(key);
      ++corruptRemoved_;
      return nullptr;
    case DiskCache::LoadStatus::Missing:
      return nullptr;
  }
  return nullptr;
}

KernelCache::KernelPtr KernelCache::compile(const std::string& key, const KernelRequest& request) {
  ++compilations_;
  CompileResult result = config_.compiler ? config_.compiler(request)
                                          : compileCuda(request.source, request.name, request.options);
  auto kernel = std::make_shared<CompiledKernel>();
  kernel->key = key;
  kernel->name = request.name;
  kernel->arch = request.options.arch;
  kernel->toolkitVersion = config_.toolkitVersion.empty() ? nvrtcVersion() : config_.toolkitVersion;
  kernel->cubin = std::move(result.cubin);
  kernel->ptx = std::move(result.ptx);
  kernel->log = std::move(result.log);
  kernel->resources = std::move(result.resources);
  kernel->origin = CacheSource::Compiled;
  return kernel;
}

void KernelCache::disableDisk(const std::string& reason) {
  diskEnabled_ = false;
  std::call_once(diskWarning_, [&] {
    std::fprintf(stderr,
                 "flexjit: warning: the kernel cache directory '%s' is not usable (%s); compiled kernels are "
                 "cached in memory only for this process. Set %s to a writable directory, or to '%s' to "
                 "silence this warning.\n",
                 config_.diskDir.c_str(), reason.c_str(), kCacheDirEnv, kCacheDirOff);
  });
}

std::string KernelCache::diskDirectory() const { return diskEnabled() ? disk_->directory() : std::string(); }

std::string KernelCache::entryPath(const std::string& key) const {
  return diskEnabled() ? disk_->entryPath(key) : std::string();
}

KernelCache::Stats KernelCache::stats() const {
  Stats s;
  s.memoryHits = memoryHits_;
  s.diskHits = diskHits_;
  s.compilations = compilations_;
  s.corruptEntriesRemoved = corruptRemoved_;
  s.diskWriteFailures = writeFailures_;
  return s;
}

}  // namespace flexjit
