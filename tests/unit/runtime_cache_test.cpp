// The compiled-kernel cache (runtime/KernelCache.h, DiskCache.h, CacheEntry.h): memory and disk hits,
// corrupt and truncated entries, key sensitivity, one compile for many threads and for two processes,
// memory-only fallback. Most tests use a fake compiler (fast, countable); one goes through NVRTC.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dsl/Error.h"
#include "runtime/CacheEntry.h"
#include "runtime/KernelCache.h"
#include "runtime_test_support.h"

namespace flexjit {
namespace {

using testing::TempDir;

constexpr const char* kFakeToolkit = "13.0-fake";

/// A deterministic stand-in for NVRTC: the "cubin" is derived from the request, and every call is counted.
CompileResult fakeCompile(const KernelRequest& request) {
  CompileResult r;
  std::string body = "CUBIN:" + request.options.arch + ":" + request.source;
  r.cubin.assign(body.begin(), body.end());
  r.ptx = "// ptx for " + request.name;
  r.log = "ptxas info    : Compiling entry function '" + request.name + "' for '" + request.options.arch + "'";
  ResourceUsage u;
  u.registers = 42;
  u.staticSharedBytes = 1024;
  r.resources[request.name] = u;
  return r;
}

KernelCacheConfig fakeConfig(const std::string& dir, std::atomic<int>* counter = nullptr,
                             std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
  KernelCacheConfig config;
  config.diskDir = dir;
  config.toolkitVersion = kFakeToolkit;
  config.compiler = [counter, delay](const KernelRequest& request) {
    if (counter) ++*counter;
    std::this_thread::sleep_for(delay);
    return fakeCompile(request);
  };
  return config;
}

KernelRequest request(const std::string& source = "__global__ void k() {}", const std::string& arch = "sm_80") {
  return KernelRequest{source, "k", CompileOptions{arch, {}, false}};
}

TEST(RuntimeCache, MemoryHit) {
  TempDir dir;
  KernelCache cache(fakeConfig(dir.path()));
  CacheSource source;
  const CompiledKernel& first = cache.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Compiled);
  const CompiledKernel& second = cache.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Memory);
  EXPECT_EQ(&first, &second);
  EXPECT_EQ(first.key.size(), 64u);
  EXPECT_EQ(cache.stats().compilations, 1u);
  EXPECT_EQ(cache.stats().memoryHits, 1u);
}

TEST(RuntimeCache, DiskHitFromNewInstance) {
  TempDir dir;
  std::string key;
  {
    KernelCache cache(fakeConfig(dir.path()));
    key = cache.getOrCompile(request()).key;
    EXPECT_TRUE(std::filesystem::exists(cache.entryPath(key)));
  }
  KernelCache cache(fakeConfig(dir.path()));
  CacheSource source;
  const CompiledKernel& k = cache.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Disk);
  EXPECT_EQ(k.origin, CacheSource::Disk);
  EXPECT_EQ(k.key, key);
  EXPECT_EQ(k.cubin, fakeCompile(request()).cubin);
  EXPECT_EQ(k.usage().registers, 42);
  EXPECT_EQ(cache.stats().compilations, 0u);
}

/// Writes a damaged copy of the entry, then checks a new cache rebuilds it and leaves a valid entry.
void expectRebuiltAfter(const std::function<void(std::vector<char>&)>& damage) {
  TempDir dir;
  std::string path;
  {
    KernelCache cache(fakeConfig(dir.path()));
    path = cache.entryPath(cache.getOrCompile(request()).key);
  }
  std::optional<std::vector<char>> bytes = fileutil::readFile(path);
  ASSERT_TRUE(bytes.has_value());
  damage(*bytes);
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes->data(), bytes->size());

  ::testing::internal::CaptureStderr();
  KernelCache cache(fakeConfig(dir.path()));
  CacheSource source;
  const CompiledKernel& k = cache.getOrCompile(request(), &source);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(source, CacheSource::Compiled);
  EXPECT_EQ(k.cubin, fakeCompile(request()).cubin);
  EXPECT_EQ(cache.stats().corruptEntriesRemoved, 1u);
  EXPECT_NE(err.find("removing corrupt kernel cache entry"), std::string::npos) << err;

  KernelCache again(fakeConfig(dir.path()));
  again.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Disk) << "the rebuilt entry should be valid";
}

/// Puts something that is not an entry file at the entry's path; a new cache must rebuild it (no abort, no
/// hang, no unbounded read) and leave a valid entry.
void expectRebuiltWhenEntryIs(const std::function<void(const std::string&)>& replace, const char* problem) {
  TempDir dir;
  std::string path;
  {
    KernelCache cache(fakeConfig(dir.path()));
    path = cache.entryPath(cache.getOrCompile(request()).key);
  }
  std::filesystem::remove(path);
  replace(path);
  ::testing::internal::CaptureStderr();
  KernelCache cache(fakeConfig(dir.path()));
  CacheSource source;
  cache.getOrCompile(request(), &source);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(source, CacheSource::Compiled);
  EXPECT_NE(err.find(std::string("removing corrupt kernel cache entry ") + path + " (" + problem), std::string::npos)
      << err;
  EXPECT_TRUE(std::filesystem::is_regular_file(std::filesystem::symlink_status(path)));
  KernelCache again(fakeConfig(dir.path()));
  again.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Disk) << "the rebuilt entry should be valid";
}

TEST(RuntimeCache, DirectoryAtTheEntryPathIsRebuilt) {
  expectRebuiltWhenEntryIs([](const std::string& p) {
    std::filesystem::create_directories(p + "/inside");
    std::ofstream(p + "/inside/file") << "x";
  }, "not a regular file");
}

TEST(RuntimeCache, SymlinkToDevZeroIsRebuiltWithoutReadingIt) {
  expectRebuiltWhenEntryIs([](const std::string& p) { std::filesystem::create_symlink("/dev/zero", p); },
                           "not a regular file");
}

TEST(RuntimeCache, FifoAtTheEntryPathIsRebuiltWithoutWaiting) {
  expectRebuiltWhenEntryIs([](const std::string& p) { ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0); }, "not a regular file");
}

TEST(RuntimeCache, HugeEntryIsRebuiltWithoutReadingIt) {
  expectRebuiltWhenEntryIs([](const std::string& p) {
    std::ofstream(p).put('x');
    std::filesystem::resize_file(p, std::uintmax_t(1) << 29);  // sparse: 512 MiB of nothing
  }, "536870912 bytes, more than the");
}

TEST(RuntimeCache, FlippedPayloadBytesAreRebuilt) {
  expectRebuiltAfter([](std::vector<char>& b) {
    b[b.size() - 3] ^= 0x5a;
    b[b.size() / 2] ^= 0x01;
  });
}

TEST(RuntimeCache, TruncatedEntryIsRebuilt) {
  expectRebuiltAfter([](std::vector<char>& b) { b.resize(b.size() / 2); });
}

TEST(RuntimeCache, TruncatedHeaderIsRebuilt) {
  expectRebuiltAfter([](std::vector<char>& b) { b.resize(10); });
}

TEST(RuntimeCache, BadMagicIsRebuilt) {
  expectRebuiltAfter([](std::vector<char>& b) { b[0] = 'X'; });
}

TEST(RuntimeCache, EmptyEntryIsRebuilt) {
  expectRebuiltAfter([](std::vector<char>& b) { b.clear(); });
}

TEST(RuntimeCache, EntryDecodeRejectsWrongKey) {
  CompiledKernel k;
  k.key = std::string(64, 'a');
  k.name = "k";
  std::vector<char> bytes = cacheentry::encode(k);
  std::string problem;
  EXPECT_TRUE(cacheentry::decode(bytes, k.key, problem).has_value()) << problem;
  EXPECT_FALSE(cacheentry::decode(bytes, std::string(64, 'b'), problem).has_value());
  EXPECT_NE(problem.find("instead of"), std::string::npos) << problem;
}

TEST(RuntimeCache, KeyDependsOnEveryInput) {
  KernelCache cache(fakeConfig(""));
  KernelRequest base = request();
  std::vector<KernelRequest> variants(6, base);
  variants[1].source += " ";
  variants[2].name = "k2";
  variants[3].options.arch = "sm_90a";
  variants[4].options.lineInfo = true;
  variants[5].options.extra = {"-DX=1"};
  std::set<std::string> keys;
  for (const KernelRequest& r : variants) keys.insert(cache.keyFor(r));
  EXPECT_EQ(keys.size(), variants.size());
  EXPECT_EQ(cache.keyFor(base), cache.keyFor(request()));  // deterministic
  KernelCacheConfig other = fakeConfig("");
  other.toolkitVersion = "12.9";
  EXPECT_NE(KernelCache(other).keyFor(base), cache.keyFor(base));
}

TEST(RuntimeCache, DifferentOptionsAreDifferentEntries) {
  TempDir dir;
  std::atomic<int> compiles{0};
  KernelCache cache(fakeConfig(dir.path(), &compiles));
  const CompiledKernel& a = cache.getOrCompile(request("s", "sm_80"));
  const CompiledKernel& b = cache.getOrCompile(request("s", "sm_90a"));
  EXPECT_NE(a.key, b.key);
  EXPECT_NE(a.cubin, b.cubin);
  EXPECT_EQ(compiles, 2);
}

TEST(RuntimeCache, EightThreadsCompileOnce) {
  TempDir dir;
  std::atomic<int> compiles{0};
  KernelCache cache(fakeConfig(dir.path(), &compiles, std::chrono::milliseconds(100)));
  constexpr int kThreads = 8;
  std::atomic<bool> go{false};
  std::vector<const CompiledKernel*> results(kThreads, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      results[t] = &cache.getOrCompile(request("same new kernel"));
    });
  go = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(compiles, 1);
  for (const CompiledKernel* r : results) EXPECT_EQ(r, results[0]);
  EXPECT_EQ(cache.stats().memoryHits, kThreads - 1u);
}

TEST(RuntimeCache, FailedCompileIsNotCached) {
  std::atomic<int> calls{0};
  KernelCacheConfig config = fakeConfig("");
  config.compiler = [&](const KernelRequest& r) {
    if (++calls == 1) throw Error("first compile fails");
    return fakeCompile(r);
  };
  KernelCache cache(config);
  EXPECT_THROW(cache.getOrCompile(request()), Error);
  EXPECT_NO_THROW(cache.getOrCompile(request()));
  EXPECT_EQ(calls, 2);
}

/// Appends one byte to `path` per compile: a counter that works across processes.
KernelCacheConfig processCountingConfig(const std::string& dir, const std::string& counterPath) {
  KernelCacheConfig config = fakeConfig(dir);
  config.compiler = [counterPath](const KernelRequest& r) {
    std::ofstream(counterPath, std::ios::app) << 'x';
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return fakeCompile(r);
  };
  return config;
}

TEST(RuntimeCache, TwoProcessesCompileOnce) {
  TempDir dir;
  std::string counter = dir / "compiles";
  std::string cacheDir = dir / "cache";
  KernelRequest req = request("kernel both processes want");
  std::vector<char> expected = fakeCompile(req).cubin;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    KernelCache cache(processCountingConfig(cacheDir, counter));
    bool ok = cache.getOrCompile(req).cubin == expected;
    _exit(ok ? 0 : 1);
  }
  KernelCache cache(processCountingConfig(cacheDir, counter));
  EXPECT_EQ(cache.getOrCompile(req).cubin, expected);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child got a wrong kernel";
  // flock works on local filesystems, so the process that waited re-read the other's entry.
  std::optional<std::vector<char>> count = fileutil::readFile(counter);
  ASSERT_TRUE(count.has_value());
  EXPECT_EQ(count->size(), 1u);
  KernelCache after(processCountingConfig(cacheDir, counter));
  CacheSource source;
  after.getOrCompile(req, &source);
  EXPECT_EQ(source, CacheSource::Disk) << "the entry should be valid afterwards";
}

TEST(RuntimeCache, UnwritableDirectoryFallsBackToMemory) {
  TempDir dir;
  std::string file = dir / "plain-file";
  std::ofstream(file) << "a file where the cache directory's parent should be";
  ::testing::internal::CaptureStderr();
  KernelCache cache(fakeConfig(file + "/cache"));
  CacheSource source;
  cache.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Compiled);
  cache.getOrCompile(request(), &source);
  EXPECT_EQ(source, CacheSource::Memory);
  cache.getOrCompile(request("another"), &source);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(cache.diskEnabled());
  EXPECT_EQ(cache.entryPath("x"), "");
  size_t first = err.find("flexjit: warning: the kernel cache directory");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("flexjit: warning", first + 1), std::string::npos) << "warned more than once: " << err;
}

TEST(RuntimeCache, DefaultDirectoryFollowsEnvironment) {
  using testing::ScopedEnv;
  ScopedEnv disable("FLEXJIT_DISABLE_DISK_CACHE", std::nullopt);
  {
    ScopedEnv dir("FLEXJIT_CACHE_DIR", "off");
    EXPECT_EQ(KernelCache::defaultDiskDir(), "");
  }
  {
    ScopedEnv dir("FLEXJIT_CACHE_DIR", "/some/where");
    EXPECT_EQ(KernelCache::defaultDiskDir(), "/some/where");
    ScopedEnv off("FLEXJIT_DISABLE_DISK_CACHE", "1");
    EXPECT_EQ(KernelCache::defaultDiskDir(), "");
  }
  ScopedEnv dir("FLEXJIT_CACHE_DIR", std::nullopt);
  {
    ScopedEnv xdg("XDG_CACHE_HOME", "/xdg");
    EXPECT_EQ(KernelCache::defaultDiskDir(), "/xdg/flexjit");
  }
  ScopedEnv xdg("XDG_CACHE_HOME", std::nullopt);
  {
    ScopedEnv home("HOME", "/home/u");
    EXPECT_EQ(KernelCache::defaultDiskDir(), "/home/u/.cache/flexjit");
  }
  ScopedEnv home("HOME", std::nullopt);
  EXPECT_NE(KernelCache::defaultDiskDir().find("flexjit-"), std::string::npos);
}

TEST(RuntimeCache, MemoryHitCostIsMicroseconds) {
  KernelCache cache(fakeConfig(""));
  std::string source(32 * 1024, 'x');  // about the size of an emitted attention kernel
  KernelRequest req = request(source);
  cache.getOrCompile(req);
  constexpr int kHits = 2000;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kHits; ++i) cache.getOrCompile(req);
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / kHits;
  std::printf("memory hit with a %zu-byte source: %.2f us (std::hash of the source + one comparison)\n", source.size(), us);
  EXPECT_EQ(cache.stats().memoryHits, static_cast<uint64_t>(kHits));
}

TEST(RuntimeCache, RealNvrtcRoundTripsThroughDisk) {
  if (!nvrtcAvailable()) GTEST_SKIP() << "NVRTC not found";
  TempDir dir;
  KernelRequest req{testing::kTinyKernelSource, "tiny_scale", CompileOptions{"sm_80", {}, false}};
  KernelCacheConfig config;
  config.diskDir = dir.path();
  CacheSource source;
  KernelCache first(config);
  const CompiledKernel& compiled = first.getOrCompile(req, &source);
  EXPECT_EQ(source, CacheSource::Compiled);
  EXPECT_EQ(compiled.toolkitVersion, nvrtcVersion());
  KernelCache second(config);
  const CompiledKernel& loaded = second.getOrCompile(req, &source);
  EXPECT_EQ(source, CacheSource::Disk);
  EXPECT_EQ(loaded.cubin, compiled.cubin);
  EXPECT_EQ(loaded.ptx, compiled.ptx);
  EXPECT_EQ(loaded.resources, compiled.resources);
  EXPECT_GT(loaded.usage().registers, 0);
}

TEST(RuntimeCache, DumpsStagesOfProducedKernels) {
  TempDir dir;
  testing::ScopedEnv env("FLEXJIT_DUMP_DIR", dir / "dump");
  KernelCache cache(fakeConfig(""));
  cache.getOrCompile(request());
  EXPECT_TRUE(std::filesystem::exists(dir / "dump/k.cu"));
  EXPECT_TRUE(std::filesystem::exists(dir / "dump/k.ptx"));
  EXPECT_TRUE(std::filesystem::exists(dir / "dump/k.resources.txt"));
}

}  // namespace
}  // namespace flexjit
