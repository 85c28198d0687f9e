// SHA-256 (FIPS 180-4): the hash behind mod keys and kernel cache keys. Collisions would hand a user the
// wrong kernel, so the cache does not use a 64-bit hash.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace flexjit {

class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(std::string_view s) { return update(s.data(), s.size()); }
  /// Adds a length-prefixed string, so ("ab","c") and ("a","bc") hash differently.
  Sha256& field(std::string_view s);
  std::array<uint8_t, 32> digest();
  /// Lower-case hex of the digest.
  std::string hex();

  static std::string hex(std::string_view s) { return Sha256().update(s).hex(); }

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t bufLen_ = 0;
  uint64_t total_ = 0;
};

}  // namespace flexjit
