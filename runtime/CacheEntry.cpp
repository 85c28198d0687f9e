// Implementation of CacheEntry.h: little-endian writer/reader with bounds checks on every read.
#include "runtime/CacheEntry.h"

#include <array>
#include <cstring>

#include <fmt/format.h>

#include "dsl/Sha256.h"

namespace flexjit::cacheentry {

namespace {

constexpr char kMagic[8] = {'F', 'L', 'E', 'X', 'J', 'I', 'T', 'K'};
constexpr size_t kDigestBytes = 32;
constexpr size_t kHeaderBytes = sizeof(kMagic) + sizeof(uint32_t) * 2 + sizeof(uint64_t) + kDigestBytes;
constexpr int kBitsPerByte = 8;

/// Appends little-endian integers and length-prefixed byte strings.
class Writer {
 public:
  void u32(uint32_t v) { integer(v, sizeof v); }
  void u64(uint64_t v) { integer(v, sizeof v); }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void bytes(const void* p, size_t n) {
    u64(n);
    raw(p, n);
  }
  void text(const std::string& s) { bytes(s.data(), s.size()); }
  void raw(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    out_.insert(out_.end(), c, c + n);
  }
  std::vector<char>& out() { return out_; }

 private:
  void integer(uint64_t v, size_t width) {
    for (size_t i = 0; i < width; ++i) out_.push_back(static_cast<char>((v >> (kBitsPerByte * i)) & 0xff));
  }
  std::vector<char> out_;
};

/// Reads what Writer wrote; every read checks the remaining length and sets `failed` instead of reading
/// past the end, so a truncated or garbled payload cannot crash the reader.
class Reader {
 public:
  Reader(const char* p, size_t n) : p_(p), end_(p + n) {}
  bool failed() const { return failed_; }
  bool atEnd() const { return p_ == end_; }
  uint32_t u32() { return static_cast<uint32_t>(integer(sizeof(uint32_t))); }
  uint64_t u64() { return integer(sizeof(uint64_t)); }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  std::string text() {
    uint64_t n = u64();
    if (!take(n)) return {};
    return std::string(p_ - n, p_);
  }
  std::vector<char> bytes() {
    uint64_t n = u64();
    if (!take(n)) return {};
    return std::vector<char>(p_ - n, p_);
  }
  const char* raw(size_t n) { return take(n) ? p_ - n : nullptr; }

 private:
  bool take(uint64_t n) {
    if (failed_ || n > static_cast<uint64_t>(end_ - p_)) {
      failed_ = true;
      return false;
    }
    p_ += n;
    return true;
  }
  uint64_t integer(size_t width) {
    const char* at = raw(width);
    if (at == nullptr) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < width; ++i) v |= uint64_t(static_cast<uint8_t>(at[i])) << (kBitsPerByte * i);
    return v;
  }
  const char* p_;
  const char* end_;
  bool failed_ = false;
};

std::vector<char> encodePayload(const CompiledKernel& k) {
  Writer w;
  w.text(k.key);
  w.text(k.name);
  w.text(k.arch);
  w.text(k.toolkitVersion);
  w.bytes(k.cubin.data(), k.cubin.size());
  w.text(k.ptx);
  w.text(k.log);
  w.u64(k.resources.size());
  for (const auto& [function, u] : k.resources) {
    w.text(function);
    for (int64_t v : {u.registers, u.barriers, u.staticSharedBytes, u.constantBytes, u.stackFrameBytes,
                      u.spillStoreBytes, u.spillLoadBytes})
      w.i64(v);
  }
  return std::move(w.out());
}

/// Parses a payload whose checksum already matched; false if it does not parse to the end exactly.
bool decodePayload(Reader& r, CompiledKernel& k) {
  k.key = r.text();
  k.name = r.text();
  k.arch = r.text();
  k.toolkitVersion = r.text();
  k.cubin = r.bytes();
  k.ptx = r.text();
  k.log = r.text();
  uint64_t count = r.u64();
  for (uint64_t i = 0; i < count && !r.failed(); ++i) {
    std::string function = r.text();
    ResourceUsage u;
    for (int64_t* field : {&u.registers, &u.barriers, &u.staticSharedBytes, &u.constantBytes,
                           &u.stackFrameBytes, &u.spillStoreBytes, &u.spillLoadBytes})
      *field = r.i64();
    k.resources.emplace(std::move(function), u);
  }
  return !r.failed() && r.atEnd();
}

}  // namespace

std::vector<char> encode(const CompiledKernel& kernel) {
  std::vector<char> payload = encodePayload(kernel);
  std::array<uint8_t, kDigestBytes> digest = Sha256().update(payload.data(), payload.size()).digest();
  Writer w;
  w.raw(kMagic, sizeof kMagic);
  w.u32(kFormatVersion);
  w.u32(0);  // reserved
  w.u64(payload.size());
  w.raw(digest.data(), digest.size());
  w.raw(payload.data(), payload.size());
  return std::move(w.out());
}

std::optional<CompiledKernel> decode(const std::vector<char>& bytes, const std::string& expectedKey,
                                     std::string& problem) {
  if (bytes.size() < kHeaderBytes) {
    problem = fmt::format("truncated header ({} of {} bytes)", bytes.size(), kHeaderBytes);
    return std::nullopt;
  }
  Reader header(bytes.data(), kHeaderBytes);
  if (std::memcmp(header.raw(sizeof kMagic), kMagic, sizeof kMagic) != 0) {
    problem = "bad magic (not a flexjit cache entry)";
    return std::nullopt;
  }
  uint32_t version = header.u32();
  header.u32();  // reserved
  uint64_t length = header.u64();
  const char* digest = header.raw(kDigestBytes);
  if (version != kFormatVersion) {
    problem = fmt::format("format version {} (expected {})", version, kFormatVersion);
    return std::nullopt;
  }
  if (length != bytes.size() - kHeaderBytes) {
    problem = fmt::format("payload length {} but {} bytes follow the header", length, bytes.size() - kHeaderBytes);
    return std::nullopt;
  }
  const char* payload = bytes.data() + kHeaderBytes;
  std::array<uint8_t, kDigestBytes> actual = Sha256().update(payload, length).digest();
  if (std::memcmp(actual.data(), digest, kDigestBytes) != 0) {
    problem = "payload checksum mismatch";
    return std::nullopt;
  }
  CompiledKernel kernel;
  Reader body(payload, length);
  if (!decodePayload(body, kernel)) {
    problem = "payload does not parse";
    return std::nullopt;
  }
  if (kernel.key != expectedKey) {
    problem = fmt::format("entry holds key {} instead of {}", kernel.key, expectedKey);
    return std::nullopt;
  }
  kernel.origin = CacheSource::Disk;
  return kernel;
}

}  // namespace flexjit::cacheentry
